"""Wi-Fi packages an owner sells: create, edit, retire, and which routers sell them."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ..core.extensions import db
from ..models import Plan, Router

MAX_DEVICES = 50  # the plans table's check constraint


class PlanError(ValueError):
    pass


def _owner_routers(owner_id: int, router_ids: Sequence[int]) -> list[Router]:
    """The given routers, all of which must be the plan owner's (a plan never sells on another's router)."""
    if not router_ids:
        return []
    routers = list(db.session.scalars(sa.select(Router).where(Router.id.in_(router_ids), Router.owner_id == owner_id)))
    if len(routers) != len(set(router_ids)):
        raise PlanError("A chosen router does not belong to this plan's owner.")
    return routers


def save_plan(
    plan: Plan | None,
    *,
    owner_id: int,
    name: str,
    price: int,
    duration_s: int,
    validity_mode: str,
    data_limit_bytes: int | None,
    rate_limit: str | None,
    router_ids: Sequence[int],
    sort_order: int,
    devices: int = 1,
    lock_to_device: bool = False,
) -> Plan:
    """Create (``plan=None``, owned by ``owner_id``) or update a plan (``owner_id`` is then ignored). The caller commits.

    Empty ``router_ids`` means every router of the owner sells it. The hotspot profile on each
    router (``portal-plan-<id>``) is brought in line on the next activation.
    """
    if price <= 0:
        raise PlanError("The price must be at least 1 shilling.")
    if not 1 <= devices <= MAX_DEVICES:
        raise PlanError(f"Devices per voucher is from 1 to {MAX_DEVICES}.")
    if plan is None:
        plan = Plan(owner_id=owner_id)
        db.session.add(plan)
    plan.name = name.strip()
    plan.price = price
    plan.duration_s = duration_s
    plan.validity_mode = validity_mode
    plan.data_limit_bytes = data_limit_bytes
    plan.rate_limit = (rate_limit or "").strip() or None
    plan.sort_order = sort_order
    plan.devices = devices
    plan.lock_to_device = lock_to_device
    plan.routers = _owner_routers(plan.owner_id, router_ids)
    return plan


def set_plan_active(plan: Plan, is_active: bool) -> None:
    """Retire (no longer sold; vouchers already sold keep working) or bring back. Caller commits."""
    plan.is_active = is_active


def data_limit_as_text(limit_bytes: int | None) -> str:
    """What the edit form shows, exact so saving unchanged keeps the same number: 1GB, 500MB or bytes."""
    if not limit_bytes:
        return ""
    for size, unit in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")):
        if limit_bytes % size == 0:
            return f"{limit_bytes // size}{unit}"
    return str(limit_bytes)

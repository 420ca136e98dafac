"""What a router sells: its active plans, in the owner's order."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..core.cache import LockedTTLCache
from ..core.extensions import db
from ..models import Plan, Router, router_plans


def router_by_slug(slug: str) -> Router | None:
    if not slug or len(slug) > 64:
        return None
    return db.session.scalars(sa.select(Router).where(Router.slug == slug, Router.status == "active")).first()


def plans_for_router(router: Router) -> list[Plan]:
    """Plans linked to this router, plus the owner's plans linked to no router (sold everywhere)."""
    linked_to_any = sa.select(router_plans.c.plan_id)
    linked_here = sa.select(router_plans.c.plan_id).where(router_plans.c.router_id == router.id)
    return list(
        db.session.scalars(
            sa.select(Plan)
            .where(
                Plan.owner_id == router.owner_id,
                Plan.is_active.is_(True),
                sa.or_(Plan.id.in_(linked_here), Plan.id.not_in(linked_to_any)),
            )
            .order_by(Plan.sort_order, Plan.price, Plan.id)
        )
    )


def plan_for_router(router: Router, plan_id: int | None) -> Plan | None:
    return next((p for p in plans_for_router(router) if p.id == plan_id), None)


def describe_duration(seconds: int) -> str:
    """A plan's length for the owner's pages ("3 hours"); the captive pages word it per language."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} s"


def describe_devices(n: int) -> str:
    """Devices per voucher for the owner's pages and printed cards ("2 devices"); the captive pages word it per language."""
    return f"{n} device{'s' if n != 1 else ''}"


def describe_bytes(n: int | None) -> str | None:
    if not n:
        return None
    for size, unit in ((1 << 30, "GB"), (1 << 20, "MB")):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------------------------------------
# The plans page's snapshot


@dataclass(frozen=True)
class PlanView:
    id: int
    name: str
    price: int
    duration_s: int
    data_limit_bytes: int | None
    rate_limit: str | None
    devices: int = 1


@dataclass(frozen=True)
class Storefront:
    """What the plans page shows for one router, as plain values safe to share between requests."""

    router_id: int
    slug: str
    name: str
    plans: tuple[PlanView, ...]


STOREFRONT_TTL_S = 5.0
_storefronts: LockedTTLCache[Storefront] = LockedTTLCache(STOREFRONT_TTL_S)


def storefront(slug: str) -> Storefront | None:
    """The router's name and plans, cached in this process for a few seconds.

    The plans page is the busiest page (every customer who joins the Wi-Fi) and changes rarely;
    an owner's edit shows within STOREFRONT_TTL_S. Buying re-reads the plan from the database,
    so a stale page can never sell at an old price.
    """
    return _storefronts.get(slug, lambda: _load_storefront(slug))


def _load_storefront(slug: str) -> Storefront | None:
    router = router_by_slug(slug)
    if router is None:
        return None
    plans = tuple(
        PlanView(p.id, p.name, p.price, p.duration_s, p.data_limit_bytes, p.rate_limit, p.devices) for p in plans_for_router(router)
    )
    return Storefront(router.id, router.slug, router.name, plans)


def forget_storefronts() -> None:
    _storefronts.clear()


def install_cache_invalidation() -> None:
    """An owner's change to a router or plan clears this process's storefronts at once.

    Other processes catch up within STOREFRONT_TTL_S; buying always re-reads, so they can
    never sell what is no longer on sale.
    """
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    if event.contains(Session, "after_flush", _on_flush):
        return
    event.listen(Session, "after_flush", _on_flush)


def _on_flush(session, _context) -> None:  # type: ignore[no-untyped-def]
    changed = session.new | session.dirty | session.deleted
    if any(isinstance(obj, (Router, Plan)) for obj in changed):
        forget_storefronts()

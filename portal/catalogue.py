"""What a router sells: its active plans, in the owner's order."""

from __future__ import annotations

import sqlalchemy as sa

from .extensions import db
from .models import Plan, Router, router_plans


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


def describe_duration(seconds: int, lang: str = "en") -> str:
    units = [(86400, "day", "siku"), (3600, "hour", "saa"), (60, "minute", "dakika")]
    for size, en, sw in units:
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            if lang == "sw":
                return f"{sw} {n}"
            return f"{n} {en}{'s' if n != 1 else ''}"
    return f"{seconds} s"


def describe_bytes(n: int | None) -> str | None:
    if not n:
        return None
    for size, unit in ((1 << 30, "GB"), (1 << 20, "MB")):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"

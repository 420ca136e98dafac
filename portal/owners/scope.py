"""Which rows a signed-in user may see: an owner their own, an admin everyone's.

Services take the user and add these clauses to their queries, so a view cannot forget the scope.
Tables without an ``owner_id`` are scoped through the router or paybill they belong to.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import sqlalchemy as sa

from ..models import Paybill, Router, User

NAIROBI = timezone(timedelta(hours=3), "EAT")  # Kenya keeps no daylight saving time


class NotFound(LookupError):
    """No such row, or not this user's: the two are deliberately indistinguishable."""


def owned(owner_column: sa.ColumnElement, user: User) -> sa.ColumnElement[bool]:
    return sa.true() if user.is_admin else owner_column == user.id


def via_router(router_column: sa.ColumnElement, user: User) -> sa.ColumnElement[bool]:
    if user.is_admin:
        return sa.true()
    return router_column.in_(sa.select(Router.id).where(Router.owner_id == user.id))


def via_paybill(paybill_column: sa.ColumnElement, user: User) -> sa.ColumnElement[bool]:
    if user.is_admin:
        return sa.true()
    return paybill_column.in_(sa.select(Paybill.id).where(Paybill.owner_id == user.id))


def nairobi_day_start(day: date) -> datetime:
    """Midnight in Nairobi as a UTC-aware instant (the edges speak Nairobi, the database UTC)."""
    return datetime.combine(day, time.min, tzinfo=NAIROBI).astimezone(UTC)


def nairobi_today(now: datetime) -> date:
    return now.astimezone(NAIROBI).date()

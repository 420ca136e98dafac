"""What the dashboard shows about SMS: this month's use against the cap, and the latest messages."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..core.extensions import db
from ..models import SmsMessage, User, utcnow
from ..owners.scope import owned
from . import accounts, outbox


@dataclass(frozen=True)
class MonthUse:
    sent: int  # customer messages this month (what the cap counts)
    cap: int
    alerts: int
    cost_kes: float  # every message this month, as the provider charged

    @property
    def cap_reached(self) -> bool:
        return self.sent >= self.cap


def month_use(owner_id: int) -> MonthUse:
    since = outbox.month_start(utcnow())
    settings = accounts.settings_for(owner_id)
    alerts = (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(SmsMessage)
            .where(
                SmsMessage.owner_id == owner_id,
                SmsMessage.created_at >= since,
                SmsMessage.kind == "alert",
                SmsMessage.state.in_(outbox.COUNTED_STATES),
            )
        )
        or 0
    )
    micro = (
        db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(SmsMessage.cost_kes_micro), 0)).where(
                SmsMessage.owner_id == owner_id, SmsMessage.created_at >= since
            )
        )
        or 0
    )
    return MonthUse(outbox.sent_this_month(owner_id), accounts.monthly_cap(settings), alerts, micro / 1_000_000)


def recent_messages(user: User, limit: int = 50) -> list[SmsMessage]:
    return list(
        db.session.scalars(
            sa.select(SmsMessage)
            .where(owned(SmsMessage.owner_id, user))
            .order_by(SmsMessage.created_at.desc(), SmsMessage.id.desc())
            .limit(limit)
        )
    )

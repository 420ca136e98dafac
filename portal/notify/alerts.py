"""Owner alerts: a router unreachable (or its pull sync stale) for more than 10 minutes, a
paybill whose Daraja credentials fail, a problem waiting more than an hour, a payout that failed.

``check_alerts`` (a job, every minute) asks every registered check what is wrong now, per owner
and kind. A new trouble opens an alert (the dashboard banner shows it) and, unless an alert of
that kind went out to that owner within the hour, sends it by SMS to the owner's alert number
(when the owner chose that kind). When the trouble is gone the alert is cleared, and an alert
that went out gets an "all clear". So a flapping router gives at most one alert (and its all
clear) per hour. Safe to run twice: the second run finds the alerts the first one opened.

Extension points: ``ROUTER_STALENESS`` takes "this router is out of reach" checks (API contact,
pull sync, the tunnel's handshake age), and ``register_check`` a whole new kind's check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.extensions import db
from ..models import OwnerAlert, Paybill, Payout, Router, User, utcnow
from ..money import problems as money_problems
from ..tunnel import pool as tunnel_pool
from ..tunnel import status as tunnel_status
from . import accounts, outbox, texts

log = logging.getLogger(__name__)

ROUTER_DOWN_AFTER = timedelta(minutes=10)
PROBLEM_WAITING_AFTER = timedelta(hours=1)
ONE_PER = timedelta(hours=1)  # at most one alert per kind per owner this often


@dataclass(frozen=True)
class Trouble:
    owner_id: int
    kind: str  # models.ALERT_KINDS
    detail: str  # for the owner: what, and since when (never a secret)


@dataclass(frozen=True)
class StaleRouter:
    router_id: int
    owner_id: int
    name: str
    since: datetime | None
    why: str  # "unreachable", "not syncing"


Check = Callable[[datetime], Iterable[Trouble]]
RouterStaleness = Callable[[datetime], Iterable[StaleRouter]]


def _nairobi(moment: datetime | None) -> str:
    return moment.astimezone(texts.NAIROBI).strftime("%H:%M %d %b") if moment else "it was added"


def _routers_quiet_since(now: datetime, last_contact: sa.ColumnElement[datetime], why: str,
                         *which: sa.ColumnElement[bool]) -> list[StaleRouter]:
    """Active routers among ``which`` whose ``last_contact`` (or, never, their creation) is over
    10 minutes old."""
    rows = db.session.execute(
        sa.select(Router.id, Router.owner_id, Router.name, last_contact.label("since")).where(
            Router.status == "active", *which,
            sa.func.coalesce(last_contact, Router.created_at) < now - ROUTER_DOWN_AFTER,
        )
    ).all()
    return [StaleRouter(r.id, r.owner_id, r.name, r.since, why) for r in rows]


def api_routers_unreachable(now: datetime) -> list[StaleRouter]:
    """API routers whose last contact failed and whose last success is over 10 minutes old
    (``probe_quiet_routers`` keeps quiet routers' contact fresh)."""
    return _routers_quiet_since(now, Router.last_seen_at, "unreachable",
                                Router.transport == "api", Router.last_error.is_not(None))


def pull_routers_silent(now: datetime) -> list[StaleRouter]:
    return _routers_quiet_since(now, Router.last_sync_at, "not syncing", Router.transport == "pull")


def tunnel_routers_silent(now: datetime) -> list[StaleRouter]:
    """Tunnel routers with no WireGuard handshake for over 10 minutes, while the hub is syncing (an
    idle hub's handshake times say nothing). Such a router is out of reach even between sales."""
    if not tunnel_pool.is_enabled() or not tunnel_status.hub_is_watching(now):
        return []
    return _routers_quiet_since(now, Router.wg_last_handshake_at, "has no tunnel", Router.connection_mode == "tunnel")


ROUTER_STALENESS: list[RouterStaleness] = [api_routers_unreachable, pull_routers_silent, tunnel_routers_silent]


def routers_down(now: datetime) -> list[Trouble]:
    by_owner: dict[int, dict[int, StaleRouter]] = {}
    for check in ROUTER_STALENESS:
        for stale in check(now):
            by_owner.setdefault(stale.owner_id, {}).setdefault(stale.router_id, stale)
    troubles = []
    for owner_id, stale in by_owner.items():
        first = sorted(stale.values(), key=lambda s: s.router_id)
        detail = "; ".join(f"router {s.name} {s.why} since {_nairobi(s.since)}" for s in first[:3])
        if len(first) > 3:
            detail += f"; and {len(first) - 3} more"
        troubles.append(Trouble(owner_id, "router_down", detail))
    return troubles


def paybills_failing(now: datetime) -> list[Trouble]:
    """Active paybills whose last token request failed after their last good one."""
    rows = db.session.execute(
        sa.select(Paybill.owner_id, Paybill.number)
        .where(
            Paybill.owner_id.is_not(None),
            Paybill.status == "active",
            Paybill.last_token_error_at.is_not(None),
            sa.or_(Paybill.last_token_refresh.is_(None), Paybill.last_token_refresh < Paybill.last_token_error_at),
        )
        .order_by(Paybill.id)
    ).all()
    by_owner: dict[int, list[str]] = {}
    for owner_id, number in rows:
        by_owner.setdefault(owner_id, []).append(number)
    return [
        Trouble(
            owner_id,
            "paybill_failing",
            f"Daraja refuses the credentials of paybill {', '.join(numbers)}; payments cannot start",
        )
        for owner_id, numbers in by_owner.items()
    ]


def problems_waiting(now: datetime) -> list[Trouble]:
    """Owners with a problem (Problems page) older than an hour. Silent pull routers are left to
    ``routers_down``."""
    troubles = []
    cutoff = now - PROBLEM_WAITING_AFTER
    owners = db.session.scalars(sa.select(User).where(User.role == "owner")).all()
    for owner in owners:
        found = money_problems.list_problems(owner, now=now)
        times = [
            row.created_at
            for row in (
                *found.failed_activations,
                *found.unmatched_payments,
                *found.stuck_initiations,
                *found.underpaid_payments,
            )
        ]
        times += [row.received_at for row in (*found.rejected_payment_notices, *found.given_up_payment_notices)]
        old = [t for t in times if t < cutoff]
        if old:
            troubles.append(
                Trouble(
                    owner.id,
                    "problem_waiting",
                    f"{len(old)} problem(s) waiting over an hour on the Problems page, "
                    f"the oldest since {_nairobi(min(old))}",
                )
            )
    return troubles


def payouts_failed(now: datetime) -> list[Trouble]:
    """Owners whose latest payout failed (a retry or a later payout that goes through clears it)."""
    latest = (
        sa.select(Payout.owner_id, sa.func.max(Payout.id).label("id"))
        .where(Payout.kind == "payout", Payout.owner_id.is_not(None))
        .group_by(Payout.owner_id)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(Payout.owner_id, Payout.amount, Payout.failure_reason, Payout.created_at)
        .join(latest, latest.c.id == Payout.id)
        .where(Payout.state == "failed")
    ).all()
    return [
        Trouble(r.owner_id, "payout_failed",
                f"payout of KES {r.amount} failed: {(r.failure_reason or 'M-Pesa refused it')[:120]}")
        for r in rows
    ]


CHECKS: list[Check] = [routers_down, paybills_failing, problems_waiting, payouts_failed]


def register_check(check: Check) -> None:
    """Add a check (e.g. failed payouts, kind "payout_failed"); it yields the troubles of now."""
    if check not in CHECKS:
        CHECKS.append(check)


def current_troubles(now: datetime) -> dict[tuple[int, str], str]:
    found: dict[tuple[int, str], str] = {}
    for check in CHECKS:
        for trouble in check(now):
            found.setdefault((trouble.owner_id, trouble.kind), trouble.detail[:300])
    return found


def check_alerts(now: datetime | None = None) -> dict[str, int]:
    """Open, notify and clear owner alerts for what is wrong now. Commits."""
    now = now or utcnow()
    troubles = current_troubles(now)
    open_alerts = {
        (a.owner_id, a.kind): a
        for a in db.session.scalars(sa.select(OwnerAlert).where(OwnerAlert.cleared_at.is_(None)))
    }
    counts = {"opened": 0, "notified": 0, "cleared": 0, "all_clear": 0}
    for (owner_id, kind), detail in troubles.items():
        alert = open_alerts.get((owner_id, kind))
        if alert is None:
            alert = OwnerAlert(owner_id=owner_id, kind=kind, detail=detail, opened_at=now)
            db.session.add(alert)
            db.session.flush()
            counts["opened"] += 1
        else:
            alert.detail = detail
        if alert.notified_at is None and not _notified_within_hour(owner_id, kind, now):
            alert.notified_at = now
            _send(alert, texts.alert_text(detail))
            counts["notified"] += 1
    for key, alert in open_alerts.items():
        if key in troubles:
            continue
        alert.cleared_at = now
        counts["cleared"] += 1
        if alert.notified_at is not None:
            alert.all_clear_sent_at = now
            _send(alert, texts.all_clear_text(_recovered(alert)))
            counts["all_clear"] += 1
    db.session.commit()
    return {k: v for k, v in counts.items() if v}


def _notified_within_hour(owner_id: int, kind: str, now: datetime) -> bool:
    return (
        db.session.scalar(
            sa.select(
                sa.exists().where(
                    OwnerAlert.owner_id == owner_id, OwnerAlert.kind == kind, OwnerAlert.notified_at > now - ONE_PER
                )
            )
        )
        or False
    )


def _recovered(alert: OwnerAlert) -> str:
    return {
        "router_down": "your routers are reachable again",
        "paybill_failing": "Daraja accepts your paybill credentials again",
        "problem_waiting": "no problem has waited over an hour",
        "payout_failed": "payouts go through again",
    }.get(alert.kind, "resolved")


def _send(alert: OwnerAlert, text: str) -> None:
    """By SMS when the owner chose this kind and has an alert number; the banner shows it anyway."""
    settings = accounts.settings_for(alert.owner_id)
    owner = db.session.get(User, alert.owner_id)
    phone = accounts.alert_phone(settings, owner) if owner else None
    if phone and settings.wants_alert(alert.kind):
        outbox.queue_owner_sms(alert.owner_id, phone, text, alert.id)
    log.info("owner alert %s owner=%s kind=%s sms=%s: %s", alert.id, alert.owner_id, alert.kind, bool(phone), text)


def open_alerts_for(owner_id: int) -> list[OwnerAlert]:
    """The dashboard banner: what is wrong now for this owner."""
    return list(
        db.session.scalars(
            sa.select(OwnerAlert)
            .where(OwnerAlert.owner_id == owner_id, OwnerAlert.cleared_at.is_(None))
            .order_by(OwnerAlert.opened_at)
        )
    )

"""Rate limits kept in the database (``rate_limit_hits``), so they hold across workers and processes.

A limit is "at most ``max_hits`` attempts per ``window_s`` seconds" for one bucket (a phone number,
a device, a client address). Each attempt is one row whose key is ``"<bucket>|<token>"``: attempts
that share a token count once, so a double-submitted buy form (same purchase key) is one attempt.

Race-safe in the cautious direction: the attempt is written and committed first, then counted. Two
attempts racing for the last slot may both be refused; neither can slip through together.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..models import RateLimitHit, utcnow
from .extensions import db

TOKEN_SEPARATOR = "|"
_TOKEN_END = "}"  # the character after "|": every "<bucket>|<token>" sorts below "<bucket>}"


@dataclass(frozen=True)
class Limit:
    name: str  # which message to show, e.g. "phone_minute"
    max_hits: int
    window_s: int


# Daraja allows one open prompt per phone: a second push inside a minute answers "unable to lock
# subscriber" (or 17 for a repeat of the same amount), so the portal never sends one.
PUSH_PER_PHONE_MINUTE = Limit("phone_minute", 1, 60)
PUSH_PER_PHONE_HOUR = Limit("phone_hour", 5, 3600)
PUSH_PER_DEVICE_HOUR = Limit("device_hour", 10, 3600)
PUSH_PER_CLIENT_HOUR = Limit("client_hour", 120, 3600)  # one router's public address: many customers
CODE_TRIES_PER_DEVICE = Limit("code_device", 5, 600)
CODE_TRIES_PER_CLIENT = Limit("code_client", 60, 600)
# Issue 17: "send my code again" by SMS, per voucher (the message goes to the number that paid).
SMS_RESEND_PER_VOUCHER = Limit("sms_resend", 1, 300)
SMS_RESEND_PER_VOUCHER_HOUR = Limit("sms_resend_hour", 3, 3600)
LONGEST_WINDOW_S = 3600


class RateLimited(Exception):
    """Too many attempts; ``retry_after_s`` says when the next one can be made, ``limit`` which limit."""

    def __init__(self, limit: Limit, retry_after_s: int) -> None:
        super().__init__(f"rate limited ({limit.name}); retry after {retry_after_s}s")
        self.limit = limit
        self.retry_after_s = max(1, retry_after_s)


def record_attempt(checks: Sequence[tuple[str, Limit]], *, token: str | None = None) -> None:
    """Count one attempt against every ``(bucket, limit)``; raise ``RateLimited`` if any is over.

    Commits. A refused attempt is removed again, so waiting out the limit is enough to get through.
    ``PORTAL_RATE_LIMITS_ENABLED = False`` in the app config turns every limit off (load tests only).
    When several limits are over, the longest wait is reported.
    """
    if not current_app.config.get("PORTAL_RATE_LIMITS_ENABLED", True):
        return  # load tests and benches that replay one phone many times a minute
    token = token or secrets.token_urlsafe(12)
    keys = list(dict.fromkeys(_key(bucket, token) for bucket, _ in checks))
    now = utcnow()
    db.session.add_all([RateLimitHit(key=key, created_at=now) for key in keys])
    db.session.commit()
    worst: RateLimited | None = None
    for bucket, limit in checks:
        wait = _wait_needed(bucket, limit, now, own_token=token)
        if wait is not None and (worst is None or wait > worst.retry_after_s):
            worst = RateLimited(limit, wait)
    if worst is not None:
        db.session.execute(sa.delete(RateLimitHit).where(RateLimitHit.key.in_(keys), RateLimitHit.created_at == now))
        db.session.commit()
        raise worst


def seconds_until_allowed(checks: Sequence[tuple[str, Limit]]) -> int:
    """How long until an attempt would pass every limit (0 = now); records nothing."""
    now = utcnow()
    waits = [_wait_needed(bucket, limit, now, own_token=None) or 0 for bucket, limit in checks]
    return max(waits, default=0)


def prune_old_hits(older_than_s: int = LONGEST_WINDOW_S) -> int:
    """Delete hits no limit looks at any more; returns how many. Safe to run from any job, any time."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    deleted = db.session.execute(sa.delete(RateLimitHit).where(RateLimitHit.created_at < cutoff)).rowcount
    db.session.commit()
    return deleted or 0


def _key(bucket: str, token: str) -> str:
    return f"{bucket[:80]}{TOKEN_SEPARATOR}{token[:36]}"


def _wait_needed(bucket: str, limit: Limit, now: datetime, *, own_token: str | None) -> int | None:
    """Seconds until this bucket has room for one more attempt; None when it has room already."""
    since = now - timedelta(seconds=limit.window_s)
    prefix = bucket[:80] + TOKEN_SEPARATOR
    rows = db.session.execute(
        sa.select(RateLimitHit.key, sa.func.min(RateLimitHit.created_at))
        .where(RateLimitHit.key >= prefix, RateLimitHit.key < bucket[:80] + _TOKEN_END, RateLimitHit.created_at > since)
        .group_by(RateLimitHit.key)
    ).all()
    own_key = _key(bucket, own_token) if own_token else None
    others = sorted(_aware(first) for key, first in rows if key != own_key)
    if len(others) < limit.max_hits:
        return None
    # The attempt fits once enough of the others have left the window.
    frees_at = others[len(others) - limit.max_hits] + timedelta(seconds=limit.window_s)
    return max(1, math.ceil((frees_at - now).total_seconds()))


def _aware(value: datetime) -> datetime:
    # min() over a UTCDateTime column comes back without the type's conversion on SQLite.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value

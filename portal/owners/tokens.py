"""Daraja token refresh: each active paybill gets a fresh token before the old one runs out."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask, current_app

from ..core.extensions import db
from ..models import Paybill, utcnow
from ..mpesa.errors import DarajaError
from .paybills import PaybillTokenStore, prepare_daraja_call, token_share_key

log = logging.getLogger(__name__)

REFRESH_WHEN_LESS_THAN = timedelta(minutes=10)
MAX_PARALLEL = 16


@dataclass(frozen=True)
class RefreshResult:
    paybill_id: int
    label: str
    outcome: str  # refreshed | still valid | failed
    detail: str = ""

    def line(self) -> str:
        return f"{self.label}: {self.outcome}" + (f": {self.detail}" if self.detail else "")


def refresh_due_tokens(*, force: bool = False) -> list[RefreshResult]:
    """Refresh every active paybill whose token is missing or expires within 10 minutes.

    Paybills are refreshed in parallel (bounded); one paybill's failure is written on that paybill
    and does not stop the others. Two workers running this at once each claim a paybill with a
    conditional update on ``last_token_refresh``, so a token is not fetched twice (each fetch would
    invalidate the other's token).
    """
    due_before = utcnow() + REFRESH_WHEN_LESS_THAN
    paybills = db.session.scalars(sa.select(Paybill).where(Paybill.status == "active").order_by(Paybill.id)).all()
    results: list[RefreshResult] = []
    due: list[int] = []
    keys_due: dict[object, int] = {}
    for paybill in paybills:
        if force or paybill.token_expires_at is None or paybill.token_expires_at <= due_before:
            key: object = f"paybill-{paybill.id}"
            if paybill.consumer_key_fingerprint:
                key = token_share_key(paybill.owner_id, paybill.consumer_key_fingerprint, paybill.consumer_secret_encrypted)
            if key in keys_due:  # one fetch per Daraja app: the token is shared
                results.append(RefreshResult(paybill.id, _label(paybill), "refreshed", f"shares the token of id {keys_due[key]}"))
                continue
            keys_due[key] = paybill.id
            due.append(paybill.id)
        else:
            results.append(RefreshResult(paybill.id, _label(paybill), "still valid", f"expires {paybill.token_expires_at:%H:%M} UTC"))
    db.session.commit()
    app = current_app._get_current_object()
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, max(1, len(due)))) as pool:
        results.extend(pool.map(lambda pid: _refresh_in_context(app, pid, force), due))
    return sorted(results, key=lambda r: r.paybill_id)


def _refresh_in_context(app: Flask, paybill_id: int, force: bool) -> RefreshResult:
    with app.app_context():
        try:
            return refresh_paybill_token(paybill_id, force=force)
        finally:
            db.session.remove()


CLAIM_FOR = timedelta(seconds=30)


def _claim(paybill_id: int, force: bool) -> bool:
    """Only one worker fetches a consumer key's token at a time, and only while it is due.

    The claim covers every paybill sharing the key; the loser of a race updates zero rows.
    """
    now = utcnow()
    same_key = PaybillTokenStore(paybill_id).same_key()
    condition = sa.and_(
        same_key,
        sa.or_(Paybill.token_refresh_claimed_until.is_(None), Paybill.token_refresh_claimed_until < now),
    )
    if not force:
        due_before = now + REFRESH_WHEN_LESS_THAN
        condition = sa.and_(
            condition, sa.or_(Paybill.token_expires_at.is_(None), Paybill.token_expires_at <= due_before)
        )
    won = db.session.execute(
        sa.update(Paybill)
        .where(condition)
        .values(token_refresh_claimed_until=now + CLAIM_FOR)
        .execution_options(synchronize_session=False)
    ).rowcount >= 1
    db.session.commit()
    return won


def refresh_paybill_token(paybill_id: int, *, force: bool = False) -> RefreshResult:
    paybill = db.session.get(Paybill, paybill_id)
    label = _label(paybill)
    call = prepare_daraja_call(paybill)
    if not _claim(paybill_id, force):
        return RefreshResult(paybill_id, label, "still valid", "being refreshed by another worker")
    try:
        token = call.client.fetch_token(call.account)
    except DarajaError as exc:
        _record_error(paybill_id, exc)
        return RefreshResult(paybill_id, label, "failed", str(exc))
    call.tokens.save(token)
    _release_claim(paybill_id)
    return RefreshResult(paybill_id, label, "refreshed", f"expires {token.expires_at:%H:%M} UTC")


def _release_claim(paybill_id: int) -> None:
    db.session.execute(
        sa.update(Paybill)
        .where(PaybillTokenStore(paybill_id).same_key())
        .values(token_refresh_claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _record_error(paybill_id: int, exc: Exception) -> None:
    db.session.execute(
        sa.update(Paybill)
        .where(Paybill.id == paybill_id)
        .values(last_token_error=str(exc)[:500], last_token_error_at=utcnow())
    )
    _release_claim(paybill_id)
    log.warning("token refresh failed paybill=%s: %s", paybill_id, exc)


def _label(paybill: Paybill) -> str:
    return f"{paybill.type} {paybill.number} (id {paybill.id})"

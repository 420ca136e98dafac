"""The SMS outbox: rows written in the caller's transaction, sent later by the notify worker.

* ``queue_receipt`` runs inside the activation's transaction (``hotspot.activations``), as one
  INSERT … SELECT: a row only for a voucher that just became active, has a phone, did not opt out,
  and whose owner has an account to send with. ``dedupe_key`` is unique and the insert says
  ON CONFLICT DO NOTHING, so the receipt is queued once per voucher whatever callbacks, C2B
  confirmations or retried activations arrive. Nothing is sent there: the callback and activation
  paths never wait on the provider.
* ``send_due_sms`` (the ``send_sms`` job) claims due rows with a conditional UPDATE and a lease,
  renders the text, checks the owner's monthly cap, sends within PORTAL_SMS_RATE_PER_S, and
  records the message id and cost. A send that provably did not go out is retried with capped
  backoff; one whose answer never came may have gone out and is not sent again (the customer can
  ask for their code again), so a customer is not sent the same receipt twice.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..core.extensions import db
from ..hotspot.brands import brand_for
from ..models import Activation, Plan, Router, SmsDeliveryReport, SmsMessage, UTCDateTime, Voucher, utcnow
from . import accounts, texts
from .provider import SmsAccount, SmsError, SmsRejected, SmsUnavailable, send_sms, to_e164

log = logging.getLogger(__name__)

RETRY_BASE_S = 5.0
RETRY_CAP_S = 30 * 60.0
MAX_ATTEMPTS = 8
LEASE_S = 120
CUSTOMER_KINDS = ("receipt", "resend")
COUNTED_STATES = ("sent", "delivered", "undelivered")  # what the monthly cap counts (a batch adds its own)


@functools.lru_cache(maxsize=1)
def _insert_receipt() -> sa.TextClause:
    # Text, the same on PostgreSQL and SQLite (as activations' insert is): one statement on the
    # activation path. SQLite needs the WHERE in an INSERT … SELECT … ON CONFLICT.
    return sa.text(
        "INSERT INTO sms_messages (dedupe_key, kind, owner_id, voucher_id, phone, language, state, attempts,"
        " next_attempt_at, created_at)"
        " SELECT 'receipt:' || CAST(v.id AS VARCHAR(20)), 'receipt', v.owner_id, v.id, v.phone,"
        " COALESCE(v.language, 'en'), 'queued', 0, :now, :now"
        " FROM vouchers v LEFT JOIN notify_settings ns ON ns.owner_id = v.owner_id"
        " WHERE v.id = :voucher_id AND v.status = 'active' AND v.phone IS NOT NULL AND v.sms_opt_out = :no"
        " AND (ns.customer_sms IS NULL OR ns.customer_sms = :yes)"
        " AND (:platform = :yes OR ns.at_username IS NOT NULL)"
        " ON CONFLICT (dedupe_key) DO NOTHING"
    ).bindparams(
        sa.bindparam("now", type_=UTCDateTime()),
        sa.bindparam("platform", type_=sa.Boolean()),
        sa.bindparam("yes", True, type_=sa.Boolean()),
        sa.bindparam("no", False, type_=sa.Boolean()),
    )


def queue_receipt(voucher_id: int, now: datetime) -> None:
    """Add the voucher's receipt SMS to the caller's transaction (at most once per voucher, ever)."""
    platform = bool(current_app.config["PORTAL_SMS_USERNAME"] and current_app.config["PORTAL_SMS_API_KEY"])
    db.session.execute(_insert_receipt(), {"voucher_id": voucher_id, "now": now, "platform": platform})


class ResendRefused(Exception):
    """``reason``: no_phone (we have no number for it) or not_ready (no active code yet) or no_account."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def queue_resend(voucher: Voucher) -> SmsMessage:
    """The customer asked for their code again: one more message to the number that paid. The
    caller rate-limits. Commits. Raises ``ResendRefused``."""
    if not voucher.phone:
        raise ResendRefused("no_phone")
    if voucher.status not in ("paid", "active"):
        raise ResendRefused("not_ready")
    settings = accounts.settings_for(voucher.owner_id)
    if accounts.account_for(settings)[0] is None:
        raise ResendRefused("no_account")
    message = SmsMessage(
        kind="resend",
        owner_id=voucher.owner_id,
        voucher_id=voucher.id,
        phone=voucher.phone,
        language=voucher.language or "en",
    )
    db.session.add(message)
    db.session.commit()
    return message


def queue_owner_sms(owner_id: int, phone: str, text: str, alert_id: int | None) -> None:
    """An alert or all-clear for the owner; caller's transaction."""
    db.session.add(SmsMessage(kind="alert", owner_id=owner_id, alert_id=alert_id, phone=phone, text=text))


# ---------------------------------------------------------------------------------------------
# Sending


class _Pacer:
    """At most ``rate`` sends per second from this process (a token bucket of one second)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self, rate: float) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 1.0 / rate
        if start > now:
            time.sleep(start - now)


def _pacer() -> _Pacer:
    return current_app.extensions.setdefault("portal_sms_pacer", _Pacer())


@dataclass
class SendCounts:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if v}


def send_due_sms(limit: int | None = None, *, time_budget_s: float = 1.3) -> dict[str, int]:
    """Claim and send due messages, at most PORTAL_SMS_RATE_PER_S a second, until none is due,
    ``limit`` are done or the time budget is spent (the job runs every 2 s: with the last
    half-second batch a run still ends before the next is due). Safe to run in several workers at once."""
    rate = float(current_app.config["PORTAL_SMS_RATE_PER_S"])
    batch = max(1, int(rate / 2))  # half a second of sends: a claimed row is sent in this run
    deadline = time.monotonic() + time_budget_s
    counts = SendCounts()
    done = 0
    while time.monotonic() < deadline and (limit is None or done < limit):
        if _hold_back_for_activations():
            time.sleep(_BUSY_CHECK_S)
            continue
        claimed = claim_due_sms(batch if limit is None else min(batch, limit - done))
        if not claimed:
            break
        owners = _OwnerFacts()
        for message_id in claimed:
            _pacer().wait(rate)
            outcome = send_one(message_id, owners)
            setattr(counts, outcome, getattr(counts, outcome) + 1)
            done += 1
    return counts.as_dict()


ACTIVATIONS_FIRST_MAX_WAIT_S = 5.0
_BUSY_CHECK_S = 1.0  # while activations run, ask once a second: polling every 0.2 s cost them ~10 ms median (bench --only sms)


def _hold_back_for_activations() -> bool:
    """A receipt can wait a few seconds; a customer waiting to get online cannot. While any
    worker is putting a voucher on a router (or one was just paid for), no new batch is claimed,
    so the sender (and the delivery reports it causes) stays off activation's latency. After
    ACTIVATIONS_FIRST_MAX_WAIT_S of holding back, one batch goes anyway: a long rush still lets
    receipts out."""
    held = current_app.extensions.get("portal_sms_held_since")
    if not _activations_busy():
        current_app.extensions["portal_sms_held_since"] = None
        return False
    now = time.monotonic()
    if held is None:
        current_app.extensions["portal_sms_held_since"] = now
        return True
    if now - held >= ACTIVATIONS_FIRST_MAX_WAIT_S:
        current_app.extensions["portal_sms_held_since"] = now  # this batch goes; the next waits again
        return False
    return True


def _activations_busy() -> bool:
    now = utcnow()
    busy = db.session.scalar(
        sa.select(
            sa.or_(
                sa.exists().where(Activation.status == "running", Activation.lease_until > now),
                sa.exists().where(
                    Activation.status == "pending",
                    Activation.next_attempt_at <= now,
                    Activation.created_at > now - timedelta(seconds=10),
                    Activation.kind == "activate",
                ),
            )
        )
    )
    db.session.commit()  # no snapshot kept between checks
    return bool(busy)


def claim_due_sms(limit: int) -> list[int]:
    """Due rows (queued and due, or a sender's lease that ran out), each won by a conditional UPDATE."""
    now = utcnow()
    due = sa.or_(
        sa.and_(SmsMessage.state == "queued", SmsMessage.next_attempt_at <= now),
        sa.and_(SmsMessage.state == "sending", SmsMessage.lease_until < now),
    )
    ids = db.session.scalars(
        sa.select(SmsMessage.id).where(due).order_by(SmsMessage.next_attempt_at).limit(limit)
    ).all()
    won = []
    for message_id in ids:
        taken = db.session.execute(
            sa.update(SmsMessage)
            .where(SmsMessage.id == message_id, due)
            .values(state="sending", lease_until=now + timedelta(seconds=LEASE_S), attempts=SmsMessage.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken:
            won.append(message_id)
    db.session.commit()
    return won


class _OwnerFacts:
    """Per batch: each owner's account and this month's count, read once (a batch is seconds long)."""

    def __init__(self) -> None:
        self._accounts: dict[int, tuple[SmsAccount | None, str | None, int]] = {}
        self.sent: dict[int, int] = {}

    def account(self, owner_id: int) -> tuple[SmsAccount | None, str | None, int]:
        if owner_id not in self._accounts:
            settings = accounts.settings_for(owner_id)
            self._accounts[owner_id] = (*accounts.account_for(settings), accounts.monthly_cap(settings))
        return self._accounts[owner_id]

    def sent_this_month(self, owner_id: int, message_id: int) -> int:
        if owner_id not in self.sent:
            self.sent[owner_id] = sent_this_month(owner_id, not_counting=message_id)
        return self.sent[owner_id]


def send_one(message_id: int, owners: _OwnerFacts | None = None) -> str:
    """Send one claimed row and record the outcome (commits): sent, retrying, failed or skipped."""
    owners = owners or _OwnerFacts()
    message = db.session.get(SmsMessage, message_id)
    if message is None or message.state != "sending":
        return "skipped"
    account, which, cap = owners.account(message.owner_id)
    if account is None:
        return _finish(message, "skipped", "no SMS account: set PORTAL_SMS_USERNAME or the owner's own account")
    if message.kind in CUSTOMER_KINDS:
        if owners.sent_this_month(message.owner_id, message.id) >= cap:
            return _finish(message, "skipped", "the owner's monthly SMS cap is reached")
        owners.sent[message.owner_id] += 1  # counted as soon as it may go out, as the cap query counts "sending"
    if message.text is None:
        message.text = render_customer_text(message)
    message.account = which
    attempt = message.attempts
    db.session.commit()  # no transaction open while the provider answers
    try:
        sent = send_sms(
            account, to_e164(message.phone), message.text, timeout_s=current_app.config["PORTAL_SMS_TIMEOUT_S"]
        )
    except SmsError as exc:
        return _record_failure(message_id, attempt, exc)
    db.session.execute(
        sa.update(SmsMessage)
        .where(SmsMessage.id == message_id, SmsMessage.state == "sending")
        .values(
            state="sent",
            sent_at=utcnow(),
            lease_until=None,
            last_error=None,
            provider_message_id=sent.message_id[:64] or None,
            provider_status_code=sent.status_code,
            cost=sent.cost[:24] or None,
            cost_kes_micro=sent.cost_kes_micro,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    log.info("sms %s sent kind=%s id=%s cost=%s", message_id, message.kind, sent.message_id, sent.cost)
    if sent.message_id:
        _apply_early_reports(sent.message_id)
    return "sent"


def _record_failure(message_id: int, attempt: int, exc: SmsError) -> str:
    db.session.rollback()
    error = f"{type(exc).__name__}: {exc}"[:300]
    message = db.session.get(SmsMessage, message_id)
    permanent = isinstance(exc, SmsRejected) and exc.is_permanent
    unknown = isinstance(exc, SmsUnavailable) and exc.outcome_unknown
    if permanent or unknown or attempt >= MAX_ATTEMPTS:
        reason = "may have gone out; not sent again" if unknown else error
        outcome = _finish(
            message, "failed", f"{error} ({reason})"[:300] if unknown else reason, status_code=exc.status_code
        )
        log.warning("sms %s failed for good attempt=%s: %s", message_id, attempt, error)
        return outcome
    message.state, message.lease_until, message.last_error = "queued", None, error
    message.provider_status_code = exc.status_code
    message.next_attempt_at = utcnow() + timedelta(seconds=retry_delay(attempt))
    db.session.commit()
    log.info("sms %s not sent attempt=%s, retrying: %s", message_id, attempt, error)
    return "retrying"


def _finish(message: SmsMessage, state: str, reason: str, *, status_code: int | None = None) -> str:
    message.state, message.lease_until, message.last_error = state, None, reason[:300]
    if status_code is not None:
        message.provider_status_code = status_code
    db.session.commit()
    return state


def retry_delay(attempts: int) -> float:
    return min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)


def month_start(now: datetime) -> datetime:
    """The first instant of this calendar month in Nairobi, in UTC."""
    local = now.astimezone(texts.NAIROBI)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def sent_this_month(owner_id: int, now: datetime | None = None, *, not_counting: int | None = None) -> int:
    """Customer messages sent (or being sent) for this owner this calendar month."""
    since = month_start(now or utcnow())
    return (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(SmsMessage)
            .where(
                SmsMessage.owner_id == owner_id,
                SmsMessage.created_at >= since,
                SmsMessage.kind.in_(CUSTOMER_KINDS),
                SmsMessage.state.in_(COUNTED_STATES),
                SmsMessage.id != (not_counting or 0),
            )
        )
        or 0
    )


def render_customer_text(message: SmsMessage) -> str:
    voucher, plan, router = db.session.execute(
        sa.select(Voucher, Plan, Router)
        .join(Plan, Plan.id == Voucher.plan_id)
        .join(Router, Router.id == Voucher.router_id)
        .where(Voucher.id == message.voucher_id)
    ).one()
    brand = brand_for(router.id)  # the hotspot's name as the customer's page showed it (cached)
    return texts.receipt_text(
        texts.ReceiptFacts(
            code=voucher.code,
            plan_name=plan.name,
            hotspot_name=brand.hotspot_name or router.name,
            language=message.language,
            expires_at=voucher.expires_at,
            duration_s=plan.duration_s,
            data_limit_bytes=plan.data_limit_bytes,
            devices=plan.devices,
        )
    )


def _apply_early_reports(provider_message_id: str) -> None:
    """A delivery report that beat our record of the message id was stored raw: apply it now."""
    from .delivery import apply_report

    early = db.session.scalars(
        sa.select(SmsDeliveryReport).where(
            SmsDeliveryReport.message_id == provider_message_id, SmsDeliveryReport.status == "unmatched"
        )
    ).all()
    for report in early:
        apply_report(report.id)

"""Inbound webhooks: store raw first, then process, and keep every outcome visible.

A row is committed before any parsing, so nothing Daraja sent is ever lost. Processing runs in
its own transaction; if it fails (a locked or unreachable database, a bug) the row stays
``failed`` with the error and ``reprocess_failed`` tries it again later, with a growing wait, at most
``MAX_ATTEMPTS`` times in all: a row that keeps failing gives way to newer ones and then gives up,
and a given-up payment notice goes on the owner's Problems page. A body no parser can read
(nested past the recursion limit, not JSON) is ``rejected`` at once, kept raw, and answered like any other.

Requests to a path token no paybill has are kept only as a sample (``UNKNOWN_TOKEN_ROWS_PER_MINUTE``
per process) and only for ``UNKNOWN_TOKEN_RETENTION``: a guesser must not be able to fill the disk.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..core.database import storable
from ..core.extensions import db
from ..models import Paybill, WebhookLog, utcnow
from ..owners import audit
from ..owners.paybills import WebhookPaybill
from . import settlement, webhook_log_b2c

log = logging.getLogger(__name__)

RETENTION = timedelta(days=90)
MAX_STORED_BODY = 64 * 1024

# Processing attempts per row, the one inside the request included. Each is counted before it
# starts, so a process that dies half-way (and leaves the row "received") has still used one.
MAX_ATTEMPTS = 6
# The wait after attempt n (1-based) before the next: a locked database clears in seconds, a bug
# needs a deploy. After the last attempt there is no next one.
RETRY_DELAYS = (timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15),
                timedelta(minutes=60))  # MAX_ATTEMPTS - 1 of them

UNKNOWN_TOKEN_ROWS_PER_MINUTE = 60
UNKNOWN_TOKEN_RETENTION = timedelta(hours=24)


def load_json(text: str) -> Any:
    """``json.loads`` whose every refusal is a ``PayloadError``: nesting deep enough to exhaust
    the parser's recursion is as malformed as a missing brace, and must not become a 5xx."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"not JSON: {type(exc).__name__}: {str(exc)[:200]}") from None


@dataclass(frozen=True)
class StoredWebhook:
    """A stored request, as plain values: nothing reloads from the database after the commit."""

    id: int
    kind: str
    paybill_id: int | None
    payload: str


# Statements every webhook runs, built once: Core rather than ORM objects (the unit of work costs
# more than the insert), and prebuilt so SQLAlchemy neither rebuilds nor re-keys them per request.
_LOG = WebhookLog.__table__
_STORE_RAW = sa.insert(_LOG).returning(_LOG.c.id)
# The key fields (checkout_request_id, result_code, trans_id, bill_ref_number) come in as
# parameters named after their columns, which SQLAlchemy adds to the SET clause.
_NOTE_KEYS = (
    sa.update(_LOG)
    .where(_LOG.c.id == sa.bindparam("entry_id"))
    .values(status="processed", processed_at=sa.bindparam("now", type_=_LOG.c.processed_at.type), error=None)
)


def store_raw(
    kind: str,
    body: bytes,
    *,
    remote_addr: str | None,
    paybill_id: int | None,
    rejected_because: str | None = None,
) -> StoredWebhook:
    """Commit the raw request before anything else happens to it (NUL bytes become U+FFFD).

    A request already known to be unacceptable (wrong token, address, size) is stored with its
    verdict in the same commit.
    """
    payload = storable(body[:MAX_STORED_BODY].decode("utf-8", errors="replace")) or ""
    values: dict[str, Any] = {"kind": kind, "payload": payload, "remote_addr": (remote_addr or "")[:45] or None,
                              "paybill_id": paybill_id}
    if rejected_because:
        values.update(status="rejected", error=storable(rejected_because, 500), processed_at=utcnow(),
                      result_code=claimed_result_code(payload))  # so a rejected "success" stands out
    else:
        values["attempts"] = 1  # the processing this request does next, counted in the same insert
    return StoredWebhook(_insert_committed(values), kind, paybill_id, payload)


def _insert_committed(values: dict[str, Any]) -> int:
    """Insert one log row and have it committed when this returns."""
    if db.engine.dialect.name != "postgresql":
        entry_id = db.session.execute(_STORE_RAW, values).scalar_one()
        db.session.commit()
        return int(entry_id)
    # PostgreSQL: the INSERT as its own autocommitted statement, without the BEGIN and COMMIT
    # round trips a transaction costs: this runs for every webhook. (SQLite keeps the session
    # path: its connections open transactions themselves, with BEGIN IMMEDIATE.)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return int(conn.execute(_STORE_RAW, values).scalar_one())


def mark(entry_id: int, status: str, error: str | None = None) -> None:
    db.session.execute(
        sa.update(WebhookLog)
        .where(WebhookLog.id == entry_id)
        .values(status=status, error=storable(error or None, 500), processed_at=utcnow())
    )
    db.session.commit()


@dataclass(frozen=True)
class ParsedCallback:
    checkout_request_id: str
    result_code: int | str
    result_desc: str
    metadata: dict[str, Any]


class PayloadError(ValueError):
    """The body is not the shape Daraja sends."""


def parse_stk_callback(payload: Any) -> ParsedCallback:
    try:
        callback = payload["Body"]["stkCallback"]
        checkout_id = callback["CheckoutRequestID"]
        result_code = callback["ResultCode"]
    except (KeyError, TypeError) as exc:
        raise PayloadError("not an STK callback: Body.stkCallback.CheckoutRequestID/ResultCode missing") from exc
    if not isinstance(checkout_id, str) or not 1 <= len(checkout_id) <= 64:
        raise PayloadError("CheckoutRequestID is not a string")
    if "\x00" in checkout_id:  # none of ours holds one, and PostgreSQL refuses it in a lookup
        raise PayloadError("CheckoutRequestID holds a NUL byte")
    if isinstance(result_code, bool) or not isinstance(result_code, (int, str)) or len(str(result_code)) > 32:
        raise PayloadError("ResultCode is not a number")
    desc = callback.get("ResultDesc")
    return ParsedCallback(
        checkout_request_id=checkout_id,
        result_code=result_code,
        result_desc=(storable(desc) or "") if isinstance(desc, str) else "",  # NUL fails a PostgreSQL write
        metadata=_metadata_items(callback.get("CallbackMetadata")),
    )


def _metadata_items(raw: Any) -> dict[str, Any]:
    # A list of name/value pairs whose length and order vary (Balance often has no Value).
    items = raw.get("Item") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        return {}
    return {
        item["Name"]: item.get("Value")
        for item in items
        if isinstance(item, dict) and isinstance(item.get("Name"), str)
    }


def claimed_result_code(payload: str) -> str | None:
    """The ResultCode a body claims, read without trusting it (for the owner's Problems page)."""
    try:
        code = load_json(payload)["Body"]["stkCallback"]["ResultCode"]
    except (PayloadError, KeyError, TypeError):
        return None
    return storable(str(code), 32) if isinstance(code, (int, str)) and not isinstance(code, bool) else None


def process_stk_callback(stored: StoredWebhook) -> settlement.RecordOutcome:
    """Parse and record one stored callback; every outcome is written back to its log row.

    The key fields go onto the log row in the same transaction that records the money.
    """
    try:
        parsed = parse_stk_callback(load_json(stored.payload))
    except PayloadError as exc:
        mark(stored.id, "rejected", f"malformed: {exc}")
        return settlement.RecordOutcome("rejected", str(exc))
    keys = dict(
        checkout_request_id=storable(parsed.checkout_request_id, 64),
        result_code=storable(str(parsed.result_code), 32),
        trans_id=settlement.clean_receipt(parsed.metadata.get("MpesaReceiptNumber")),
    )
    _note_keys(stored.id, **keys)
    return _record(stored.id, keys, lambda: settlement.record_stk_result(
        parsed.checkout_request_id,
        parsed.result_code,
        parsed.result_desc,
        metadata=parsed.metadata,
        paybill_id=stored.paybill_id,
    ))


def _note_keys(entry_id: int, **values: str | None) -> None:
    """Searchable key fields for the log viewer, and "processed" in advance: not committed here.

    The recording that follows commits them with the money, so the common case (a payment
    recorded) costs no extra commit; any other outcome overwrites the status right after, and
    a failure rolls all of it back before the row is marked failed.
    """
    db.session.execute(_NOTE_KEYS, {"entry_id": entry_id, "now": utcnow(), **values})


def process_c2b_confirmation(stored: StoredWebhook, paybill: Paybill | WebhookPaybill) -> settlement.RecordOutcome:
    entry_id = stored.id
    try:
        body = load_json(stored.payload)
        if not isinstance(body, dict):
            raise PayloadError("not a JSON object")
        trans_id, amount = body.get("TransID"), body.get("TransAmount")
        bill_ref, shortcode = body.get("BillRefNumber"), body.get("BusinessShortCode")
        if not isinstance(trans_id, str) or amount is None:
            raise PayloadError("TransID/TransAmount missing")
        if not isinstance(shortcode, (str, int)) or isinstance(shortcode, bool):
            raise PayloadError("BusinessShortCode missing")
        bill_ref = bill_ref if isinstance(bill_ref, str) else None
    except PayloadError as exc:
        mark(entry_id, "rejected", f"malformed: {exc}")
        return settlement.RecordOutcome("rejected", str(exc))
    keys = dict(trans_id=storable(trans_id, 32), bill_ref_number=storable(bill_ref or "", 40) or None)
    _note_keys(entry_id, **keys)
    return _record(entry_id, keys, lambda: settlement.record_c2b_payment(
        trans_id=trans_id, amount=amount, bill_ref=bill_ref, paybill=paybill, shortcode=str(shortcode)
    ))


_STATUS_FOR_ACTION = {
    "paid": "processed",
    "underpaid": "processed",
    "failed": "processed",
    "duplicate": "processed",
    "unmatched": "processed",
    "ignored": "ignored",
    "rejected": "rejected",
}


def _record(entry_id: int, keys: dict[str, str | None], record: Any) -> settlement.RecordOutcome:
    try:
        outcome = record()
    except Exception as exc:  # keep it for the reprocessing job; Daraja still gets its answer
        db.session.rollback()
        log.exception("webhook %s processing failed", entry_id)
        _mark_failed(entry_id, f"{type(exc).__name__}: {exc}", keys)
        return settlement.RecordOutcome("failed_processing", str(exc))
    if outcome.action in ("paid", "underpaid") and not outcome.detail:
        return outcome  # already committed as processed, with the payment
    detail = f"{outcome.action}: {outcome.detail}" if outcome.detail else outcome.action
    mark(entry_id, _STATUS_FOR_ACTION.get(outcome.action, "processed"), detail)
    return outcome


def _mark_failed(entry_id: int, error: str, keys: dict[str, str | None]) -> None:
    """Failed, with its key fields (the rollback took them) and the time of its next attempt.

    The attempt was counted before it started (in the insert, or by ``reprocess_failed``); the
    wait follows from that count, and after the last attempt there is none: the row has given up.
    """
    now = utcnow()
    next_try = sa.case(
        *((WebhookLog.attempts == n, sa.literal(now + wait, WebhookLog.next_try_at.type))
          for n, wait in enumerate(RETRY_DELAYS, start=1)),
        else_=sa.null(),
    )
    given_up = f"gave up after {MAX_ATTEMPTS} attempts; last: {error}"
    error_text = sa.case((WebhookLog.attempts >= MAX_ATTEMPTS, storable(given_up, 500)), else_=storable(error, 500))
    try:
        db.session.execute(
            sa.update(WebhookLog)
            .where(WebhookLog.id == entry_id)
            .values(status="failed", error=error_text, next_try_at=next_try, **keys)
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not mark webhook %s failed; it stays 'received' for the reprocessing job", entry_id)


def process_early_callbacks(checkout_request_id: str) -> int:
    """Callbacks that arrived before we had stored their CheckoutRequestID get processed now."""
    early = db.session.scalars(
        sa.select(WebhookLog).where(
            WebhookLog.checkout_request_id == checkout_request_id,
            WebhookLog.kind == "stk_callback",
            WebhookLog.status == "ignored",
        )
    ).all()
    for entry in early:
        process_stk_callback(_as_stored(entry))
    return len(early)


def settle_early_leftovers(*, now: Any = None, limit: int = 100) -> int:
    """Early success callbacks whose push never learned its CheckoutRequestID (it timed out, or
    failed after Daraja took it): once no push can still be in flight, record them again, so
    they are adopted by an outcome-unknown push or kept as unmatched money, never left ignored."""
    now = now or utcnow()
    rows = db.session.scalars(
        sa.select(WebhookLog).where(
            WebhookLog.kind == "stk_callback",
            WebhookLog.status == "ignored",
            WebhookLog.error == f"ignored: {settlement.EARLY_CALLBACK}",
            WebhookLog.received_at < now - settlement.PUSH_IN_FLIGHT,
            WebhookLog.received_at > now - RETENTION,
        ).order_by(WebhookLog.id).limit(limit)
    ).all()
    db.session.commit()
    for entry in rows:
        process_stk_callback(_as_stored(entry))
    return len(rows)


def _as_stored(entry: WebhookLog) -> StoredWebhook:
    return StoredWebhook(entry.id, entry.kind, entry.paybill_id, entry.payload)


def reprocess_failed(limit: int = 100, *, older_than: timedelta = timedelta(seconds=10)) -> dict[str, int]:
    """Retry webhooks whose processing failed (or never finished) and whose next try is due.

    Fewest attempts first, so a row that keeps failing never holds back a newer one; each attempt
    is counted (and the next one scheduled) before it starts, so a row whose processing kills the
    process is capped too. A row out of attempts stays ``failed`` for good. Safe to run twice at
    once: a row goes to the worker whose count moved it on, and recording is idempotent anyway.
    """
    now = utcnow()
    due = sa.and_(
        WebhookLog.status.in_(("failed", "received")),  # the status index narrows to these
        WebhookLog.received_at < now - older_than,  # not one still being processed by its request
        sa.or_(WebhookLog.next_try_at.is_(None), WebhookLog.next_try_at <= now),
        sa.or_(WebhookLog.attempts < MAX_ATTEMPTS, WebhookLog.status == "received"),
    )
    entries = [
        (_as_stored(entry), entry.attempts)
        for entry in db.session.scalars(
            sa.select(WebhookLog).where(due).order_by(WebhookLog.attempts, WebhookLog.id).limit(limit)
        )
    ]
    db.session.commit()
    counts = {"retried": 0, "processed": 0, "still_failed": 0, "gave_up": 0}
    for stored, attempts in entries:
        if attempts >= MAX_ATTEMPTS:  # its last attempt never finished
            _give_up(stored.id, attempts)
            counts["gave_up"] += 1
            continue
        if not _count_attempt(stored.id, attempts, now):
            continue  # another worker has it
        counts["retried"] += 1
        outcome = _reprocess_one(stored)
        if outcome.action != "failed_processing":
            counts["processed"] += 1
        elif attempts + 1 >= MAX_ATTEMPTS:
            counts["gave_up"] += 1
        else:
            counts["still_failed"] += 1
    return counts


def _count_attempt(entry_id: int, attempts: int, now: Any) -> bool:
    """Count the coming attempt and book the next one, committed before processing starts."""
    wait = RETRY_DELAYS[attempts] if attempts < len(RETRY_DELAYS) else None  # after attempt attempts + 1
    claimed = db.session.execute(
        sa.update(WebhookLog)
        .where(WebhookLog.id == entry_id, WebhookLog.attempts == attempts,
               WebhookLog.status.in_(("failed", "received")))
        .values(attempts=attempts + 1, next_try_at=now + wait if wait else None)
    ).rowcount
    db.session.commit()
    return claimed == 1


def _give_up(entry_id: int, attempts: int) -> None:
    db.session.execute(
        sa.update(WebhookLog)
        .where(WebhookLog.id == entry_id, WebhookLog.status == "received")
        .values(status="failed", next_try_at=None, processed_at=utcnow(),
                error=f"gave up after {attempts} attempts: processing never finished")
    )
    db.session.commit()


def is_given_up(entry: WebhookLog) -> bool:
    """Failed with no attempt booked: the reprocessing job will not touch it again."""
    return entry.status == "failed" and entry.next_try_at is None


def try_given_up_again(entry_id: int, *, actor: Any) -> str:
    """Someone fixed what made a row fail every time (a bug, a missing paybill): one more attempt,
    now, counted like the job's. Recording is idempotent, so a row whose money was recorded some
    other way meanwhile changes nothing. Returns the row's outcome in words."""
    entry = db.session.get(WebhookLog, entry_id)
    if entry is None or not is_given_up(entry):
        db.session.commit()
        return "not given up: the reprocessing job still has it, or it needs nothing"
    claimed = db.session.execute(
        sa.update(WebhookLog)
        .where(WebhookLog.id == entry_id, WebhookLog.status == "failed", WebhookLog.next_try_at.is_(None),
               WebhookLog.attempts == entry.attempts)
        .values(attempts=entry.attempts + 1)
    ).rowcount
    audit.record("webhook.try_again", actor=actor, owner_id=_owner_of(entry.paybill_id), object_type="webhook",
                 object_id=entry_id, detail=f"{entry.kind}, after {entry.attempts} attempts")
    db.session.commit()
    if claimed != 1:
        return "someone else is trying it right now"
    outcome = _reprocess_one(_as_stored(entry))
    db.session.expire_all()
    after = db.session.get(WebhookLog, entry_id)
    log.info("webhook %s tried again by %s: %s", entry_id, getattr(actor, "email", actor), outcome.action)
    return f"{after.status}: {after.error or outcome.action}"


def _owner_of(paybill_id: int | None) -> int | None:
    return db.session.scalar(sa.select(Paybill.owner_id).where(Paybill.id == paybill_id)) if paybill_id else None


def _reprocess_one(entry: StoredWebhook) -> settlement.RecordOutcome:
    if entry.kind == "stk_callback":
        return process_stk_callback(entry)
    if entry.kind == "c2b_confirmation" and entry.paybill_id:
        paybill = db.session.get(Paybill, entry.paybill_id)
        return process_c2b_confirmation(entry, paybill)
    if entry.kind in webhook_log_b2c.B2C_KINDS:  # issue 15: payouts and refunds
        action = webhook_log_b2c.process_b2c_webhook(entry.id, entry.kind, entry.paybill_id, entry.payload)
        return settlement.RecordOutcome(action)
    mark(entry.id, "ignored", "nothing to reprocess")
    return settlement.RecordOutcome("ignored")


def purge_old(now: Any = None) -> int:
    """Delete rows past RETENTION, and rows for unknown path tokens (no paybill) past a day."""
    now = now or utcnow()
    deleted = db.session.execute(sa.delete(WebhookLog).where(WebhookLog.received_at < now - RETENTION)).rowcount
    deleted += db.session.execute(
        sa.delete(WebhookLog).where(WebhookLog.paybill_id.is_(None),  # the (paybill_id, received_at) index
                                    WebhookLog.received_at < now - UNKNOWN_TOKEN_RETENTION)
    ).rowcount
    db.session.commit()
    return deleted


class MinuteQuota:
    """At most ``per_minute`` yeses per clock minute, counted in this process: no database work."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._minute = -1
        self._used = 0

    def take(self) -> bool:
        minute = int(time.time() // 60)
        with self._lock:
            if minute != self._minute:
                self._minute, self._used = minute, 0
            if self._used >= self.per_minute:
                return False
            self._used += 1
            return True


def keep_unknown_token_row() -> bool:
    """Whether to store this request to an unknown path token: a sample of a few a minute per app."""
    quota = current_app.extensions.setdefault("webhook_unknown_token_quota",
                                              MinuteQuota(UNKNOWN_TOKEN_ROWS_PER_MINUTE))
    return quota.take()

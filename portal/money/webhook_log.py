"""Inbound webhooks: store raw first, then process, and keep every outcome visible.

A row is committed before any parsing, so nothing Daraja sent is ever lost. Processing runs in
its own transaction; if it fails (a locked or unreachable database, a bug) the row stays
``failed`` with the error and ``reprocess_failed`` tries it again later. A body no parser can read
(nested past the recursion limit, not JSON) is ``rejected`` at once, kept raw, and answered like any other.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ..core.database import storable
from ..core.extensions import db
from ..models import Paybill, WebhookLog, utcnow
from ..owners.paybills import WebhookPaybill
from . import settlement

log = logging.getLogger(__name__)

RETENTION = timedelta(days=90)
MAX_STORED_BODY = 64 * 1024


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
    _note_keys(
        stored.id,
        checkout_request_id=storable(parsed.checkout_request_id, 64),
        result_code=storable(str(parsed.result_code), 32),
        trans_id=settlement.clean_receipt(parsed.metadata.get("MpesaReceiptNumber")),
    )
    return _record(stored.id, lambda: settlement.record_stk_result(
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
    _note_keys(entry_id, trans_id=storable(trans_id, 32), bill_ref_number=storable(bill_ref or "", 40) or None)
    return _record(entry_id, lambda: settlement.record_c2b_payment(
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


def _record(entry_id: int, record: Any) -> settlement.RecordOutcome:
    try:
        outcome = record()
    except Exception as exc:  # keep it for the reprocessing job; Daraja still gets its answer
        db.session.rollback()
        log.exception("webhook %s processing failed", entry_id)
        _mark_failed(entry_id, f"{type(exc).__name__}: {exc}")
        return settlement.RecordOutcome("failed_processing", str(exc))
    if outcome.action in ("paid", "underpaid") and not outcome.detail:
        return outcome  # already committed as processed, with the payment
    detail = f"{outcome.action}: {outcome.detail}" if outcome.detail else outcome.action
    mark(entry_id, _STATUS_FOR_ACTION.get(outcome.action, "processed"), detail)
    return outcome


def _mark_failed(entry_id: int, error: str) -> None:
    try:
        db.session.execute(
            sa.update(WebhookLog)
            .where(WebhookLog.id == entry_id)
            .values(status="failed", error=error[:500], attempts=WebhookLog.attempts + 1)
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


def _as_stored(entry: WebhookLog) -> StoredWebhook:
    return StoredWebhook(entry.id, entry.kind, entry.paybill_id, entry.payload)


def reprocess_failed(limit: int = 100, *, older_than: timedelta = timedelta(seconds=10)) -> dict[str, int]:
    """Retry webhooks whose processing failed (or never finished). Safe to run twice at once:
    recording is idempotent, so a row processed by two workers still records its money once."""
    cutoff = utcnow() - older_than
    entries = db.session.scalars(
        sa.select(WebhookLog)
        .where(WebhookLog.status.in_(("failed", "received")), WebhookLog.received_at < cutoff)
        .order_by(WebhookLog.id)
        .limit(limit)
    ).all()
    counts = {"retried": 0, "processed": 0, "still_failed": 0}
    for entry in entries:
        counts["retried"] += 1
        outcome = _reprocess_one(entry)
        counts["still_failed" if outcome.action == "failed_processing" else "processed"] += 1
    return counts


def _reprocess_one(entry: WebhookLog) -> settlement.RecordOutcome:
    if entry.kind == "stk_callback":
        return process_stk_callback(_as_stored(entry))
    if entry.kind == "c2b_confirmation" and entry.paybill_id:
        paybill = db.session.get(Paybill, entry.paybill_id)
        return process_c2b_confirmation(_as_stored(entry), paybill)
    mark(entry.id, "ignored", "nothing to reprocess")
    return settlement.RecordOutcome("ignored")


def purge_old(now: Any = None) -> int:
    cutoff = (now or utcnow()) - RETENTION
    deleted = db.session.execute(sa.delete(WebhookLog).where(WebhookLog.received_at < cutoff)).rowcount
    db.session.commit()
    return deleted

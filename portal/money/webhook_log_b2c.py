"""B2C webhooks (Result, QueueTimeOut, Transaction Status answer and its timeout): stored raw
first by ``webhook_log.store_raw`` like every webhook, then processed here exactly once (the
transfer's conditional state change and the ledger's unique (source, kind) see to that), and
reprocessed by ``webhook_log.reprocess_failed`` when processing failed."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from ..core.database import storable
from ..core.extensions import db
from ..models import WebhookLog, utcnow
from ..mpesa import b2c
from . import b2c_transfers

log = logging.getLogger(__name__)

B2C_KINDS = ("b2c_result", "b2c_timeout", "b2c_status", "b2c_status_timeout")
_STATUS = {"completed": "processed", "failed": "processed", "duplicate": "processed", "pending": "processed",
           "unknown": "processed", "ignored": "ignored", "rejected": "rejected"}


def _mark(entry_id: int, status: str, detail: str, **keys: str | None) -> None:
    db.session.execute(
        sa.update(WebhookLog).where(WebhookLog.id == entry_id)
        .values(status=status, error=storable(detail, 500), processed_at=utcnow(), **keys)
    )
    db.session.commit()


def process_b2c_webhook(entry_id: int, kind: str, paybill_id: int | None, payload: str) -> str:
    """Parse and record one stored B2C webhook; its log row gets the outcome. Returns the action
    (or "failed_processing": the row is left failed for the reprocessing job)."""
    try:
        body = json.loads(payload)
        if kind in ("b2c_timeout", "b2c_status_timeout"):
            originator_id, _ = b2c.parse_timeout(body)
            result = None
        else:
            result = b2c.parse_result(body)
            originator_id = result.originator_conversation_id
    except (ValueError, RecursionError, b2c.B2CPayloadError) as exc:
        _mark(entry_id, "rejected", f"malformed: {str(exc)[:200]}")
        return "rejected"
    keys = {"trans_id": storable(originator_id, 32), "result_code": storable(result.result_code, 32) if result else None}
    try:
        if kind == "b2c_result":
            action = b2c_transfers.record_result(result, paybill_id)
        elif kind == "b2c_status":
            action = b2c_transfers.record_status_result(result, paybill_id)
        elif kind == "b2c_timeout":
            action = b2c_transfers.record_timeout(originator_id, paybill_id)
        else:
            action = "pending"  # the status query itself timed out: the job asks again on its schedule
    except Exception as exc:  # kept for the reprocessing job; Daraja still gets its answer
        db.session.rollback()
        log.exception("b2c webhook %s processing failed", entry_id)
        db.session.execute(sa.update(WebhookLog).where(WebhookLog.id == entry_id).values(
            status="failed", error=storable(f"{type(exc).__name__}: {exc}", 500),
            next_try_at=utcnow(), **keys))
        db.session.commit()
        return "failed_processing"
    _mark(entry_id, _STATUS.get(action, "processed"), action, **keys)
    return action

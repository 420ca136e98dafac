"""Delivery reports: Africa's Talking POSTs a form (``id``, ``status``, ``phoneNumber``,
``networkCode``, ``failureReason``) to the URL set in its dashboard. Ours carries a secret path
token; each report is stored raw before it is matched (by ``id`` = the send's ``messageId``).

A final state never goes back: a late "Buffered" after "Success" changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import parse_qs

import sqlalchemy as sa
from flask import current_app

from ..core.database import storable
from ..core.extensions import db
from ..models import SmsDeliveryReport, SmsMessage, utcnow

log = logging.getLogger(__name__)

DELIVERED = frozenset({"Success"})
UNDELIVERED = frozenset({"Failed", "Rejected", "AbsentSubscriber", "Expired"})
MAX_STORED = 4096


def report_token() -> str:
    """The secret path part of the delivery-report URL (derived from SECRET_KEY: nothing to store)."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"sms-delivery-reports", hashlib.sha256).hexdigest()[:40]


def is_report_token(token: str) -> bool:
    return hmac.compare_digest(token.encode(), report_token().encode())


def report_url() -> str:
    """The URL to paste into Africa's Talking's "Delivery Reports" callback (and the sandbox's)."""
    # Built by hand rather than url_for: jobs and the CLI have no request to build it in.
    return f"{current_app.config['PORTAL_BASE_URL']}/hooks/sms/{report_token()}/delivery"


def store_report(body: bytes, remote_addr: str | None) -> int:
    """Commit the raw report first; returns its row id."""
    payload = storable(body[:MAX_STORED].decode("utf-8", errors="replace")) or ""
    fields = parse_qs(payload)
    message_id = (fields.get("id") or [None])[0]
    report = SmsDeliveryReport(
        payload=payload, remote_addr=(remote_addr or "")[:45] or None, message_id=(message_id or "")[:64] or None
    )
    db.session.add(report)
    db.session.commit()
    return report.id


def apply_report(report_id: int) -> str:
    """Match a stored report to its message and record the delivery status. Commits. Returns the
    report's new status: processed, unmatched (no message with that id yet) or rejected (malformed)."""
    report = db.session.get(SmsDeliveryReport, report_id)
    fields = {k: v[0] for k, v in parse_qs(report.payload).items()}
    status = fields.get("status", "")[:24]
    if not report.message_id or not status:
        return _mark(report, "rejected")
    message = db.session.scalars(
        sa.select(SmsMessage).where(SmsMessage.provider_message_id == report.message_id)
    ).first()
    if message is None:
        return _mark(report, "unmatched")
    now = utcnow()
    values: dict[str, object] = {"delivery_status": status, "delivery_reason": (fields.get("failureReason") or None)}
    if status in DELIVERED:
        values.update(state="delivered", delivered_at=now)
    elif status in UNDELIVERED:
        values.update(state="undelivered")
    db.session.execute(
        sa.update(SmsMessage)
        .where(SmsMessage.id == message.id, SmsMessage.state.in_(("sending", "sent")))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    log.info("sms %s delivery report %s", message.id, status)
    return _mark(report, "processed")


def _mark(report: SmsDeliveryReport, status: str) -> str:
    report.status, report.processed_at = status, utcnow()
    db.session.commit()
    return status

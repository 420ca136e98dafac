"""Delivery reports: Africa's Talking POSTs a form (``id``, ``status``, ``phoneNumber``,
``networkCode``, ``failureReason``) to the URL set in its dashboard. Ours carries a secret path
token; each report is stored raw before it is matched (by ``id`` = the send's ``messageId``).

A final state never goes back: a late "Buffered" after "Success" changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import sqlalchemy as sa
from flask import current_app

from ..core.database import storable
from ..core.extensions import db
from ..models import SmsDeliveryReport, SmsMessage, UTCDateTime, utcnow

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


@dataclass(frozen=True)
class StoredReport:
    id: int
    payload: str
    message_id: str | None


def store_report(body: bytes, remote_addr: str | None) -> StoredReport:
    """Commit the raw report first."""
    payload = storable(body[:MAX_STORED].decode("utf-8", errors="replace")) or ""
    message_id = storable((parse_qs(payload).get("id") or [""])[0], 64) or None  # "%00" decodes to a NUL
    report_id = db.session.execute(
        sa.insert(SmsDeliveryReport).returning(SmsDeliveryReport.id),
        {
            "payload": payload,
            "remote_addr": (remote_addr or "")[:45] or None,
            "message_id": message_id,
            "status": "received",
            "received_at": utcnow(),
        },
    ).scalar_one()
    db.session.commit()
    return StoredReport(report_id, payload, message_id)


def apply_report(report: StoredReport | int) -> str:
    """Match a stored report to its message and record the delivery status, in one transaction.
    Returns the report's new status: processed, unmatched (no message with that id yet: the send
    applies it once it has recorded the id) or rejected (malformed)."""
    if isinstance(report, int):
        row = db.session.get(SmsDeliveryReport, report)
        report = StoredReport(row.id, row.payload, row.message_id)
    fields = {k: storable(v[0]) or "" for k, v in parse_qs(report.payload).items()}
    status = fields.get("status", "")[:24]
    if not report.message_id or not status:
        return _mark(report.id, "rejected")
    new_state = "delivered" if status in DELIVERED else "undelivered" if status in UNDELIVERED else None
    still_open = SmsMessage.state.in_(("sending", "sent"))
    # One UPDATE whatever the message's state: a final state never goes back (a late "Buffered"
    # after "Success" changes nothing), and its row count says whether the message is ours.
    values: dict[str, object] = {
        "delivery_status": sa.case((still_open, status), else_=SmsMessage.delivery_status),
        "delivery_reason": sa.case((still_open, fields.get("failureReason") or None), else_=SmsMessage.delivery_reason),
    }
    if new_state:
        values["state"] = sa.case((still_open, new_state), else_=SmsMessage.state)
    if new_state == "delivered":
        values["delivered_at"] = sa.case(
            (still_open, sa.literal(utcnow(), UTCDateTime())), else_=SmsMessage.delivered_at
        )
    matched = db.session.execute(
        sa.update(SmsMessage)
        .where(SmsMessage.provider_message_id == report.message_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    log.debug("sms delivery report %s for %s: %s", report.id, report.message_id, status)
    return _mark(report.id, "processed" if matched else "unmatched")


def _mark(report_id: int, status: str) -> str:
    db.session.execute(
        sa.update(SmsDeliveryReport)
        .where(SmsDeliveryReport.id == report_id)
        .values(status=status, processed_at=utcnow())
    )
    db.session.commit()
    return status


REPORT_RETENTION = timedelta(days=90)  # as the webhook log: the outcome itself stays on the message


def purge_old_reports(now: datetime | None = None) -> int:
    """Delete raw delivery reports past REPORT_RETENTION; returns how many."""
    cutoff = (now or utcnow()) - REPORT_RETENTION
    deleted = db.session.execute(sa.delete(SmsDeliveryReport).where(SmsDeliveryReport.received_at < cutoff)).rowcount
    db.session.commit()
    return deleted or 0

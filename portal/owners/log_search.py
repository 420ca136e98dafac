"""Reading the webhook log and the audit log on the dashboard: filters, keyset pages, masked payloads.

Webhook rows belong to an owner through their paybill; rows that came in on an unknown path
(no paybill) are shown to admins only. Payloads are shown pretty-printed with anything that looks
like a credential masked: Daraja never sends one, but a misdirected or forged request might.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..core.extensions import db
from ..models import AuditLog, User, WebhookLog
from .scope import NotFound, nairobi_day_start, owned, via_paybill

PAGE_SIZE = 50
MASK = "•••masked•••"
_SECRET_KEY = re.compile(r"pass(word|key)?|secret|token|credential|auth|api[_-]?key|security", re.I)
# Outside JSON: key=value / "key": "value" pairs, and long opaque strings (bearer tokens, keys).
_SECRET_PAIR = re.compile(
    r'(?P<key>"?[\w-]*(?:pass(?:word|key)?|secret|token|credential|auth)[\w-]*"?\s*[:=]\s*)(?P<value>"[^"]*"|[^\s,&}]+)',
    re.I,
)
_OPAQUE = re.compile(r"\b(?=[A-Za-z0-9+/_=-]*\d)(?=[A-Za-z0-9+/_=-]*[A-Za-z])[A-Za-z0-9+/_=-]{40,}\b")


class BadCursor(ValueError):
    pass


def mask_secrets(value: Any) -> Any:
    """A copy of parsed JSON with values under credential-like keys, and long opaque strings, masked."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return _OPAQUE.sub(MASK, value)
    return value


def pretty_payload(raw: str) -> str:
    """JSON → indented and masked; anything else → the text with secret-looking pairs masked."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return _OPAQUE.sub(MASK, _SECRET_PAIR.sub(lambda m: m["key"] + MASK, raw))
    return json.dumps(mask_secrets(parsed), indent=2, ensure_ascii=False, sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Cursors shared by both logs: "<microseconds since epoch>.<id>"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(when: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{(when - _EPOCH) // _MICROSECOND}.{row_id}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, int]:
    try:
        micros, row_id = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(".")
        return _EPOCH + int(micros) * _MICROSECOND, int(row_id)
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise BadCursor("not a page cursor") from exc


def _older_than(time_col: sa.ColumnElement, id_col: sa.ColumnElement, token: str) -> sa.ColumnElement[bool]:
    when, row_id = decode_cursor(token)
    return sa.tuple_(time_col, id_col) < sa.tuple_(sa.literal(when, time_col.type), sa.literal(row_id, sa.Integer()))


@dataclass(frozen=True)
class LogPage:
    rows: list[Any]
    next_cursor: str | None


def _page(query: sa.Select, time_attr: str, limit: int) -> LogPage:
    rows = list(db.session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return LogPage(rows, encode_cursor(getattr(rows[-1], time_attr), rows[-1].id) if more else None)


# ---------------------------------------------------------------------------------------------
# Webhook log


@dataclass(frozen=True)
class WebhookFilter:
    kind: str | None = None
    status: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    text: str | None = None  # a CheckoutRequestID, TransID or BillRefNumber, exactly


def _webhook_scope(user: User) -> sa.ColumnElement[bool]:
    return sa.true() if user.is_admin else via_paybill(WebhookLog.paybill_id, user)


def search_webhook_logs(user: User, flt: WebhookFilter, *, after: str | None = None, limit: int = PAGE_SIZE) -> LogPage:
    where = [_webhook_scope(user)]
    if flt.kind:
        where.append(WebhookLog.kind == flt.kind)
    if flt.status:
        where.append(WebhookLog.status == flt.status)
    if flt.date_from:
        where.append(WebhookLog.received_at >= nairobi_day_start(flt.date_from))
    if flt.date_to:
        where.append(WebhookLog.received_at < nairobi_day_start(flt.date_to + timedelta(days=1)))
    if flt.text and flt.text.strip():
        text = flt.text.strip()
        where.append(sa.or_(
            WebhookLog.checkout_request_id == text,
            WebhookLog.trans_id == text.upper(),
            WebhookLog.bill_ref_number == text,
            WebhookLog.bill_ref_number == text.upper(),
        ))
    if after:
        where.append(_older_than(WebhookLog.received_at, WebhookLog.id, after))
    query = sa.select(WebhookLog).where(*where).order_by(WebhookLog.received_at.desc(), WebhookLog.id.desc())
    return _page(query, "received_at", limit)


def webhook_entry(user: User, log_id: int) -> WebhookLog:
    entry = db.session.scalars(sa.select(WebhookLog).where(WebhookLog.id == log_id, _webhook_scope(user))).first()
    if entry is None:
        raise NotFound(f"webhook log {log_id}")
    return entry


# ---------------------------------------------------------------------------------------------
# Audit log


def search_audit_log(user: User, *, action: str | None = None, after: str | None = None,
                     limit: int = PAGE_SIZE) -> LogPage:
    where = [owned(AuditLog.owner_id, user)]
    if action and action.strip():
        where.append(AuditLog.action.startswith(action.strip(), autoescape=True))
    if after:
        where.append(_older_than(AuditLog.created_at, AuditLog.id, after))
    query = sa.select(AuditLog).where(*where).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
    return _page(query, "created_at", limit)

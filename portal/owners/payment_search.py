"""The payments list: filters, keyset pagination, and a streamed CSV of the filtered set.

Pages are keyset pages on (created_at, id) descending, never OFFSET: the database walks an index
from the cursor, so page 500 costs what page 1 costs, and rows inserted while someone pages (newer
than the cursor) never shift the pages already shown, so no row is shown twice or skipped.
The CSV is a generator over a server-side cursor (``yield_per``): memory stays flat whatever the size.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from ..core.cache import LockedTTLCache
from ..core.extensions import db
from ..models import PAYMENT_STATES, Payment, Plan, Router, User, Voucher, utcnow
from ..mpesa.result_codes import meaning_of
from .scope import NAIROBI, nairobi_day_start, nairobi_today, owned

PAGE_SIZE = 50
CSV_BATCH = 2000


class BadCursor(ValueError):
    """The ``after`` parameter is not one we handed out."""


@dataclass(frozen=True)
class PaymentFilter:
    """Every field optional; ``phone`` is already normalised (2547…), dates are Nairobi days, inclusive."""

    status: str | None = None
    router_id: int | None = None
    phone: str | None = None
    receipt: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def clauses(self, user: User) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = [owned(Payment.owner_id, user)]
        if self.status:
            if self.status not in PAYMENT_STATES:
                raise ValueError(f"unknown payment status {self.status!r}")
            where.append(Payment.status == self.status)
        if self.router_id:
            where.append(Payment.router_id == self.router_id)
        if self.phone:
            where.append(Payment.phone == self.phone)
        if self.receipt:
            where.append(Payment.receipt == self.receipt.strip().upper())
        if self.date_from:
            where.append(Payment.created_at >= nairobi_day_start(self.date_from))
        if self.date_to:
            where.append(Payment.created_at < nairobi_day_start(self.date_to + timedelta(days=1)))
        return where


# ---------------------------------------------------------------------------------------------
# Cursors: opaque to the browser, "<microseconds since epoch>.<id>" underneath


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, payment_id: int) -> str:
    # Whole microseconds, never a float: a cursor one microsecond off would repeat or skip a row.
    micros = (created_at - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"{micros}.{payment_id}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        micros, payment_id = raw.split(".")
        return _EPOCH + int(micros) * _MICROSECOND, int(payment_id)
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise BadCursor("not a page cursor") from exc


def _before(cursor: tuple[datetime, int]) -> sa.ColumnElement[bool]:
    created_at, payment_id = cursor
    # A row-value comparison lets PostgreSQL seek the (…, created_at, id) index directly.
    return sa.tuple_(Payment.created_at, Payment.id) < sa.tuple_(
        sa.literal(created_at, Payment.created_at.type), sa.literal(payment_id, sa.Integer())
    )


# ---------------------------------------------------------------------------------------------
# Listing


@dataclass(frozen=True)
class PaymentRow:
    id: int
    created_at: datetime
    status: str
    amount: int | None
    amount_expected: int
    phone: str | None
    receipt: str | None
    source: str
    voucher_code: str | None
    router_name: str | None
    note: str | None
    result_code: str | None
    plan_name: str | None

    @property
    def why(self) -> str:
        """Why the money did not (or not simply) arrive, in the owner's words; "" for a plain paid row."""
        return failure_reason(self.status, self.result_code, self.note)


@dataclass(frozen=True)
class PaymentPage:
    rows: list[PaymentRow]
    next_cursor: str | None


_COLUMNS = (
    Payment.id,
    Payment.created_at,
    Payment.status,
    Payment.amount,
    Payment.amount_expected,
    Payment.phone,
    Payment.receipt,
    Payment.source,
    Voucher.code,
    Router.name,
    Payment.note,
    Payment.result_code,
    Plan.name,
)


def _select(user: User, flt: PaymentFilter) -> sa.Select:
    return (
        sa.select(*_COLUMNS)
        .select_from(Payment)
        .outerjoin(Voucher, Voucher.id == Payment.voucher_id)
        .outerjoin(Router, Router.id == Payment.router_id)
        .outerjoin(Plan, Plan.id == Voucher.plan_id)
        .where(*flt.clauses(user))
        .order_by(Payment.created_at.desc(), Payment.id.desc())
    )


def search_payments(user: User, flt: PaymentFilter, *, after: str | None = None, limit: int = PAGE_SIZE) -> PaymentPage:
    """One page, newest first, strictly older than the ``after`` cursor. Raises ``BadCursor``."""
    query = _select(user, flt)
    if after:
        query = query.where(_before(decode_cursor(after)))
    rows = [PaymentRow(*row) for row in db.session.execute(query.limit(limit + 1)).all()]
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if has_more else None
    return PaymentPage(rows, next_cursor)


def routers_for(user: User) -> list[Router]:
    """The routers the filter offers."""
    return list(db.session.scalars(sa.select(Router).where(owned(Router.owner_id, user)).order_by(Router.name)))


# ---------------------------------------------------------------------------------------------
# CSV


CSV_HEADER = (
    "id", "created_at_nairobi", "status", "amount", "amount_expected", "phone", "receipt", "source",
    "voucher", "router", "note", "result_code", "plan",
)


def _csv_safe(value: object) -> object:
    # A cell starting with = + - @ is a formula in a spreadsheet: neutralise it (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def stream_payments_csv(user: User, flt: PaymentFilter) -> Iterator[str]:
    """CSV text chunks of every payment matching ``flt``. Streams through a server-side cursor;
    each chunk is about ``CSV_BATCH`` rows, so memory does not grow with the export."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    result = db.session.execute(_select(user, flt).execution_options(yield_per=CSV_BATCH))
    try:
        for partition in result.partitions():
            for row in partition:
                created = row[1].astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S")
                writer.writerow([_csv_safe(v) for v in (row[0], created, *row[2:])])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    finally:
        result.close()
    if buffer.tell():
        yield buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Words for failures


# Owner-facing words per result-code reason (result_codes.py has the customer's words).
REASON_WORDS = {
    "insufficient_funds": "not enough money on the customer's M-Pesa",
    "limit": "over an M-Pesa transaction limit",
    "config": "paybill set-up problem at M-Pesa (check its credentials)",
    "busy": "the customer's phone was busy with another M-Pesa request",
    "expired": "the prompt timed out on the phone",
    "not_delivered": "M-Pesa could not reach the phone with the prompt",
    "cancelled": "the customer cancelled the prompt",
    "timeout": "the phone did not answer the prompt (off or out of reach)",
    "wrong_pin": "wrong M-Pesa PIN",
    "pending": "M-Pesa was still processing it",
}
STATUS_WORDS = {
    "expired": "no answer from M-Pesa before the prompt expired",
    "unmatched": "money came in but matched no voucher",
    "underpaid": "paid less than the plan's price",
}


def failure_reason(status: str, result_code: str | None, note: str | None) -> str:
    """The reason an owner reads next to a failed, expired, unmatched or underpaid payment."""
    if status == "failed" and result_code:
        meaning = meaning_of(result_code)
        return REASON_WORDS.get(meaning.reason, f"M-Pesa result {result_code}")
    if status in STATUS_WORDS:
        return STATUS_WORDS[status] + (f" ({note})" if note and status != "expired" else "")
    if status == "failed":
        return note or "failed"
    return note or ""


# ---------------------------------------------------------------------------------------------
# Totals of the filtered rows


@dataclass(frozen=True)
class PaymentTotals:
    count: int
    received: int  # KES that arrived (paid, underpaid and unmatched rows carry an amount)


TOTALS_CLOSED_TTL_S = 300.0


def _closed_totals_cache() -> LockedTTLCache[tuple[int, int]]:
    from flask import current_app

    return current_app.extensions.setdefault("portal_payment_totals", LockedTTLCache(TOTALS_CLOSED_TTL_S,
                                                                                     max_entries=5_000))


INLINE_TOTAL_ROWS = 5_000  # more rows than this, and an uncached total is added up on its own request


def payment_totals(user: User, flt: PaymentFilter, *, now: datetime | None = None,
                   inline_only: bool = False) -> PaymentTotals | None:
    """How many payments match ``flt`` and the KES they brought in.

    A million payments are too many to add up on every page view, and only today's change (an
    older row changes only when an owner settles it by hand). So the rows before today's Nairobi
    midnight are added up once per filter and kept TOTALS_CLOSED_TTL_S (a hand-settled payment
    shows in the total within five minutes), and today's rows are added up live.

    ``inline_only``: return None instead of adding up more than INLINE_TOTAL_ROWS rows (today's,
    and the closed days' when they are not cached), so the list page stays fast; the page then
    fetches the total from its own URL.
    """
    today_start = nairobi_day_start(nairobi_today(now or utcnow()))
    cache = _closed_totals_cache()
    closed_key = ("all" if user.is_admin else user.id, flt, today_start)
    closed = cache.get(closed_key, lambda: None)
    if inline_only:
        # The rows this call would add up: today's, and the closed days' unless cached.
        to_add = [Payment.created_at >= today_start] if closed is not None else []
        if _more_rows_than(user, flt, INLINE_TOTAL_ROWS, *to_add):
            return None
    if closed is None:
        closed = _sum(user, flt, before=today_start)
        cache.put(closed_key, closed)
    live = _sum(user, flt, since=today_start)
    return PaymentTotals(closed[0] + live[0], closed[1] + live[1])


def _more_rows_than(user: User, flt: PaymentFilter, limit: int, *where: sa.ColumnElement[bool]) -> bool:
    # Counting up to a limit walks at most that many index entries, whatever the table holds.
    capped = sa.select(Payment.id).where(*flt.clauses(user), *where).limit(limit + 1).subquery()
    return (db.session.scalar(sa.select(sa.func.count()).select_from(capped)) or 0) > limit


def _sum(user: User, flt: PaymentFilter, *, before: datetime | None = None,
         since: datetime | None = None) -> tuple[int, int]:
    where = flt.clauses(user)
    if before is not None:
        where.append(Payment.created_at < before)
    if since is not None:
        where.append(Payment.created_at >= since)
    count, received = db.session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Payment.amount), 0)).select_from(Payment).where(*where)
    ).one()
    return int(count), int(received)

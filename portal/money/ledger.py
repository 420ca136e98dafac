"""The owner ledger: append-only entries, a balance is their sum.

What the platform owes an owner ("balance" account): every shilling paid into the platform's
paybill for them (sale, credit), less the platform's commission on the sales that were served,
less what was paid out to them and refunded to their customers, plus an admin's adjustments.
An owner with their own paybill already has the money: their sales post no balance, only the
commission they owe the platform ("owed" account).

Sales are posted by ``post_sales`` (a sweep the scheduler runs), not by the STK callback: the
callback path stays as fast as it is, and the sweep is idempotent because every entry is unique
per (source, kind) and every insert is ``ON CONFLICT DO NOTHING``. Payouts and refunds post their
entry in the same transaction that marks them completed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite

from ..core.extensions import db
from ..models import (
    AuditLog,
    LedgerCheckpoint,
    LedgerEntry,
    OwnerMoneySettings,
    Paybill,
    Payment,
    Payout,
    Refund,
    User,
    utcnow,
)
from ..owners import audit

log = logging.getLogger(__name__)

SWEEP_BATCH = 1000
# Money received for an owner: a sale served (paid), or money held for them to refund or assign.
RECEIVED_STATES = ("paid", "underpaid", "unmatched")
_ledger = LedgerEntry.__table__


class LedgerError(ValueError):
    """An adjustment or setting the ledger refuses (the message says why, in words)."""


def default_commission_bp() -> int:
    return int((Decimal(str(current_app.config["PORTAL_COMMISSION_PERCENT"])) * 100).to_integral_value(ROUND_HALF_UP))


def commission_bp_for(owner_id: int) -> int:
    """The owner's own rate when an admin set one, else PORTAL_COMMISSION_PERCENT (basis points)."""
    own = db.session.scalar(sa.select(OwnerMoneySettings.commission_bp).where(OwnerMoneySettings.owner_id == owner_id))
    return default_commission_bp() if own is None else int(own)


def commission_on(amount: int, bp: int) -> int:
    """Whole shillings, half up: KES 10 at 5 % is KES 1 (0.5 rounds up)."""
    return int((Decimal(amount) * bp / 10000).to_integral_value(ROUND_HALF_UP))


def set_commission(owner: User, percent: float, *, actor: User | str) -> int:
    """An owner's commission override, from now on (posted sales keep their rate). Caller commits."""
    if not 0 <= percent <= 100:
        raise LedgerError("the commission must be between 0 and 100 percent")
    bp = int((Decimal(str(percent)) * 100).to_integral_value(ROUND_HALF_UP))
    settings = money_settings(owner.id)
    settings.commission_bp = bp
    audit.record("owner.commission_set", actor=actor, owner_id=owner.id, object_type="user", object_id=owner.id,
                 detail=f"commission {bp / 100:g} %")
    return bp


def money_settings(owner_id: int) -> OwnerMoneySettings:
    settings = db.session.get(OwnerMoneySettings, owner_id)
    if settings is None:
        settings = OwnerMoneySettings(owner_id=owner_id)
        db.session.add(settings)
    return settings


# --- posting ------------------------------------------------------------------------------------


def _insert_ignoring_duplicates(rows: list[dict[str, Any]]) -> int:
    """Insert entries; one already posted (same source and kind, or a sale's receipt) is skipped.
    Inside the caller's transaction. Returns how many were new."""
    if not rows:
        return 0
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    now = utcnow()
    for row in rows:
        row.setdefault("created_at", now)
    # RETURNING counts what was inserted: an executemany's rowcount is not reliable across drivers.
    stmt = dialect.insert(_ledger).on_conflict_do_nothing().returning(_ledger.c.id)
    return len(db.session.execute(stmt, rows).all())


def post_entry(*, owner_id: int, kind: str, amount: int, source_type: str, source_id: int,
               account: str = "balance", receipt: str | None = None, reason: str | None = None,
               commission_bp: int | None = None) -> bool:
    """One entry in the caller's transaction; False when this source already has it (no error)."""
    return _insert_ignoring_duplicates([dict(
        owner_id=owner_id, kind=kind, amount=amount, source_type=source_type, source_id=source_id,
        account=account, receipt=receipt, reason=reason, commission_bp=commission_bp,
    )]) == 1


def _not_posted(kind: str) -> sa.ColumnElement[bool]:
    return ~sa.exists().where(
        _ledger.c.source_type == "payment", _ledger.c.source_id == Payment.id, _ledger.c.kind == kind
    )


def post_sales(limit: int = SWEEP_BATCH) -> dict[str, int]:
    """Post what is missing for received money: sale credits (platform paybill) and commission
    (sales served, on either paybill). Idempotent and safe to run in two workers at once.
    Commits once per batch; repeats until nothing is left."""
    counts = {"sales": 0, "commissions": 0}
    while True:
        (sales, new_sales), (commissions, new_commissions) = _post_sales_batch(limit)
        db.session.commit()
        counts["sales"] += new_sales
        counts["commissions"] += new_commissions
        full = sales >= limit or commissions >= limit
        if not full or not (new_sales or new_commissions):  # a full batch that posted nothing would repeat forever
            return counts


def _post_sales_batch(limit: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((sales found, posted), (commissions found, posted)), in the caller's transaction."""
    on_platform = Paybill.owner_id.is_(None)
    received = sa.and_(Payment.owner_id.is_not(None), Payment.amount > 0, Payment.status.in_(RECEIVED_STATES))
    receipt_credited = sa.exists().where(
        _ledger.c.kind == "sale", _ledger.c.receipt == Payment.receipt, _ledger.c.source_id != Payment.id
    )
    sales = db.session.execute(
        sa.select(Payment.id, Payment.owner_id, Payment.amount, Payment.receipt)
        .join(Paybill, Paybill.id == Payment.paybill_id)
        .where(received, on_platform, _not_posted("sale"), sa.or_(Payment.receipt.is_(None), ~receipt_credited))
        .order_by(Payment.id).limit(limit)
    ).all()
    posted_sales = _insert_ignoring_duplicates([
        dict(owner_id=owner_id, kind="sale", amount=amount, source_type="payment", source_id=pid, receipt=receipt)
        for pid, owner_id, amount, receipt in sales
    ])
    served = db.session.execute(
        sa.select(Payment.id, Payment.owner_id, Payment.amount, on_platform)
        .join(Paybill, Paybill.id == Payment.paybill_id)
        .where(received, Payment.status == "paid", _not_posted("commission"))
        .order_by(Payment.id).limit(limit)
    ).all()
    rates: dict[int, int] = {}
    rows = []
    for pid, owner_id, amount, is_platform in served:
        bp = rates.setdefault(owner_id, commission_bp_for(owner_id))
        rows.append(dict(owner_id=owner_id, kind="commission", amount=-commission_on(amount, bp),
                         source_type="payment", source_id=pid, commission_bp=bp,
                         account="balance" if is_platform else "owed"))
    posted_commissions = _insert_ignoring_duplicates(rows)
    if posted_sales or posted_commissions:
        log.info("ledger sweep: %s sales, %s commissions posted", posted_sales, posted_commissions)
    return (len(sales), posted_sales), (len(served), posted_commissions)


def adjust(owner: User, amount: int, reason: str, *, actor: User | str, source_ip: str | None = None) -> LedgerEntry:
    """An admin's correction, with its reason; its source is the audit row written with it. Commits."""
    reason = (reason or "").strip()
    if not reason:
        raise LedgerError("an adjustment needs a reason")
    if amount == 0:
        raise LedgerError("an adjustment of KES 0 changes nothing")
    entry_audit = audit.record("ledger.adjustment", actor=actor, owner_id=owner.id, object_type="user",
                               object_id=owner.id, detail=f"KES {amount:+d}: {reason}", source_ip=source_ip)
    db.session.flush()
    post_entry(owner_id=owner.id, kind="adjustment", amount=amount, source_type="audit", source_id=entry_audit.id,
               reason=reason[:300])
    db.session.commit()
    return db.session.scalars(sa.select(LedgerEntry).where(
        LedgerEntry.source_type == "audit", LedgerEntry.source_id == entry_audit.id)).one()


# --- reading ------------------------------------------------------------------------------------


def _last_checkpoint(owner_id: int) -> int | None:
    return db.session.scalar(sa.select(sa.func.max(LedgerCheckpoint.up_to_id)).where(LedgerCheckpoint.owner_id == owner_id))


def _checkpoint_sums(owner_id: int, up_to: int | None) -> dict[tuple[str, str], int]:
    if up_to is None:
        return {}
    return {(account, kind): int(total) for account, kind, total in db.session.execute(
        sa.select(LedgerCheckpoint.account, LedgerCheckpoint.kind, LedgerCheckpoint.total)
        .where(LedgerCheckpoint.owner_id == owner_id, LedgerCheckpoint.up_to_id == up_to))}


def _add_entries(sums: dict[tuple[str, str], int], owner_id: int, *where: sa.ColumnElement[bool]) -> None:
    for account, kind, total in db.session.execute(
        sa.select(LedgerEntry.account, LedgerEntry.kind, sa.func.sum(LedgerEntry.amount))
        .where(LedgerEntry.owner_id == owner_id, *where).group_by(LedgerEntry.account, LedgerEntry.kind)
    ):
        sums[(account, kind)] = sums.get((account, kind), 0) + int(total or 0)


def _sums(owner_id: int) -> dict[tuple[str, str], int]:
    """{(account, kind): total}: the last checkpoint plus every entry after it (see LedgerCheckpoint)."""
    up_to = _last_checkpoint(owner_id)
    sums = _checkpoint_sums(owner_id, up_to)
    _add_entries(sums, owner_id, LedgerEntry.id > (up_to or 0))
    return sums


def verify(owner_id: int) -> bool:
    """The checkpointed sums agree with the entries themselves (the invariant tests ask this)."""
    raw: dict[tuple[str, str], int] = {}
    _add_entries(raw, owner_id)
    return {k: t for k, t in _sums(owner_id).items() if t} == {k: t for k, t in raw.items() if t}


def balance(owner_id: int, account: str = "balance") -> int:
    return sum(total for (acct, _), total in _sums(owner_id).items() if acct == account)


CHECKPOINT_SETTLE = timedelta(minutes=5)
CHECKPOINT_EVERY = 1000


def checkpoint_balances(*, settle: timedelta = CHECKPOINT_SETTLE, min_new: int = CHECKPOINT_EVERY,
                        now: datetime | None = None) -> dict[str, int]:
    """Append a checkpoint for each owner with at least ``min_new`` entries after their last one.

    It covers entries up to the newest one older than ``settle``: an entry's id is taken when its
    transaction inserts it, and every transaction that posts entries lasts milliseconds, so no
    entry with a lower id can still be uncommitted by then. Safe to run twice at once (the second
    insert of the same checkpoint is ignored). Commits per owner."""
    cutoff = (now or utcnow()) - settle
    last = (sa.select(sa.func.coalesce(sa.func.max(LedgerCheckpoint.up_to_id), 0))
            .where(LedgerCheckpoint.owner_id == LedgerEntry.owner_id).scalar_subquery())
    due = db.session.execute(
        sa.select(LedgerEntry.owner_id, sa.func.max(LedgerEntry.id))
        .where(LedgerEntry.id > last, LedgerEntry.created_at < cutoff)
        .group_by(LedgerEntry.owner_id).having(sa.func.count() >= min_new)
    ).all()
    db.session.commit()
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    for owner_id, up_to in due:
        previous = _last_checkpoint(owner_id)
        sums = _checkpoint_sums(owner_id, previous)
        _add_entries(sums, owner_id, LedgerEntry.id > (previous or 0), LedgerEntry.id <= up_to)
        db.session.execute(dialect.insert(LedgerCheckpoint.__table__).on_conflict_do_nothing(), [
            dict(owner_id=owner_id, up_to_id=up_to, account=a, kind=k, total=t, created_at=utcnow())
            for (a, k), t in sums.items()])
        db.session.commit()
    return {"checkpoints": len(due)}


@dataclass(frozen=True)
class Totals:
    """An owner's entries summed by kind (the ledger invariant reads these)."""

    sales: int = 0
    commission: int = 0
    payouts: int = 0
    refunds: int = 0
    adjustments: int = 0
    balance: int = 0
    owed: int = 0


def totals(owner_id: int) -> Totals:
    by = _sums(owner_id)
    bal = {kind: total for (account, kind), total in by.items() if account == "balance"}
    return Totals(
        sales=bal.get("sale", 0), commission=-bal.get("commission", 0), payouts=-bal.get("payout", 0),
        refunds=-bal.get("refund", 0), adjustments=bal.get("adjustment", 0), balance=sum(bal.values()),
        owed=-sum(total for (account, _), total in by.items() if account == "owed"),
    )


STATEMENT_PAGE = 50


@dataclass(frozen=True)
class StatementFilter:
    kind: str | None = None
    account: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def statement(owner_id: int, filters: StatementFilter, *, before_id: int | None = None,
              limit: int | None = STATEMENT_PAGE) -> list[LedgerEntry]:
    """Newest first, paged by id (keyset: fast on the millionth entry too)."""
    query = sa.select(LedgerEntry).where(LedgerEntry.owner_id == owner_id)
    if filters.kind:
        query = query.where(LedgerEntry.kind == filters.kind)
    if filters.account:
        query = query.where(LedgerEntry.account == filters.account)
    if filters.since:
        query = query.where(LedgerEntry.created_at >= filters.since)
    if filters.until:
        query = query.where(LedgerEntry.created_at < filters.until)
    if before_id:
        query = query.where(LedgerEntry.id < before_id)
    query = query.order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
    if limit:
        query = query.limit(limit)
    return list(db.session.scalars(query))


def describe(entry: LedgerEntry) -> str:
    """The statement's words for one entry."""
    if entry.kind == "sale":
        return f"Sale, M-Pesa {entry.receipt or 'payment ' + str(entry.source_id)}"
    if entry.kind == "commission":
        owed = " (owed to the platform)" if entry.account == "owed" else ""
        return f"Platform commission {(entry.commission_bp or 0) / 100:g} %{owed}"
    if entry.kind == "payout":
        return f"Payout {entry.source_id}" + (f", M-Pesa {entry.receipt}" if entry.receipt else "")
    if entry.kind == "refund":
        return f"Refund {entry.source_id}" + (f", M-Pesa {entry.receipt}" if entry.receipt else "")
    return f"Adjustment: {entry.reason}"


def entries_without_source() -> int:
    """Entries whose source row is missing (the invariant test asks for none)."""
    count = 0
    for source_type, model in (("payment", Payment), ("payout", Payout), ("refund", Refund), ("audit", AuditLog)):
        count += db.session.scalar(
            sa.select(sa.func.count()).select_from(_ledger).where(
                _ledger.c.source_type == source_type,
                ~sa.exists().where(model.__table__.c.id == _ledger.c.source_id),
            )
        ) or 0
    return count

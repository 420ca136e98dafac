"""Settlement: record what Daraja says about money (STK callback, C2B confirmation, STK query
answer), exactly once.

The one rule that keeps money safe: a payment leaves ``pending`` (or ``failed``/``expired``, since a
late success must still win) through a single conditional UPDATE. The transaction that wins that
update records the receipt and queues the activation; every other delivery of the same money sees
zero rows and steps aside. The receipt column is unique across STK and C2B, so the same M-Pesa
transaction can never be recorded twice, whichever channel reports it first.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import joinedload

from ..core.database import storable
from ..core.extensions import db
from ..hotspot import activations
from ..hotspot.login_context import HotspotContext
from ..hotspot.vouchers import awaiting_payment, normalise_code
from ..models import Paybill, Payment, StkInitiation, Voucher, utcnow
from ..mpesa.result_codes import meaning_of
from ..owners.paybills import WebhookPaybill

log = logging.getLogger(__name__)

SETTLEABLE_STATES = ("pending", "failed", "expired")  # a late success is honoured (the customer paid)


@dataclass(frozen=True)
class RecordOutcome:
    """What recording did: ``action`` is one of paid, underpaid, failed, duplicate, unmatched, ignored, rejected."""

    action: str
    detail: str = ""
    payment_id: int | None = None


# Built once (every callback runs it); the payment comes with it because _settle needs it.
_INITIATIONS_BY_CHECKOUT = (
    sa.select(StkInitiation)
    .options(joinedload(StkInitiation.payment))
    .where(StkInitiation.checkout_request_id.in_(sa.bindparam("checkout_ids", expanding=True)))
)


def record_stk_result(
    checkout_request_id: str,
    result_code: int | str,
    result_desc: str = "",
    *,
    metadata: dict[str, Any] | None = None,
    source: str = "stk",
    paybill_id: int | None = None,
) -> RecordOutcome:
    """Record an STK callback (or query) result, exactly once. One transaction; commits.

    A success (code 0) settles the payment (or flags it underpaid) and queues the activation; a
    failure marks a still-pending attempt failed and never downgrades a success. When
    ``paybill_id`` is given (the paybill whose secret path the callback came in on) the initiation
    must belong to it. Safe to call any number of times, from any number of threads or processes.
    """
    initiation = db.session.scalars(_INITIATIONS_BY_CHECKOUT, {"checkout_ids": [checkout_request_id]}).first()
    if initiation is None and str(result_code).strip() == "0" and paybill_id is not None:
        initiation = _adopt_unanswered_push(checkout_request_id, metadata or {}, paybill_id)
        if initiation is None and _push_in_flight(metadata or {}, paybill_id):
            # Most likely that push's own callback, ahead of our commit of its CheckoutRequestID:
            # kept for process_early_callbacks (or, if the push never learns an ID, the sweep).
            return RecordOutcome("ignored", EARLY_CALLBACK)
        if initiation is None:
            return _record_unknown_success(checkout_request_id, metadata or {}, paybill_id)
    if initiation is None:
        return RecordOutcome("ignored", "unknown CheckoutRequestID")
    if paybill_id is not None and initiation.paybill_id != paybill_id:
        return RecordOutcome("rejected", "CheckoutRequestID belongs to another paybill")
    code = str(result_code).strip()
    if code != "0":
        return _record_stk_failure(initiation, code, result_desc)
    meta = metadata or {}
    amount = parse_amount(meta.get("Amount"))
    if amount is None and source == "query":
        amount = initiation.amount  # a query success carries no amount; Daraja confirmed our request's
    if amount is None:
        return RecordOutcome("rejected", "success without an amount")
    receipt = clean_receipt(meta.get("MpesaReceiptNumber"))
    outcome = _settle(
        initiation.payment_id,
        receipt=receipt,
        amount=amount,
        source=source,
        initiation_id=initiation.id,
        result_code=code,
    )
    return outcome


EARLY_CALLBACK = "early: a push of ours is still waiting for its CheckoutRequestID"
PUSH_IN_FLIGHT = timedelta(minutes=2)  # longer than any push request waits for Daraja's answer


def _push_in_flight(meta: dict[str, Any], paybill_id: int) -> bool:
    """Is a push of ours on this paybill (same phone and amount, when the callback says) still
    between Daraja's answer and our commit of its CheckoutRequestID?"""
    phone, amount = str(meta.get("PhoneNumber") or ""), parse_amount(meta.get("Amount"))
    where = [
        StkInitiation.paybill_id == paybill_id,
        StkInitiation.checkout_request_id.is_(None),
        StkInitiation.status == "initiated",
        StkInitiation.outcome_unknown.is_(False),
        StkInitiation.created_at >= utcnow() - PUSH_IN_FLIGHT,
    ]
    if phone:
        where.append(StkInitiation.phone_number == phone[:12])
    if amount is not None:
        where.append(StkInitiation.amount == amount)
    return bool(db.session.scalar(sa.select(sa.exists().where(*where))))


def _record_unknown_success(checkout_request_id: str, meta: dict[str, Any], paybill_id: int) -> RecordOutcome:
    """A success nobody can match (an adoption two pushes fitted, a callback after the adoption
    window, a push whose CheckoutRequestID we failed to commit) is still money: kept as an
    unmatched payment on the paybill it came in on, for the Problems page and receipt recovery."""
    receipt, amount = clean_receipt(meta.get("MpesaReceiptNumber")), parse_amount(meta.get("Amount"))
    paybill = db.session.get(Paybill, paybill_id)
    if receipt is None or amount is None or paybill is None:
        return RecordOutcome("ignored", "unknown CheckoutRequestID")
    return _record_unmatched(
        receipt, amount, paybill, bill_ref=None, source="stk",
        note=f"paid prompt we have no record of (CheckoutRequestID {checkout_request_id[:60]})",
    )


def _adopt_unanswered_push(checkout_request_id: str, meta: dict[str, Any], paybill_id: int) -> StkInitiation | None:
    """A push that timed out on our side may still have reached the phone; its callback then
    carries a CheckoutRequestID we never learned. Match it by paybill, phone and amount among
    recent outcome-unknown pushes, and only when exactly one fits."""
    phone, amount = str(meta.get("PhoneNumber") or ""), parse_amount(meta.get("Amount"))
    if not phone or amount is None:
        return None
    since = utcnow() - timedelta(seconds=2 * current_app.config["PORTAL_STK_EXPIRY_S"])
    candidates = db.session.scalars(
        sa.select(StkInitiation).where(
            StkInitiation.outcome_unknown.is_(True),
            StkInitiation.checkout_request_id.is_(None),
            StkInitiation.paybill_id == paybill_id,
            StkInitiation.phone_number == phone,
            StkInitiation.amount == amount,
            StkInitiation.created_at >= since,
        )
    ).all()
    if len(candidates) != 1:
        return None
    claimed = db.session.execute(
        sa.update(StkInitiation)
        .where(StkInitiation.id == candidates[0].id, StkInitiation.checkout_request_id.is_(None))
        .values(checkout_request_id=checkout_request_id)
    ).rowcount
    db.session.commit()
    if not claimed:
        return None
    log.info("adopted callback checkout=%s for outcome-unknown push voucher=%s", checkout_request_id, candidates[0].account_reference)
    db.session.refresh(candidates[0])
    return candidates[0]


def _record_stk_failure(initiation: StkInitiation, code: str, desc: str) -> RecordOutcome:
    meaning = meaning_of(code)
    if meaning.status == "pending":
        return RecordOutcome("ignored", f"still processing ({code})")
    changed = bool(_mark_initiations_failed([initiation], code, desc))
    db.session.commit()
    if changed:
        log.info("stk failed checkout=%s code=%s", initiation.checkout_request_id, code)
    return _failure_outcome(initiation, code, changed)


def _failure_outcome(initiation: StkInitiation, code: str, changed: bool) -> RecordOutcome:
    if not changed:
        return RecordOutcome("duplicate", f"initiation already {initiation.status}")
    return RecordOutcome("failed", meaning_of(code).reason, initiation.payment_id)


def _mark_initiations_failed(initiations: Sequence[StkInitiation], code: str, desc: str) -> set[int]:
    """Inside the caller's transaction: still-open attempts (and their pending payments) failed
    with ``code``. A success is never downgraded. Returns the initiations this changed.

    The code and ResultDesc come from a callback or an STK query answer: cleaned like every
    stored provider text (a NUL fails the PostgreSQL write, and the batch with it)."""
    changed = db.session.scalars(
        sa.update(StkInitiation)
        .where(StkInitiation.id.in_([i.id for i in initiations]), StkInitiation.status.in_(("initiated", "expired")))
        .values(status="failed", result_code=storable(code, 32), result_desc=storable(desc or "", 300), completed_at=utcnow())
        .returning(StkInitiation.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.execute(
        sa.update(Payment)
        .where(Payment.id.in_([i.payment_id for i in initiations]), Payment.status.in_(("pending", "expired")))
        .values(status="failed", result_code=storable(code, 32))
        .execution_options(synchronize_session=False)
    )
    return set(changed)


def record_stk_query_answers(answers: Sequence[tuple[str, int | str, str]]) -> dict[str, RecordOutcome]:
    """Final STK query answers ``(CheckoutRequestID, ResultCode, ResultDesc)`` for many initiations
    in one transaction: the reconciliation job's path. Returns each one's outcome.

    The payments pass the same gate as a callback (a conditional UPDATE, here one per group of
    payments that settle the same way), so a callback racing the batch still records the money
    exactly once; batching only saves statements and commits. A batch that hits a database
    conflict is rolled back and redone one by one.
    """
    if not answers:
        return {}
    initiations = {
        initiation.checkout_request_id: initiation
        for initiation in db.session.scalars(
            _INITIATIONS_BY_CHECKOUT, {"checkout_ids": [checkout_id for checkout_id, _, _ in answers]}
        )
    }
    try:
        outcomes, won = _apply_query_answers(answers, initiations)
        db.session.commit()
    except (IntegrityError, OperationalError) as exc:
        db.session.rollback()
        log.warning("stk query batch of %s redone one by one: %s", len(answers), type(exc).__name__)
        return {checkout_id: record_stk_result(checkout_id, code, desc, source="query") for checkout_id, code, desc in answers}
    for checkout_id, outcome in outcomes.items():
        if outcome.action in ("paid", "underpaid", "failed"):
            log.info("stk query checkout=%s: %s %s", checkout_id, outcome.action, outcome.detail or f"payment {outcome.payment_id}")
    if "paid" in won.values():
        activations.wake_worker()  # after the commit, so the worker can see the new rows
    return outcomes  # a success whose payment another delivery recorded is a duplicate: no receipt to keep


def _apply_query_answers(
    answers: Sequence[tuple[str, int | str, str]], initiations: dict[str, StkInitiation]
) -> tuple[dict[str, RecordOutcome], dict[int, str]]:
    """The batch's statements, no commit: failures grouped by code, successes through the gate."""
    outcomes: dict[str, RecordOutcome] = {}
    failures: dict[tuple[str, str], list[StkInitiation]] = defaultdict(list)
    successes: list[StkInitiation] = []
    for checkout_id, raw_code, desc in answers:
        initiation, code = initiations.get(checkout_id), str(raw_code).strip()
        if initiation is None:
            outcomes[checkout_id] = RecordOutcome("ignored", "unknown CheckoutRequestID")
        elif code == "0" and initiation.payment is None:
            outcomes[checkout_id] = RecordOutcome("rejected", "initiation without a payment")
        elif code == "0":
            successes.append(initiation)
        elif meaning_of(code).status == "pending":
            outcomes[checkout_id] = RecordOutcome("ignored", f"still processing ({code})")
        else:
            failures[(code, desc or "")].append(initiation)
    for (code, desc), failed in failures.items():
        changed = _mark_initiations_failed(failed, code, desc)
        for initiation in failed:
            outcomes[initiation.checkout_request_id or ""] = _failure_outcome(initiation, code, initiation.id in changed)
    # A query success carries no amount or receipt: Daraja confirmed the amount we asked for.
    won = _apply_settlements([Settlement(i.payment, i.amount) for i in successes], source="query", result_code="0")
    for initiation in successes:
        status = won.get(initiation.payment_id or 0)
        outcomes[initiation.checkout_request_id or ""] = (
            RecordOutcome(status, payment_id=initiation.payment_id) if status
            else RecordOutcome("duplicate", f"payment {initiation.payment_id} already recorded"))
    return outcomes, won


def record_c2b_payment(
    *,
    trans_id: str,
    amount: int | str | float | Decimal | None,
    bill_ref: str | None,
    paybill: Paybill | WebhookPaybill,
    shortcode: str | None = None,
) -> RecordOutcome:
    """Record a C2B confirmation, exactly once per TransID. One transaction; commits.

    ``shortcode`` (the payload's BusinessShortCode) must be this paybill's number or store number:
    a confirmation sent to one paybill's secret URL cannot pay into another's.

    Matching order: the STK initiation whose AccountReference is the BillRefNumber (its phone is the
    customer's, since C2B only sends a masked MSISDN) → the voucher with that code → otherwise an
    unmatched payment the owner can assign.
    """
    receipt = clean_receipt(trans_id)
    value = parse_amount(amount)
    if receipt is None or value is None:
        return RecordOutcome("rejected", "missing TransID or amount")
    if shortcode is not None and str(shortcode).strip() not in {paybill.number, paybill.store_number}:
        return RecordOutcome("rejected", f"BusinessShortCode {str(shortcode)[:12]!r} is not this paybill's")
    code = normalise_code(bill_ref)
    initiation = _latest_initiation_for_code(code, paybill.id) if code else None
    if initiation is not None:
        return _settle(initiation.payment_id, receipt=receipt, amount=value, source="c2b", initiation_id=initiation.id)
    payment = db.session.scalars(
        _purchases_payable_into(paybill).where(Voucher.code == code).order_by(Payment.id)
    ).first() if code else None
    if payment is not None:
        return _settle(payment.id, receipt=receipt, amount=value, source="c2b")
    return _record_unmatched(
        receipt, value, paybill, bill_ref=bill_ref, note="no purchase matches this account number"
    )


def _purchases_payable_into(paybill: Paybill | WebhookPaybill) -> sa.Select[tuple[Payment]]:
    """The purchases a payment into ``paybill`` may settle by voucher code (a customer who typed
    the code as the account number): only those whose own push went to a paybill of the same
    owner, so money paid to one owner never opens another owner's voucher. The platform's paybill
    pays only purchases made on the platform's paybill, never those of an owner who has their own."""
    query = sa.select(Payment).join(Voucher, Payment.voucher_id == Voucher.id).join(
        Paybill, Payment.paybill_id == Paybill.id
    )
    if paybill.owner_id is None:
        return query.where(Paybill.owner_id.is_(None))
    return query.where(Paybill.owner_id == paybill.owner_id, Voucher.owner_id == paybill.owner_id)


def expected_c2b_price(bill_ref: str | None, paybill: Paybill | WebhookPaybill) -> int | None:
    """The price a C2B payment quoting ``bill_ref`` into ``paybill`` must at least bring (the C2B
    validation check), or None when it pays none of this paybill's waiting purchases. Same scope
    as the confirmation: another owner's voucher code is not ours to price."""
    code = normalise_code(bill_ref)
    if not code:
        return None
    return db.session.scalar(
        _purchases_payable_into(paybill)
        .where(Voucher.code == code, Payment.status == "pending")
        .with_only_columns(Payment.amount_expected)
        .limit(1)
    )


def _latest_initiation_for_code(code: str, paybill_id: int) -> StkInitiation | None:
    return db.session.scalars(
        sa.select(StkInitiation)
        .where(StkInitiation.account_reference == code, StkInitiation.paybill_id == paybill_id)
        .order_by(StkInitiation.id.desc())
    ).first()


def _settle(
    payment_id: int | None,
    *,
    receipt: str | None,
    amount: int,
    source: str,
    initiation_id: int | None = None,
    result_code: str | None = "0",
) -> RecordOutcome:
    """Record one payment in its own transaction; see ``_apply_settlements`` for the gate."""
    payment = db.session.get(Payment, payment_id) if payment_id else None
    if payment is None:
        return RecordOutcome("rejected", "initiation without a payment")
    try:
        won = _apply_settlements([Settlement(payment, amount, receipt)], source=source, result_code=result_code)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # this receipt is already recorded on another row: the same money
        if not (receipt and _take_over_unmatched_receipt(receipt, payment)):
            return RecordOutcome("duplicate", f"receipt {receipt} already recorded")
        return _settle(payment_id, receipt=receipt, amount=amount, source=source,
                       initiation_id=initiation_id, result_code=result_code)
    new_status = won.get(payment_id)  # not payment.id: the commit expired it, and reading it would reload the row
    if new_status is None:
        return _settle_lost(payment, receipt, amount, source)
    log.info("payment %s id=%s receipt=%s amount=%s", new_status, payment_id, receipt, amount)
    if new_status == "paid":
        activations.wake_worker()  # after the commit, so the worker can see the new row
    return RecordOutcome(new_status, payment_id=payment_id)


@dataclass(frozen=True)
class Settlement:
    payment: Payment
    amount: int
    receipt: str | None = None


def _apply_settlements(settlements: Sequence[Settlement], *, source: str, result_code: str | None) -> dict[int, str]:
    """The exactly-once gate, inside the caller's transaction: a conditional UPDATE moves each
    payment out of a settleable state, and RETURNING says which ones this transaction moved.
    Those (and only those) complete their initiations and queue their activations. Returns
    {payment id: new status} for the payments won; a payment missing from it was recorded by
    another delivery. Payments that settle alike share one statement."""
    now = utcnow()
    groups: dict[tuple[int, str, str | None, str | None], list[int]] = defaultdict(list)
    for item in settlements:
        if item.amount >= item.payment.amount_expected:
            status, note = "paid", None
        else:
            status, note = "underpaid", f"paid KES {item.amount}, plan costs KES {item.payment.amount_expected}"
        groups[(item.amount, status, item.receipt, note)].append(item.payment.id)
    won: dict[int, str] = {}
    for (amount, status, receipt, note), payment_ids in groups.items():
        moved = db.session.scalars(_SETTLE, {
            "ids": sorted(payment_ids), "new_status": status, "new_amount": amount, "now": now, "new_source": source,
            "new_receipt": receipt or None, "new_result_code": result_code, "new_note": note,
        }).all()
        won.update(dict.fromkeys(moved, status))
    if won:
        complete_initiations(list(won), now)
        refused = mark_vouchers_paid_and_queue([s.payment for s in settlements if won.get(s.payment.id) == "paid"], now)
        _keep_for_the_owner(refused)
        won.update(dict.fromkeys((payment.id for payment in refused), "unmatched"))
    return won


# The money path's statements, built once: Core rather than ORM (no ORM bookkeeping per call),
# and prebuilt so SQLAlchemy neither rebuilds nor re-keys them for every payment.
_payments, _initiations, _vouchers = Payment.__table__, StkInitiation.__table__, Voucher.__table__


def _keep_unless_given(name: str, column: sa.Column) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.bindparam(name, type_=column.type), column)


_SETTLE = (
    sa.update(_payments)
    .where(_payments.c.id.in_(sa.bindparam("ids", expanding=True)), _payments.c.status.in_(SETTLEABLE_STATES))
    .values(
        status=sa.bindparam("new_status", type_=_payments.c.status.type),
        amount=sa.bindparam("new_amount", type_=_payments.c.amount.type),
        paid_at=sa.bindparam("now", type_=_payments.c.paid_at.type),
        source=sa.bindparam("new_source", type_=_payments.c.source.type),
        receipt=_keep_unless_given("new_receipt", _payments.c.receipt),
        result_code=_keep_unless_given("new_result_code", _payments.c.result_code),
        note=_keep_unless_given("new_note", _payments.c.note),
    )
    .returning(_payments.c.id)
)
_COMPLETE_INITIATIONS = (
    sa.update(_initiations)
    .where(_initiations.c.payment_id.in_(sa.bindparam("ids", expanding=True)), _initiations.c.status != "completed")
    .values(status="completed", completed_at=sa.bindparam("now", type_=_initiations.c.completed_at.type), result_code="0")
)
_VOUCHERS_PAID = (
    sa.update(_vouchers)
    .where(_vouchers.c.id.in_(sa.bindparam("ids", expanding=True)), awaiting_payment(_vouchers.c))
    .values(status="paid", paid_at=sa.bindparam("now", type_=_vouchers.c.paid_at.type))
    .returning(_vouchers.c.id)
)


def complete_initiations(payment_ids: list[int], now: datetime) -> None:
    db.session.execute(_COMPLETE_INITIATIONS, {"ids": payment_ids, "now": now})


def mark_vouchers_paid_and_queue(paid: Sequence[Payment], now: datetime) -> list[Payment]:
    """Inside the caller's transaction: the paid purchases' vouchers move to ``paid`` and are
    queued for their routers. Only a voucher still waiting for its money moves; the payments
    whose voucher did not (cancelled by the owner, or already paid by other money) are
    returned, queued for nothing: their money must not open the voucher."""
    if not paid:
        return []
    moved = set(db.session.scalars(_VOUCHERS_PAID, {"ids": [payment.voucher_id for payment in paid], "now": now}))
    queued = []
    for payment in paid:
        if payment.voucher_id in moved:
            hotspot = HotspotContext.from_json(payment.hotspot_json)  # the device the purchase came from
            queued.append(activations.Queued(payment.voucher_id, payment.router_id, hotspot.mac, hotspot.ip))
    activations.queue_activations(queued)
    return [payment for payment in paid if payment.voucher_id not in moved]


def _keep_for_the_owner(payments: Sequence[Payment]) -> None:
    """Money for a voucher that can no longer take it (cancelled, or paid already): recorded
    as the owner's unmatched payment, to refund or assign from the Problems page. Caller's
    transaction."""
    for payment in payments:
        voucher_status = db.session.scalar(sa.select(Voucher.status).where(Voucher.id == payment.voucher_id))
        note = f"paid after its voucher was {voucher_status or 'removed'}: nothing was activated"
        db.session.execute(
            sa.update(Payment).where(Payment.id == payment.id)
            .values(status="unmatched", note=note[:300])
            .execution_options(synchronize_session=False)
        )
        log.warning("payment id=%s came for voucher id=%s already %s: kept unmatched for the owner",
                    payment.id, payment.voucher_id, voucher_status)


def _take_over_unmatched_receipt(receipt: str, payment: Payment) -> bool:
    """A till's C2B confirmation carries no account number, so when it arrives before the STK
    callback its money is recorded unmatched; the callback then brings the same receipt for this
    purchase. That row is this purchase's money: it gives up the receipt (resolved, with a note) so
    the purchase can settle with it. Only an unclaimed, unresolved row on the same paybill qualifies;
    the conditional UPDATE lets exactly one delivery take it over. Commits."""
    note = f"the same money as purchase {payment.public_id}: its STK callback came after this confirmation"
    taken = db.session.execute(
        sa.update(Payment)
        .where(
            Payment.receipt == receipt, Payment.status == "unmatched", Payment.resolved_at.is_(None),
            Payment.voucher_id.is_(None), Payment.paybill_id == payment.paybill_id, Payment.id != payment.id,
        )
        .values(receipt=None, amount=None, resolved_at=utcnow(), note=note[:300])  # counted once: on the purchase
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if taken:
        log.info("receipt=%s moved from an unmatched C2B row to purchase id=%s", receipt, payment.id)
    return taken == 1


def _settle_lost(payment: Payment, receipt: str | None, amount: int, source: str) -> RecordOutcome:
    """Someone else recorded this payment first. Same receipt (or none): a duplicate delivery.
    A different receipt: the customer paid twice, so keep the second payment for the owner.

    A payment confirmed by STK query has no receipt yet; the callback or C2B that brings it is
    the same money. One settled by hand (source manual) used other money, so a receipt arriving
    later is a second payment, not the missing receipt.
    """
    db.session.refresh(payment)
    learns_receipt = bool(receipt) and payment.receipt is None and payment.source == "query"
    if receipt is None or payment.receipt == receipt or learns_receipt:
        if learns_receipt:
            db.session.execute(
                sa.update(Payment).where(Payment.id == payment.id, Payment.receipt.is_(None)).values(receipt=receipt)
            )
            try:
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
        return RecordOutcome("duplicate", f"payment {payment.id} already {payment.status}", payment.id)
    paybill = db.session.get(Paybill, payment.paybill_id) if payment.paybill_id else None
    return _record_unmatched(
        receipt,
        amount,
        paybill,
        bill_ref=payment.voucher.code if payment.voucher else None,
        voucher_id=payment.voucher_id,
        router_id=payment.router_id,
        note=f"second payment for a voucher already {payment.status}",
        source=source,
        owner_id=payment.owner_id,  # on the platform's paybill, the voucher's owner (the paybill has none)
    )


def _record_unmatched(
    receipt: str,
    amount: int,
    paybill: Paybill | WebhookPaybill | None,
    *,
    bill_ref: str | None,
    note: str,
    voucher_id: int | None = None,
    router_id: int | None = None,
    source: str = "c2b",
    owner_id: int | None = None,
) -> RecordOutcome:
    payment = Payment(
        public_id=secrets.token_urlsafe(16),
        owner_id=owner_id if owner_id is not None else (paybill.owner_id if paybill else None),
        paybill_id=paybill.id if paybill else None,
        router_id=router_id,
        voucher_id=voucher_id,
        amount_expected=0,
        amount=amount,
        status="unmatched",
        receipt=receipt,
        source=source,
        bill_ref=(bill_ref or "").replace("\x00", "")[:40] or None,
        note=note.replace("\x00", "")[:300],
        paid_at=utcnow(),
    )
    db.session.add(payment)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return RecordOutcome("duplicate", f"receipt {receipt} already recorded")
    log.warning("unmatched payment receipt=%s amount=%s: %s", receipt, amount, note)
    return RecordOutcome("unmatched", note, payment.id)


def parse_amount(raw: Any) -> int | None:
    """Daraja sends 10, 10.0, "10" or "10.00"; anything else (or a fraction of a shilling) is no amount."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or value < 0 or value != value.to_integral_value() or value > 10**9:
        return None
    return int(value)


def clean_receipt(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    text = raw.strip().upper()
    return text if text.isalnum() and 6 <= len(text) <= 20 else None


"""Giving a customer their money back: a second payment for a voucher already paid, money for a
cancelled voucher or a removed router, an underpaid payment.

The refund closes the payment's gate: the same conditional UPDATE shape as every manual
resolution (``status`` still unmatched/underpaid and ``resolved_at`` null → resolved), in the
transaction that creates the refund row. So a payment that opened a voucher (``paid``, or
resolved by assigning it) can never be refunded, and a refunded payment can never open a
voucher: the assign, issue, accept and receipt-claim paths all require ``resolved_at`` null.
One refund per payment, ever (a unique constraint).

Sent by B2C from the paybill that received the money when it has B2C credentials; otherwise
recorded as "refund by hand" with the owner's note, completed at once. On the platform's paybill
the money was the owner's balance, so the completed refund is a ledger debit.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ..core.extensions import db
from ..models import Payment, Refund, StkInitiation, User, Voucher, utcnow
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import mask_phone, normalise_phone
from ..owners import audit
from ..owners.scope import owned
from . import b2c_transfers

log = logging.getLogger(__name__)

REFUNDABLE_STATES = ("unmatched", "underpaid")


class RefundRefused(ValueError):
    """The payment cannot be refunded; the message says why in words."""


def is_refundable(payment: Payment) -> bool:
    return (payment.status in REFUNDABLE_STATES and payment.resolved_at is None and bool(payment.amount)
            and payment.amount > 0)


def customer_phone(payment: Payment) -> str | None:
    """Who paid: the payment's phone, else its voucher's, else the STK push's (C2B hides the number)."""
    if payment.phone:
        return payment.phone
    if payment.voucher_id:
        phone = db.session.scalar(sa.select(Voucher.phone).where(Voucher.id == payment.voucher_id))
        if phone:
            return phone
        return db.session.scalar(sa.select(StkInitiation.phone_number).where(
            StkInitiation.voucher_id == payment.voucher_id).order_by(StkInitiation.id.desc()).limit(1))
    return None


def refund_payment(user: User | str, payment_id: int, *, reason: str, phone: str | None = None,
                   note: str | None = None, source_ip: str | None = None) -> Refund:
    """Refund one payment (owner-scoped when ``user`` is an owner). One transaction for the gate,
    the refund row and the audit entry; a B2C refund is then sent after the commit.
    Raises RefundRefused."""
    reason = (reason or "").strip()
    if not reason:
        raise RefundRefused("say why the money goes back (the reason is kept in the audit log)")
    scope = owned(Payment.owner_id, user) if isinstance(user, User) else sa.true()
    payment = db.session.scalars(sa.select(Payment).where(Payment.id == payment_id, scope)).first()
    if payment is None:
        raise RefundRefused("no such payment")
    if not is_refundable(payment):
        raise RefundRefused(_why_not(payment))
    msisdn = _refund_phone(payment, phone)
    by_b2c = b2c_transfers.has_b2c(payment.paybill_id)
    if not by_b2c and not (note or "").strip():
        raise RefundRefused("this paybill cannot send money by B2C: refund the customer by hand and note how")
    now = utcnow()
    gate = db.session.execute(
        sa.update(Payment)
        .where(Payment.id == payment.id, Payment.status.in_(REFUNDABLE_STATES), Payment.resolved_at.is_(None))
        .values(resolved_at=now, note=f"refunded: {reason}"[:300])
        .execution_options(synchronize_session=False)
    ).rowcount
    if gate != 1:
        db.session.rollback()
        raise RefundRefused("this payment was settled a moment ago (a voucher or another refund)")
    refund = Refund(
        owner_id=payment.owner_id, paybill_id=payment.paybill_id, payment_id=payment.id, amount=payment.amount,
        phone=msisdn, method="b2c" if by_b2c else "by_hand", state="approved" if by_b2c else "completed",
        reason=reason[:300], note=(note or "").strip()[:300] or None, requested_by=_label(user),
        completed_at=None if by_b2c else now,
    )
    db.session.add(refund)
    db.session.flush()
    if not by_b2c:
        b2c_transfers._post_completed(Refund, refund, None, now)
    audit.record("payment.refund", actor=user if isinstance(user, User) else str(user), owner_id=payment.owner_id,
                 object_type="payment", object_id=payment.id, source_ip=source_ip,
                 detail=f"KES {payment.amount} {'by B2C' if by_b2c else 'by hand'} to "
                        f"{mask_phone(msisdn) if msisdn else 'the customer'}: {reason}")
    db.session.commit()
    if by_b2c:
        b2c_transfers.send_transfer(Refund, refund.id)
        db.session.refresh(refund)
    return refund


def refund_by_receipt(receipt: str, *, reason: str, phone: str | None = None, note: str | None = None) -> Refund:
    payment_id = db.session.scalar(sa.select(Payment.id).where(Payment.receipt == receipt.strip().upper()))
    if payment_id is None:
        raise RefundRefused(f"no payment with receipt {receipt}")
    return refund_payment("cli", payment_id, reason=reason, phone=phone, note=note)


def refund_for(payment_id: int) -> Refund | None:
    return db.session.scalars(sa.select(Refund).where(Refund.payment_id == payment_id)).first()


def retry_refund(refund_id: int, *, actor: Any) -> str:
    if not b2c_transfers.approve_retry(Refund, refund_id, actor=actor):
        return "not retryable"
    return b2c_transfers.send_transfer(Refund, refund_id)


def send_approved_refunds(limit: int = 500) -> dict[str, int]:
    """Send refunds left approved (Daraja was unreachable when they were made). The job's; each
    send claims its refund, so two workers never send one twice."""
    ids = list(db.session.scalars(sa.select(Refund.id).where(Refund.state == "approved").order_by(Refund.id).limit(limit)))
    db.session.commit()
    outcomes = [b2c_transfers.send_transfer(Refund, refund_id) for refund_id in ids]
    return {"sent": outcomes.count("sent"), "other": len(outcomes) - outcomes.count("sent")}


def _refund_phone(payment: Payment, given: str | None) -> str | None:
    raw = (given or "").strip() or customer_phone(payment)
    if not raw:
        if b2c_transfers.has_b2c(payment.paybill_id):
            raise RefundRefused("M-Pesa did not tell us who paid (C2B hides the number): enter the customer's phone")
        return None
    try:
        return normalise_phone(raw)
    except InvalidPhoneNumber as exc:
        raise RefundRefused("enter a Safaricom number like 0712 345 678") from exc


def _why_not(payment: Payment) -> str:
    if refund_for(payment.id) is not None:
        return "this payment was refunded already"
    if payment.status == "paid":
        return "this payment opened a voucher: it cannot also be refunded"
    if payment.resolved_at is not None:
        return "this payment was settled already"
    if not payment.amount:
        return "this payment holds no money (its receipt moved to the purchase it paid)"
    return f"a {payment.status} payment has no money to refund"


def _label(user: User | str) -> str:
    return user.email if isinstance(user, User) else str(user)

"""The customer's view of a purchase: where it stands, and the voucher code once the money is in."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..core.extensions import db
from ..models import Payment, StkInitiation
from ..mpesa.errors import DarajaRejected
from ..mpesa.result_codes import meaning_of, refusal_reason


def find_purchase(public_id: str) -> Payment | None:
    if not public_id or len(public_id) > 32:
        return None
    return db.session.scalars(sa.select(Payment).where(Payment.public_id == public_id)).first()


@dataclass(frozen=True)
class PurchaseStatus:
    """Where a purchase stands, as facts; the captive blueprint words them for the customer."""

    status: str  # pending | paid | active | failed | expired
    voucher: str | None
    # Why, for the page to choose its words and next step: "active", "paid", "pending", "slow"
    # (the push's outcome is unknown), "underpaid", "expired", "refused" (Daraja refused the push;
    # see ``refusal``), or the result code's meaning for a failed payment (see ``result_code``).
    reason: str
    can_retry: bool = False
    result_code: str | None = None
    refusal: str | None = None  # mpesa.result_codes.refusal_reason of a refused push
    amount: int | None = None  # KES received, for "underpaid"
    amount_expected: int | None = None  # KES the plan costs, for "underpaid"


def purchase_status(payment: Payment) -> PurchaseStatus:
    """The customer's view of a purchase. The voucher code is shown only once the money is in."""
    voucher = payment.voucher
    if voucher is not None and voucher.status == "active":
        return PurchaseStatus("active", voucher.code, "active")
    if payment.status == "paid":
        return PurchaseStatus("paid", voucher.code if voucher else None, "paid")
    if payment.status == "underpaid":
        return PurchaseStatus(
            "failed", None, "underpaid", amount=payment.amount, amount_expected=payment.amount_expected
        )
    initiation = _latest_initiation(payment)
    if payment.status == "failed":
        return _failed_status(payment, initiation)
    if payment.status == "expired" or (initiation is not None and initiation.status == "expired"):
        return PurchaseStatus("expired", None, "expired", can_retry=True)
    if initiation is not None and initiation.outcome_unknown and initiation.checkout_request_id is None:
        return PurchaseStatus("pending", None, "slow")
    return PurchaseStatus("pending", None, "pending")


def _failed_status(payment: Payment, initiation: StkInitiation | None) -> PurchaseStatus:
    code = (initiation.result_code if initiation else None) or payment.result_code
    if initiation is not None and initiation.checkout_request_id is None and initiation.status == "failed":
        # Daraja refused the push itself (or it could not be sent): rebuild its reason from the row.
        refused = DarajaRejected(
            initiation.result_desc or "", error_code=initiation.result_code, error_message=initiation.result_desc
        )
        return PurchaseStatus("failed", None, "refused", can_retry=True, refusal=refusal_reason(refused))
    meaning = meaning_of(code)
    return PurchaseStatus("failed", None, meaning.reason, can_retry=meaning.can_retry, result_code=meaning.code)


def _latest_initiation(payment: Payment) -> StkInitiation | None:
    return db.session.scalars(
        sa.select(StkInitiation).where(StkInitiation.payment_id == payment.id).order_by(StkInitiation.id.desc())
    ).first()

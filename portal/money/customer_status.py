"""The customer's view of a purchase: where it stands, and the voucher code once the money is in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..core.extensions import db
from ..hotspot import pull_sync
from ..models import Payment, StkInitiation
from ..mpesa.errors import DarajaRejected
from ..mpesa.result_codes import meaning_of, rejection_message


def find_purchase(public_id: str) -> Payment | None:
    if not public_id or len(public_id) > 32:
        return None
    return db.session.scalars(sa.select(Payment).where(Payment.public_id == public_id)).first()


@dataclass(frozen=True)
class PurchaseStatus:
    status: str  # pending | paid | active | failed | expired
    voucher: str | None
    message_en: str
    message_sw: str
    reason: str = ""  # result meaning key, for the page to choose its next step
    can_retry: bool = False

    def as_json(self, lang: str = "en") -> dict[str, Any]:
        message = self.message_sw if lang == "sw" else self.message_en
        return {"status": self.status, "voucher": self.voucher, "message": message}


def purchase_status(payment: Payment) -> PurchaseStatus:
    """The customer's view of a purchase. The voucher code is shown only once the money is in."""
    voucher = payment.voucher
    if voucher is not None and voucher.status == "active":
        return PurchaseStatus(
            "active", voucher.code, "You are online. Save your voucher code.", "Uko mtandaoni. Hifadhi nambari yako."
        )
    if payment.status == "paid":
        return _paid_status(payment, voucher.code if voucher else None)
    if payment.status == "underpaid":
        return PurchaseStatus(
            "failed",
            None,
            f"We received KES {payment.amount}, less than the plan price of KES {payment.amount_expected}. "
            "Show your M-Pesa message to the hotspot owner.",
            f"Tumepokea KES {payment.amount}, chini ya bei ya KES {payment.amount_expected}. "
            "Onyesha ujumbe wako wa M-Pesa kwa mwenye hotspot.",
            reason="underpaid",
        )
    initiation = _latest_initiation(payment)
    if payment.status == "failed":
        return _failed_status(payment, initiation)
    if payment.status == "expired" or (initiation is not None and initiation.status == "expired"):
        return PurchaseStatus(
            "expired",
            None,
            "We did not hear from M-Pesa in time. If money left your account, enter the M-Pesa code from your SMS.",
            "Hatukupata jibu la M-Pesa kwa wakati. Kama pesa imetoka, weka nambari ya M-Pesa kutoka kwa SMS.",
            reason="expired",
            can_retry=True,
        )
    if initiation is not None and initiation.outcome_unknown and initiation.checkout_request_id is None:
        return PurchaseStatus(
            "pending",
            None,
            "M-Pesa is slow to answer. If a prompt appears on your phone, enter your PIN; if not, try again in a minute.",
            "M-Pesa inachelewa kujibu. Ujumbe ukifika kwenye simu yako, weka PIN; usipofika, jaribu tena baada ya dakika moja.",
            reason="slow",
        )
    return PurchaseStatus(
        "pending",
        None,
        "Check your phone and enter your M-Pesa PIN.",
        "Angalia simu yako na uweke PIN yako ya M-Pesa.",
    )


def _paid_status(payment: Payment, code: str | None) -> PurchaseStatus:
    router = payment.router
    if router is not None and router.transport == "pull":
        # The router fetches its work on a schedule: say how long that can take.
        seconds = pull_sync.wait_bound_s(router.sync_interval_s)
        return PurchaseStatus(
            "paid",
            code,
            f"Payment received. Connecting… this can take up to {seconds} seconds.",
            f"Malipo yamepokelewa. Tunakuunganisha… inaweza kuchukua hadi sekunde {seconds}.",
        )
    return PurchaseStatus(
        "paid", code, "Payment received. Connecting you to the internet…", "Malipo yamepokelewa. Tunakuunganisha kwenye mtandao…"
    )


def _failed_status(payment: Payment, initiation: StkInitiation | None) -> PurchaseStatus:
    code = (initiation.result_code if initiation else None) or payment.result_code
    meaning = meaning_of(code)
    if initiation is not None and initiation.checkout_request_id is None and initiation.customer_message:
        # Daraja refused the push itself; its reason was translated when it happened.
        return PurchaseStatus(
            "failed", None, initiation.customer_message, _refusal_sw(initiation), reason="refused", can_retry=True
        )
    return PurchaseStatus(
        "failed", None, meaning.text_en, meaning.text_sw, reason=meaning.reason, can_retry=meaning.can_retry
    )


def _refusal_sw(initiation: StkInitiation) -> str:
    exc = DarajaRejected(initiation.result_desc or "", error_code=initiation.result_code, error_message=initiation.result_desc)
    return rejection_message(exc)[1]


def _latest_initiation(payment: Payment) -> StkInitiation | None:
    return db.session.scalars(
        sa.select(StkInitiation).where(StkInitiation.payment_id == payment.id).order_by(StkInitiation.id.desc())
    ).first()

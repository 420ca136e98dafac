"""The customer's view of a purchase: where it stands, and the voucher code once the money is in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.extensions import db
from ..hotspot import pull_sync
from ..models import Payment, StkInitiation, utcnow
from ..mpesa.errors import DarajaRejected
from ..mpesa.result_codes import meaning_of, refusal_reason

# A payment recorded this long ago with the voucher still not on the router: say the router is slow.
SLOW_ROUTER_AFTER_S = 10
# A prompt unanswered this long: offer the ways out (send again, another number, the M-Pesa menu).
WAY_OUT_AFTER_S = 30


def find_purchase(public_id: str) -> Payment | None:
    if not public_id or len(public_id) > 32:
        return None
    return db.session.scalars(sa.select(Payment).where(Payment.public_id == public_id)).first()


@dataclass(frozen=True)
class PurchaseStatus:
    """Where a purchase stands, as facts; the captive blueprint words them for the customer."""

    status: str  # pending | paid | active | failed | expired
    voucher: str | None
    # Why, for the page to choose its words and next step: "active", "paid", "slow_router" (paid,
    # the voucher not yet on the router after SLOW_ROUTER_AFTER_S, or a pull router's wait_s), "pending", "slow"
    # (the push's outcome is unknown), "underpaid", "expired", "refused" (Daraja refused the push;
    # see ``refusal``), or the result code's meaning for a failed payment (see ``result_code``).
    reason: str
    can_retry: bool = False
    result_code: str | None = None
    refusal: str | None = None  # mpesa.result_codes.refusal_reason of a refused push
    amount: int | None = None  # KES received, for "underpaid"
    amount_expected: int | None = None  # KES the plan costs, for "underpaid"
    # For "paid" on a router that syncs by pull: how long its next sync (and acknowledgement) can take.
    wait_s: int | None = None


def purchase_status(payment: Payment) -> PurchaseStatus:
    """The customer's view of a purchase. The voucher code is shown only once the money is in."""
    voucher = payment.voucher
    if voucher is not None and voucher.status == "active":
        return PurchaseStatus("active", voucher.code, "active")
    if payment.status == "paid":
        # A pull router takes up to its next sync (the page says how long); only later is it slow.
        wait_s = _pull_wait_s(payment)
        slow_after = wait_s if wait_s is not None else SLOW_ROUTER_AFTER_S
        slow = payment.paid_at is not None and _age_s(payment.paid_at) >= slow_after
        return PurchaseStatus("paid", voucher.code if voucher else None, "slow_router" if slow else "paid", wait_s=wait_s)
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


def _pull_wait_s(payment: Payment) -> int | None:
    router = payment.router
    if router is None or router.transport != "pull":
        return None
    return pull_sync.wait_bound_s(router.sync_interval_s)  # the router fetches its work on a schedule


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


@dataclass(frozen=True)
class PromptFacts:
    """What the wait page shows while a prompt is out: the package, and how else to pay for it."""

    plan_name: str
    amount: int
    account: str  # the voucher code: the STK AccountReference, and the Pay Bill account number
    pay_to: str | None  # the paybill or till number customers pay from the M-Pesa menu
    pay_to_kind: str  # "paybill" | "till"
    waiting_s: int  # since the prompt was sent
    seconds_left: int  # before the prompt expires
    can_pay_by_menu: bool  # a Pay Bill account reaches this purchase; a till payment is claimed by receipt


def prompt_facts(payment: Payment, expiry_s: int) -> PromptFacts:
    initiation = _latest_initiation(payment)
    voucher, paybill = payment.voucher, payment.paybill
    sent_at = initiation.created_at if initiation else payment.created_at
    waiting = _age_s(sent_at)
    kind = paybill.type if paybill else "paybill"
    return PromptFacts(
        plan_name=voucher.plan.name if voucher else "",
        amount=payment.amount_expected,
        account=voucher.code if voucher else "",
        pay_to=paybill.number if paybill else None,
        pay_to_kind=kind,
        waiting_s=waiting,
        seconds_left=max(0, int((sent_at + timedelta(seconds=expiry_s) - utcnow()).total_seconds())),
        can_pay_by_menu=paybill is not None,
    )


def _age_s(moment: datetime) -> int:
    return max(0, int((utcnow() - moment).total_seconds()))


def _latest_initiation(payment: Payment) -> StkInitiation | None:
    return db.session.scalars(
        sa.select(StkInitiation).where(StkInitiation.payment_id == payment.id).order_by(StkInitiation.id.desc())
    ).first()

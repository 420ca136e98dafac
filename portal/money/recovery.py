"""Getting a customer online without a new payment: a voucher code they hold, an M-Pesa receipt
from their SMS, or one more push for a purchase that failed.

What these services guarantee:
* a voucher is only ever handed out for something that proves payment (its code, or a receipt);
  never for a phone number alone;
* a payment nobody could match (a Buy Goods payment carries no account number) becomes a voucher
  at most once: a conditional UPDATE on ``payments.status = 'unmatched'`` decides, in the same
  transaction that creates the voucher and queues its activation;
* each lookup is scoped to the router owner's own vouchers and payments; an unmatched payment
  is claimable only as ``claim_refusal`` allows (this router's paybills, a time window).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..core.extensions import db
from ..hotspot import activations, catalogue
from ..hotspot.login_context import HotspotContext
from ..hotspot.vouchers import new_voucher_code, normalise_code
from ..models import AuditLog, Paybill, Payment, Plan, Router, Voucher, utcnow
from . import purchase

log = logging.getLogger(__name__)

LOGIN_STATES = ("paid", "active")


@dataclass(frozen=True)
class CodeCheck:
    """``outcome``: ok (may log in; ``voucher`` set), unknown (no such code for this owner: a typo
    and another owner's code read alike, so a reply never confirms a code elsewhere), used_up
    (its time or data ran out), disabled (the owner switched it off), unpaid (its payment never came)."""

    outcome: str
    voucher: Voucher | None = None


def check_code(router: Router, raw_code: str | None) -> CodeCheck:
    """May this code log in at this router? Only the router owner's vouchers are looked at."""
    code = normalise_code(raw_code)
    if not 4 <= len(code) <= 12:
        return CodeCheck("unknown")
    voucher = db.session.scalars(
        sa.select(Voucher).where(Voucher.code == code, Voucher.owner_id == router.owner_id)
    ).first()
    if voucher is None:
        return CodeCheck("unknown")
    if voucher.status == "cancelled":
        return CodeCheck("disabled")
    if voucher.status == "pending_payment":
        return CodeCheck("unpaid")
    if voucher.status not in LOGIN_STATES or (voucher.expires_at is not None and voucher.expires_at <= utcnow()):
        return CodeCheck("used_up")
    return CodeCheck("ok", voucher)


def normalise_receipt(raw: str | None) -> str | None:
    """What a customer copied from the SMS → the receipt as M-Pesa writes it (10 letters/digits)."""
    text = "".join(ch for ch in (raw or "").upper() if ch.isalnum())
    if not (8 <= len(text) <= 12) or text.isdigit() or not text.isascii():
        return None  # all digits: a phone number or an amount, never a receipt
    return text


@dataclass(frozen=True)
class Recovery:
    """``outcome``: found (an existing voucher), claimed (a new voucher from unmatched money),
    underpaid, too_little (below every plan), used_up (the voucher has expired), not_found."""

    outcome: str
    payment: Payment | None = None
    amount: int | None = None


def recover_by_receipt(router: Router, raw_receipt: str | None, hotspot: HotspotContext) -> Recovery:
    """Find the router owner's payment with this receipt and get its voucher to this device.

    A settled payment gets this device's login variables (so its wait page can log the browser in
    here). An unmatched payment of at least one plan's price is turned into a voucher for the best
    plan it pays for, exactly once, and its activation is queued. Commits.
    """
    receipt = normalise_receipt(raw_receipt)
    if receipt is None:
        return Recovery("not_found")
    payment = db.session.scalars(sa.select(Payment).where(Payment.receipt == receipt)).first()
    if payment is not None and payment.status == "unmatched":
        refusal = claim_refusal(router, payment)
        if refusal is not None:
            # The customer reads only "not found here": which rule failed would help guess receipts.
            log.info("receipt claim refused receipt=%s router=%s: %s", receipt, router.slug, refusal)
            return Recovery("not_found")
        return _claim_unmatched(router, payment, hotspot)
    if payment is None or payment.owner_id != router.owner_id:
        return Recovery("not_found")
    if payment.status == "underpaid":
        return Recovery("underpaid", payment, payment.amount)
    if payment.status != "paid" or payment.voucher is None:
        return Recovery("not_found")
    if payment.voucher.status not in LOGIN_STATES:
        return Recovery("used_up", payment)
    _keep_login_context(payment, hotspot)
    return Recovery("found", payment)


def claim_refusal(router: Router, payment: Payment, *, now: datetime | None = None) -> str | None:
    """Why this unmatched payment may not be claimed at this router, or None when it may.

    Claimable: never resolved by the owner (refunded, taken as cash, assigned, issued); paid into a
    paybill this router's plans are sold through (one of the router owner's own, or the platform's
    when that owner has none of their own: the same scope as settlement's
    ``_purchases_payable_into``); and paid within PORTAL_RECEIPT_CLAIM_DAYS. The amount is checked
    when the plan is chosen (``too_little``)."""
    if payment.resolved_at is not None:
        return "resolved by the owner: spent for good"
    paybill = db.session.get(Paybill, payment.paybill_id) if payment.paybill_id else None
    if paybill is None:
        return "recorded on no paybill"
    if paybill.owner_id is None:
        if payment.owner_id is not None or _has_own_paybill(router.owner_id):
            return f"paid into the platform paybill {paybill.number}; this owner sells through their own"
    elif paybill.owner_id != router.owner_id or payment.owner_id != router.owner_id:
        return f"paid into paybill {paybill.number} of another owner"
    days = current_app.config["PORTAL_RECEIPT_CLAIM_DAYS"]
    paid_at = payment.paid_at or payment.created_at
    if paid_at < (now or utcnow()) - timedelta(days=days):
        return f"paid {paid_at:%Y-%m-%d}, more than {days} days ago"
    return None


def _has_own_paybill(owner_id: int) -> bool:
    return db.session.scalar(sa.select(sa.exists().where(Paybill.owner_id == owner_id))) or False


def best_plan_for_amount(router: Router, amount: int) -> Plan | None:
    """The dearest plan on sale at this router that the amount pays for (longest on a tie)."""
    affordable = [plan for plan in catalogue.plans_for_router(router) if plan.price <= amount]
    return max(affordable, key=lambda plan: (plan.price, plan.duration_s), default=None)


def _claim_unmatched(router: Router, payment: Payment, hotspot: HotspotContext) -> Recovery:
    amount = payment.amount or 0
    plan = best_plan_for_amount(router, amount)
    if plan is None:
        return Recovery("too_little", payment, amount)
    now = utcnow()
    voucher = Voucher(
        code=new_voucher_code(),
        owner_id=router.owner_id,
        plan_id=plan.id,
        router_id=router.id,
        status="paid",
        paid_at=now,
        device_mac=hotspot.mac,
        device_ip=hotspot.ip,
    )
    db.session.add(voucher)
    db.session.flush()
    note = f"claimed with its receipt on {router.slug} for plan {plan.name!r} (KES {plan.price})"
    won = (
        db.session.execute(
            sa.update(Payment)
            .where(Payment.id == payment.id, Payment.status == "unmatched", Payment.resolved_at.is_(None))
            .values(
                status="paid",
                owner_id=router.owner_id,  # platform-paybill money: now this owner's sale, as a platform purchase is
                voucher_id=voucher.id,
                router_id=router.id,
                amount_expected=plan.price,
                hotspot_json=hotspot.to_json(),
                note=note[:300],
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )
    if not won:
        db.session.rollback()  # another request claimed it first: show what it made
        db.session.refresh(payment)
        return recover_by_receipt(router, payment.receipt, hotspot)
    activations.queue_activation(
        voucher_id=voucher.id, router_id=router.id, device_mac=hotspot.mac, device_ip=hotspot.ip
    )
    db.session.add(
        AuditLog(
            owner_id=router.owner_id,
            actor="customer",
            action="payment.claimed_by_receipt",
            object_type="payment",
            object_id=str(payment.id),
            detail=f"{note}; voucher {voucher.code}",
        )
    )
    db.session.commit()
    activations.wake_worker()  # after the commit, so the worker can see the new row
    db.session.refresh(payment)
    log.info("unmatched payment claimed receipt=%s voucher=%s plan=%s", payment.receipt, voucher.code, plan.id)
    return Recovery("claimed", payment, amount)


def _keep_login_context(payment: Payment, hotspot: HotspotContext) -> None:
    # Only the login variables change (the device the customer is on now); no money column moves.
    if hotspot.link_login_only:
        payment.hotspot_json = hotspot.to_json()
        db.session.commit()


def purchase_again(payment: Payment) -> Payment:
    """Send the prompt again after a failure or timeout: a new purchase for the same plan, phone
    and router, through ``purchase.start_purchase`` (commits before pushing, and never re-sends a
    push whose outcome is unknown). The failed purchase stays on record as it was; a late success
    on it is still honoured by settlement.

    At most one push per phone follows each prompt. While the last prompt to this phone is still
    open, a tap finds the purchase that sent it when that is this same plan at this router (a
    second tap), else raises ``purchase.PromptStillOpen``. The new purchase's idempotency key
    names the prompt it follows, so two taps at once (even from two page loads) get one purchase.

    Raises ``purchase.PurchaseError`` when the plan is no longer sold there.
    """
    voucher, router = payment.voucher, payment.router
    plan = catalogue.plan_for_router(router, voucher.plan_id) if voucher and router else None
    if plan is None or router is None or not payment.phone:
        raise purchase.PurchaseError("plan_gone")
    latest = purchase.latest_prompt_to(payment.phone)
    wait_s = purchase.prompt_open_s(latest)
    if wait_s and latest is not None:
        if _is_a_resend_of(latest.payment, payment):
            return latest.payment  # a second tap: the prompt it asks for is already out, show that one
        log.info("send again refused: prompt still open voucher=%s", latest.account_reference)
        raise purchase.PromptStillOpen(wait_s)
    hotspot = HotspotContext.from_json(payment.hotspot_json)
    key = f"again:{payment.phone}:{latest.id if latest else 0}"
    return purchase.start_purchase(router, plan, phone=payment.phone, hotspot=hotspot, idempotency_key=key,
                                   language=voucher.language, sms_opt_out=voucher.sms_opt_out)


def _is_a_resend_of(candidate: Payment | None, payment: Payment) -> bool:
    if candidate is None or candidate.id == payment.id or candidate.voucher is None or payment.voucher is None:
        return False
    return candidate.router_id == payment.router_id and candidate.voucher.plan_id == payment.voucher.plan_id

"""Starting a purchase: a voucher, a payment and an STK initiation on record, then one STK push.

Rows are committed before the push goes, so a refused or timed-out push is still on record; the
money itself is recorded by ``settlement`` when Daraja tells us (callback, C2B or query).
"""

from __future__ import annotations

import logging
import math
import secrets

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..core.database import storable
from ..core.extensions import db
from ..hotspot.login_context import HotspotContext
from ..hotspot.vouchers import new_voucher_code
from ..models import Paybill, Payment, Plan, Router, StkInitiation, Voucher, utcnow
from ..mpesa.errors import DarajaError, DarajaUnavailable
from ..mpesa.phones import mask_phone, normalise_phone
from ..owners.paybills import paybill_for_router, prepare_daraja_call
from . import webhook_log

log = logging.getLogger(__name__)

TRANSACTION_DESC = "WiFi access"  # Daraja's TransactionDesc: at most 13 characters


# How long an STK prompt stays open on the phone: Daraja's is about a minute (never documented).
# While the last prompt to a phone is open, no new one is sent for it: the customer could enter
# their PIN in both and pay twice.
PROMPT_LIFETIME_S = 60


class PurchaseError(Exception):
    """The purchase cannot start. ``reason`` says why ("no_paybill", "plan_gone", "prompt_open");
    the captive blueprint words it for the customer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PromptStillOpen(PurchaseError):
    """The last prompt to this phone may still be on its screen; ``seconds_left`` until it is not."""

    def __init__(self, seconds_left: int) -> None:
        super().__init__("prompt_open")
        self.seconds_left = max(1, seconds_left)


def latest_prompt_to(msisdn: str) -> StkInitiation | None:
    return db.session.scalars(
        sa.select(StkInitiation).where(StkInitiation.phone_number == msisdn).order_by(StkInitiation.id.desc()).limit(1)
    ).first()


def prompt_open_s(initiation: StkInitiation | None) -> int:
    """Seconds this prompt may still be open on the phone: unanswered (``initiated``, which includes
    a push whose outcome is unknown) and younger than its lifetime (our expiry, if shorter); else 0."""
    if initiation is None or initiation.status != "initiated":
        return 0
    lifetime = min(PROMPT_LIFETIME_S, current_app.config["PORTAL_STK_EXPIRY_S"])
    age = (utcnow() - initiation.created_at).total_seconds()
    return max(0, math.ceil(lifetime - age))


# ---------------------------------------------------------------------------------------------
# Buying


def start_purchase(
    router: Router,
    plan: Plan,
    *,
    phone: str,
    hotspot: HotspotContext,
    idempotency_key: str | None = None,
    language: str | None = None,
    sms_opt_out: bool = False,
) -> Payment:
    """Create voucher + payment + initiation, then send one STK push.

    ``language`` (the customer's page language) and ``sms_opt_out`` go on the voucher: its
    receipt SMS speaks that language, or is not sent.

    Rows are committed before the push is sent, so a refused or timed-out push is still on record,
    and a double-submitted form (same ``idempotency_key``) finds the first purchase instead of
    pushing again. Raises ``InvalidPhoneNumber`` or ``PurchaseError``. Daraja refusing the push is
    not an exception: the returned payment is failed and its initiation carries Daraja's reason.
    """
    msisdn = normalise_phone(phone)
    existing = _purchase_with_key(idempotency_key)
    if existing:
        return existing
    paybill = paybill_for_router(router)
    if paybill is None:
        raise PurchaseError("no_paybill")
    try:
        payment, initiation = _record_new_purchase(
            router, plan, paybill, msisdn, hotspot, idempotency_key, language=language, sms_opt_out=sms_opt_out
        )
    except IntegrityError:
        db.session.rollback()  # the other half of a double submit committed first
        existing = _purchase_with_key(idempotency_key)
        if existing is None:
            raise
        return existing
    _send_push(paybill, payment, initiation)
    return payment


def _purchase_with_key(idempotency_key: str | None) -> Payment | None:
    if not idempotency_key:
        return None
    return db.session.scalars(sa.select(Payment).where(Payment.idempotency_key == idempotency_key)).first()


def _record_new_purchase(
    router: Router,
    plan: Plan,
    paybill: Paybill,
    msisdn: str,
    hotspot: HotspotContext,
    idempotency_key: str | None,
    *,
    language: str | None = None,
    sms_opt_out: bool = False,
) -> tuple[Payment, StkInitiation]:
    voucher = Voucher(
        code=new_voucher_code(),
        owner_id=router.owner_id,
        plan_id=plan.id,
        router_id=router.id,
        phone=msisdn,
        device_mac=hotspot.mac,
        device_ip=hotspot.ip,
        language=language,
        sms_opt_out=sms_opt_out,
    )
    payment = Payment(
        public_id=secrets.token_urlsafe(16),
        idempotency_key=idempotency_key,
        owner_id=router.owner_id,
        router_id=router.id,
        paybill_id=paybill.id,
        voucher=voucher,
        amount_expected=plan.price,
        phone=msisdn,
        source="stk",
        hotspot_json=hotspot.to_json(),
    )
    initiation = StkInitiation(
        account_reference=voucher.code,
        phone_number=msisdn,
        amount=plan.price,
        paybill_number=paybill.business_shortcode,
        paybill_id=paybill.id,
        router_id=router.id,
        voucher=voucher,
        payment=payment,
    )
    db.session.add_all([voucher, payment, initiation])
    db.session.commit()
    return payment, initiation


def _send_push(paybill: Paybill, payment: Payment, initiation: StkInitiation) -> None:
    phone, amount, reference = initiation.phone_number, initiation.amount, initiation.account_reference
    call = prepare_daraja_call(paybill)
    try:
        accepted = call.client.stk_push(
            call.account,
            call.tokens,
            phone=phone,
            amount=amount,
            account_reference=reference,
            description=TRANSACTION_DESC,
            callback_url=call.urls["stk"],
        )
    except DarajaUnavailable as exc:
        if exc.outcome_unknown:
            _mark_push_outcome_unknown(initiation, exc)
        else:
            _mark_push_refused(payment, initiation, exc)
        return
    except DarajaError as exc:
        _mark_push_refused(payment, initiation, exc)
        return
    initiation.checkout_request_id = accepted.checkout_request_id
    initiation.merchant_request_id = accepted.merchant_request_id
    initiation.customer_message = accepted.customer_message[:300]
    db.session.commit()
    log.info(
        "stk push sent checkout=%s voucher=%s phone=%s amount=%s",
        accepted.checkout_request_id,
        initiation.account_reference,
        mask_phone(initiation.phone_number),
        initiation.amount,
    )
    # A fast callback can beat our commit of the CheckoutRequestID; it was stored raw, so run it now.
    webhook_log.process_early_callbacks(accepted.checkout_request_id)


def _mark_push_refused(payment: Payment, initiation: StkInitiation, exc: DarajaError) -> None:
    initiation.status = "failed"
    initiation.result_code = (exc.error_code or type(exc).__name__)[:32]
    initiation.result_desc = storable(exc.error_message or str(exc), 300)
    initiation.completed_at = utcnow()
    payment.status = "failed"
    payment.result_code = initiation.result_code
    db.session.commit()
    log.warning(
        "stk push refused voucher=%s code=%s reason=%s", initiation.account_reference, initiation.result_code, exc
    )


def _mark_push_outcome_unknown(initiation: StkInitiation, exc: DarajaError) -> None:
    # Daraja may have taken the push: never re-send it. Reconciliation or a callback settles it.
    initiation.outcome_unknown = True
    db.session.commit()
    log.warning("stk push outcome unknown voucher=%s: %s", initiation.account_reference, exc)


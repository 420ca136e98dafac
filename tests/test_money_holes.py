"""Issue 11's money holes, each against real `flask worker` processes (PostgreSQL when
TEST_DATABASE_URL is set): no cross-owner C2B, one payment one voucher, no lost success, and
expiry that does not end the search for the money."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Activation, Payment, Voucher

from .conftest import SANDBOX_PASSKEY, wait_until
from .test_purchase_flow import HOTSPOT, _count, _initiation, _payment
from .test_worker_processes import start_worker, stop

CANCELLING_PHONE = "0700 001 032"  # the sandbox answers 1032: the customer cancelled the prompt
SILENT_PHONE = "0700 099 999"  # the sandbox never calls back for this number


@pytest.fixture
def app_overrides():  # type: ignore[no-untyped-def]
    # Several purchases from one test number within a minute; rate limits are tested elsewhere.
    return {"PORTAL_RATE_LIMITS_ENABLED": False}


@pytest.fixture
def two_workers(app: Any, tmp_path: Any) -> Iterator[list[Any]]:
    """Two real worker processes running every job and the activation outbox."""
    workers = [start_worker(app, tmp_path / f"w{i}.log") for i in range(2)]
    yield workers
    for w in workers:
        stop(w)


def _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, number: str | None):  # type: ignore[no-untyped-def]
    from portal.owners.paybills import register_c2b_urls

    class Shop:
        pass

    s = Shop()
    s.owner = make_owner()
    s.paybill = None
    if number is not None:
        daraja.add_shortcode(number, SANDBOX_PASSKEY)
        s.paybill = make_paybill(s.owner, number=number)
        register_c2b_urls(s.paybill)
    s.router = make_router(s.owner, name=f"Shop of {s.owner.email}")
    s.plan = make_plan(s.owner)
    return s


def _buy_at(customer, shop, phone: str) -> str:  # type: ignore[no-untyped-def]
    response = customer.buy(shop.router.slug, shop.plan.id, phone, **HOTSPOT)
    assert response.status_code == 303, response.text[:500]
    return response.headers["Location"].replace(customer.base, "")


def _by_receipt(receipt: str) -> Payment | None:
    db.session.expire_all()
    return db.session.scalars(sa.select(Payment).where(Payment.receipt == receipt)).first()


# ---------------------------------------------------------------------------------------------
# Point 1: a C2B payment opens only its own owner's vouchers


def test_a_c2b_into_owner_as_paybill_quoting_owner_bs_voucher_stays_on_as_side(
    app, make_owner, make_paybill, make_router, make_plan, customer, daraja, router_box, two_workers
):
    shop_b = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174379")
    shop_a = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174380")
    cancelled = _buy_at(customer, shop_b, CANCELLING_PHONE)
    assert customer.wait_for(cancelled, ("failed",))["status"] == "failed"
    code_b = _payment(cancelled).voucher.code

    daraja.simulate_c2b("174380", 10, code_b, trans_id="CROSS00001")

    money = wait_until(lambda: _by_receipt("CROSS00001"), timeout=10)
    assert money.status == "unmatched" and money.owner_id == shop_a.owner.id
    assert money.paybill_id == shop_a.paybill.id and money.voucher_id is None
    b_payment = _payment(cancelled)
    assert b_payment.status == "failed" and b_payment.voucher.status != "paid"
    assert _count(Activation, Activation.voucher_id == b_payment.voucher_id) == 0

    # The same code paid into B's own paybill is B's money: the workers put it online.
    daraja.simulate_c2b("174379", 10, code_b, trans_id="CROSS00002")
    assert customer.wait_for(cancelled, ("active",), timeout=20)["status"] == "active"
    assert list(router_box.users) == [code_b]
    assert _by_receipt("CROSS00001").status == "unmatched"


def test_c2b_validation_prices_only_this_paybills_own_purchases(
    app, make_owner, make_paybill, make_router, make_plan, customer, daraja, two_workers
):
    shop_b = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174379")
    _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174380")
    waiting = _buy_at(customer, shop_b, SILENT_PHONE)  # B's KES 10 purchase, still pending
    code_b = _payment(waiting).voucher.code

    daraja.simulate_c2b("174380", 5, code_b, trans_id="VALID00001")  # A's customer, A's paybill
    daraja.simulate_c2b("174379", 5, code_b, trans_id="VALID00002")  # too little for B's own voucher

    accepted = wait_until(lambda: _by_receipt("VALID00001"), timeout=10)
    assert accepted.status == "unmatched" and accepted.owner_id != shop_b.owner.id
    assert _by_receipt("VALID00002") is None  # refused at validation: the customer keeps the money
    assert _payment(waiting).status == "pending"


def test_the_platform_paybill_never_opens_a_voucher_of_an_owner_with_their_own_paybill(
    app, make_owner, make_paybill, make_router, make_plan, customer, daraja, router_box, two_workers
):
    from portal.owners.paybills import register_c2b_urls

    daraja.add_shortcode("174381", SANDBOX_PASSKEY)
    platform = make_paybill(None, number="174381")
    register_c2b_urls(platform)
    own = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174379")
    on_platform = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, None)
    cancelled_own = _buy_at(customer, own, CANCELLING_PHONE)
    cancelled_platform = _buy_at(customer, on_platform, "0700 001 032")
    for purchase in (cancelled_own, cancelled_platform):
        customer.wait_for(purchase, ("failed",))
    own_code = _payment(cancelled_own).voucher.code
    platform_code = _payment(cancelled_platform).voucher.code
    assert _payment(cancelled_platform).paybill_id == platform.id

    daraja.simulate_c2b("174381", 10, own_code, trans_id="PLATF00001")
    daraja.simulate_c2b("174381", 10, platform_code, trans_id="PLATF00002")

    assert customer.wait_for(cancelled_platform, ("active",), timeout=20)["status"] == "active"
    stray = wait_until(lambda: _by_receipt("PLATF00001"), timeout=10)
    assert stray.status == "unmatched" and stray.owner_id is None and stray.paybill_id == platform.id
    assert _payment(cancelled_own).status == "failed"
    assert set(router_box.users) == {platform_code}
    assert db.session.scalars(sa.select(Voucher.status).where(Voucher.code == own_code)).one() != "paid"


# ---------------------------------------------------------------------------------------------
# Point 2 (part): a payment the owner resolved is never turned into a voucher by its receipt


def test_an_unmatched_payment_marked_resolved_is_never_claimed_by_receipt(
    app, make_owner, make_paybill, make_router, make_plan, daraja, router_box, two_workers
):
    from portal.hotspot.login_context import HotspotContext
    from portal.money import problems, recovery

    shop = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174379")
    daraja.simulate_c2b("174379", 10, "", trans_id="SPENT00001")  # no account number: unmatched
    money = wait_until(lambda: _by_receipt("SPENT00001"), timeout=10)
    problems.mark_payment_resolved(shop.owner, money.id, reason="refunded to the customer")

    found = recovery.recover_by_receipt(shop.router, "SPENT00001", HotspotContext.from_json(None))

    assert found.outcome == "not_found"
    assert _count(Voucher) == 0 and _count(Activation) == 0
    assert _by_receipt("SPENT00001").status == "unmatched"


# ---------------------------------------------------------------------------------------------
# Point 3: a success nobody can match is still money on record


def test_a_success_for_an_unknown_checkout_id_is_an_unmatched_payment_the_customer_can_claim(
    app, make_owner, make_paybill, make_router, make_plan, daraja, router_box, two_workers
):
    from portal.hotspot.login_context import HotspotContext
    from portal.money import problems, recovery

    from .test_purchase_flow import _post_callback, _success_body

    shop = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174379")

    answer = _post_callback(app, shop.paybill.webhook_token, _success_body("ws_CO_UNKNOWN0001", receipt="LOSTOK0001"))

    assert answer.status_code == 200
    money = _by_receipt("LOSTOK0001")
    assert money is not None and money.status == "unmatched" and money.amount == 10
    assert money.paybill_id == shop.paybill.id and money.owner_id == shop.owner.id
    assert [p.id for p in problems.list_problems(shop.owner).unmatched_payments] == [money.id]
    found = recovery.recover_by_receipt(shop.router, "LOSTOK0001", HotspotContext.from_json(None))
    assert found.outcome == "claimed"
    code = _by_receipt("LOSTOK0001").voucher.code
    wait_until(lambda: code in router_box.users, timeout=20)


def test_a_tills_c2b_before_the_callback_is_the_purchases_money_not_a_duplicate(
    app, shop, customer, daraja, router_box, worker
):
    """Point 2: a till's C2B confirmation has no account number, so arriving first it is recorded
    unmatched; the STK callback with the same receipt must then settle the purchase with it."""
    from .test_purchase_flow import _post_callback, _success_body

    purchase = _buy_at(customer, shop, SILENT_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    daraja.simulate_c2b("174379", 10, None, trans_id="TILLFIRST1")
    first = wait_until(lambda: _by_receipt("TILLFIRST1"), timeout=10)
    assert first.status == "unmatched"

    _post_callback(app, shop.paybill.webhook_token, _success_body(checkout_id, 10, "TILLFIRST1"))
    _post_callback(app, shop.paybill.webhook_token, _success_body(checkout_id, 10, "TILLFIRST1"))  # again

    assert customer.wait_for(purchase, ("active",), timeout=20)["status"] == "active"
    paid = _payment(purchase)
    assert paid.status == "paid" and paid.receipt == "TILLFIRST1"
    db.session.expire_all()
    old = db.session.get(Payment, first.id)
    assert old.receipt is None and old.resolved_at is not None and paid.public_id in old.note
    assert _count(Payment, Payment.status == "unmatched", Payment.resolved_at.is_(None)) == 0
    assert list(router_box.users) == [paid.voucher.code]


def test_a_callback_that_beats_our_commit_of_its_checkout_id_settles_that_purchase_once(
    app, shop, customer, daraja, router_box, worker
):
    """Reproduced in CI (two workers under load): a success callback that arrived between Daraja's
    answer to the push and our commit of its CheckoutRequestID was recorded as unmatched money, so
    the same shillings showed twice and the customer waited for reconciliation."""
    from portal.models import StkInitiation, WebhookLog

    from .test_purchase_flow import _post_callback, _success_body

    # The silent number: the sandbox sends no callback of its own, the test sends the early one.
    purchase = customer.buy(shop.router.slug, shop.plan.id, "0700 099 999").headers["Location"].replace(customer.base, "")
    initiation = _initiation(purchase)
    checkout_id = initiation.checkout_request_id
    # Put the purchase back to the moment before our commit: Daraja has answered, we have not stored it.
    db.session.execute(sa.update(StkInitiation).where(StkInitiation.id == initiation.id).values(
        checkout_request_id=None, phone_number="254712345678"))  # the phone _success_body reports
    db.session.commit()

    early = _post_callback(app, shop.paybill.webhook_token, _success_body(checkout_id, receipt="EARLY00001"))

    assert early.status_code == 200 and _by_receipt("EARLY00001") is None  # not recorded as stray money
    entry = db.session.scalars(sa.select(WebhookLog).where(WebhookLog.checkout_request_id == checkout_id)).one()
    assert entry.status == "ignored"
    db.session.execute(sa.update(StkInitiation).where(StkInitiation.id == initiation.id).values(checkout_request_id=checkout_id))
    db.session.commit()
    from portal.money import webhook_log

    assert webhook_log.process_early_callbacks(checkout_id) == 1  # what the push does after its commit
    paid = _by_receipt("EARLY00001")
    assert paid.status == "paid" and paid.id == _payment(purchase).id
    assert _count(Payment, Payment.receipt.is_not(None)) == 1
    wait_until(lambda: paid.voucher.code in router_box.users, timeout=20)


def test_an_early_callback_whose_push_never_learned_its_id_is_kept_as_money_by_the_sweep(app, shop, customer, daraja):
    from datetime import timedelta

    from portal.models import StkInitiation, WebhookLog, utcnow
    from portal.money import settlement, webhook_log

    from .test_purchase_flow import _post_callback, _success_body

    purchase = customer.buy(shop.router.slug, shop.plan.id, "0700 099 999").headers["Location"].replace(customer.base, "")
    initiation = _initiation(purchase)
    db.session.execute(sa.update(StkInitiation).where(StkInitiation.id == initiation.id).values(
        checkout_request_id=None, phone_number="254712345678"))
    db.session.commit()
    _post_callback(app, shop.paybill.webhook_token, _success_body("ws_CO_NEVERSTORED1", receipt="EARLY00002"))
    assert _by_receipt("EARLY00002") is None
    assert webhook_log.settle_early_leftovers() == 0  # the push may still be in flight

    later = utcnow() + settlement.PUSH_IN_FLIGHT + timedelta(seconds=1)
    db.session.execute(sa.update(StkInitiation).where(StkInitiation.id == initiation.id).values(
        created_at=utcnow() - settlement.PUSH_IN_FLIGHT - timedelta(seconds=5)))
    db.session.commit()
    assert webhook_log.settle_early_leftovers(now=later) == 1

    money = _by_receipt("EARLY00002")
    assert money is not None and money.status == "unmatched" and money.amount == 10
    entry = db.session.scalars(sa.select(WebhookLog).where(WebhookLog.checkout_request_id == "ws_CO_NEVERSTORED1")).one()
    assert entry.status == "processed"
    assert webhook_log.settle_early_leftovers(now=later) == 0

"""Issue 11, second part: which unmatched payments a customer may claim by receipt (and for how
long), money assigned by hand counted once, "send again" never pushing over an open prompt, and
provider text stored clean. On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot.login_context import HotspotContext
from portal.models import Payment, StkInitiation, Voucher, utcnow
from portal.money import recovery, settlement

from .conftest import SANDBOX_PASSKEY, wait_until
from .test_money_holes import (
    SILENT_PHONE,
    _buy_at,
    _by_receipt,
    _owner_with_paybill,
    two_workers,  # noqa: F401 (a fixture)
)
from .test_purchase_flow import _count, _initiation, _payment


@pytest.fixture
def app_overrides():  # type: ignore[no-untyped-def]
    # The money rules must hold on their own: rate limits are a separate guard, tested elsewhere.
    return {"PORTAL_RATE_LIMITS_ENABLED": False}


def _initiation_row(initiation_id: int) -> StkInitiation:
    db.session.expire_all()
    return db.session.get(StkInitiation, initiation_id)


# ---------------------------------------------------------------------------------------------
# Task 4: a failure's ResultDesc is stored clean, whichever path records it


def test_a_query_failure_with_a_nul_or_a_huge_result_desc_is_recorded_failed(app: Any, shop: Any, customer: Any) -> None:
    first = _initiation(_buy_at(customer, shop, SILENT_PHONE))
    second = _initiation(_buy_at(customer, shop, SILENT_PHONE))
    third = _initiation(_buy_at(customer, shop, SILENT_PHONE))

    batch = settlement.record_stk_query_answers([
        (first.checkout_request_id, "1032", "Request cancelled\x00 by user"),
        (second.checkout_request_id, "1037", "D" * 5000),
    ])
    alone = settlement.record_stk_result(third.checkout_request_id, "2001\x00", "wrong\x00pin", source="query")

    assert [outcome.action for outcome in batch.values()] == ["failed", "failed"] and alone.action == "failed"
    nul, huge, code = (_initiation_row(i.id) for i in (first, second, third))
    assert nul.status == "failed" and nul.result_desc == "Request cancelled\ufffd by user"
    assert huge.status == "failed" and huge.result_desc == "D" * 300
    assert code.status == "failed" and "\x00" not in code.result_code + code.result_desc


# ---------------------------------------------------------------------------------------------
# Task 1: which unmatched payments a customer may claim by receipt, and for how long


def _stray(daraja: Any, number: str, receipt: str, amount: int = 10) -> Payment:
    daraja.simulate_c2b(number, amount, "", trans_id=receipt)  # no account number: unmatched
    money = wait_until(lambda: _by_receipt(receipt), timeout=10)
    assert money is not None and money.status == "unmatched"
    return money


@pytest.mark.usefixtures("two_workers")  # two real `flask worker` processes put the claim online
def test_a_receipt_is_claimable_only_at_a_router_selling_through_the_paybill_it_was_paid_into(
    app, make_owner, make_paybill, make_router, make_plan, daraja, router_box, caplog
):
    from portal.owners.paybills import register_c2b_urls

    daraja.add_shortcode("174381", SANDBOX_PASSKEY)
    register_c2b_urls(make_paybill(None, number="174381"))  # the platform's paybill
    own = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174379")
    other = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, "174380")
    on_platform = _owner_with_paybill(make_owner, make_paybill, make_router, make_plan, daraja, None)
    others_money = _stray(daraja, "174380", "OTHERB0001")
    platform_money = _stray(daraja, "174381", "PLATF00003")
    nowhere = HotspotContext.from_json(None)
    caplog.set_level(logging.INFO, logger="portal.money.recovery")

    refused = [recovery.recover_by_receipt(own.router, receipt, nowhere).outcome
               for receipt in ("OTHERB0001", "PLATF00003")]
    claimed = recovery.recover_by_receipt(on_platform.router, "PLATF00003", nowhere)

    assert refused == ["not_found", "not_found"]
    assert "another owner" in caplog.text and "sells through their own" in caplog.text
    assert claimed.outcome == "claimed"
    paid = _by_receipt("PLATF00003")
    assert paid.status == "paid" and paid.owner_id == on_platform.owner.id and paid.id == platform_money.id
    assert wait_until(lambda: paid.voucher.code in router_box.users, timeout=20)
    assert list(router_box.users) == [paid.voucher.code]
    still = _by_receipt("OTHERB0001")
    assert (still.status, still.owner_id, still.voucher_id) == ("unmatched", other.owner.id, None)
    assert others_money.id == still.id


@pytest.mark.parametrize("days", [8, 6])
def test_a_receipt_is_claimable_for_seven_days_after_it_was_paid(days, app, shop, customer, daraja, router_box, worker,
                                                                 caplog):
    from .test_captive_pages import HOTSPOT, _location, _post_form, _text
    from .wording import TEXT

    caplog.set_level(logging.INFO, logger="portal.money.recovery")
    money = _stray(daraja, "174379", "AGED000001")
    long_ago = utcnow() - timedelta(days=days)
    db.session.execute(sa.update(Payment).where(Payment.id == money.id).values(paid_at=long_ago, created_at=long_ago))
    db.session.commit()
    page = customer.open_plans(shop.router.slug, **HOTSPOT)

    answer = _post_form(customer, f"/r/{shop.router.slug}/receipt", page, receipt="AGED000001")

    if days > app.config["PORTAL_RECEIPT_CLAIM_DAYS"]:
        assert answer.status_code == 404 and TEXT["en"]["err_receipt_not_found"] in _text(answer.text)
        assert "more than 7 days ago" in caplog.text
        assert _by_receipt("AGED000001").status == "unmatched" and _count(Voucher) == 0
    else:
        body = customer.wait_for(_location(answer, customer), ("active",), timeout=20)
        assert body["status"] == "active" and list(router_box.users) == [body["voucher"]]
        assert _by_receipt("AGED000001").status == "paid"


# ---------------------------------------------------------------------------------------------
# Task 3: "send again" never pushes while the last prompt may still be on the phone


def _fail_as_cancelled(purchase_url: str) -> None:
    initiation = _initiation(purchase_url)
    db.session.execute(sa.update(StkInitiation).where(StkInitiation.id == initiation.id)
                       .values(status="failed", result_code="1032", result_desc="Request cancelled by user"))
    db.session.execute(sa.update(Payment).where(Payment.id == initiation.payment_id)
                       .values(status="failed", result_code="1032"))
    db.session.commit()


def test_two_quick_send_agains_make_one_stk_push(app, shop, customer, daraja):
    from concurrent.futures import ThreadPoolExecutor

    from .test_captive_pages import _location, _page, _post_form

    failed = _buy_at(customer, shop, SILENT_PHONE)
    _fail_as_cancelled(failed)  # the customer cancelled; the next prompt will stay unanswered
    pages = [_page(customer, failed) for _ in range(3)]  # three loads: three form keys

    with ThreadPoolExecutor(2) as pool:
        taps = list(pool.map(lambda page: _post_form(customer, f"{failed}/retry", page), pages[:2]))
    late = _post_form(customer, f"{failed}/retry", pages[2])

    assert len(daraja.pushes) == 2  # the first purchase's, and one "send again"
    again = {_location(answer, customer) for answer in (*taps, late)}
    assert len(again) == 1 and failed not in again  # every tap shows the one prompt that went out
    assert _count(Payment) == 2


@pytest.mark.parametrize("lang", ["en", "sw"])
def test_send_again_while_the_prompt_is_still_open_says_so_and_pushes_nothing(lang, app, shop, customer, daraja):
    from .test_captive_pages import _page, _post_form, _text
    from .test_money_safety import _age_initiation
    from .wording import TEXT

    waiting = _buy_at(customer, shop, SILENT_PHONE)
    _age_initiation(waiting, 35)  # "No prompt on your phone?" shows after 30 s; Daraja's lasts about 60
    assert 'id="retry-wait"' in _page(customer, waiting, lang=lang).text  # "You can send it again in …"
    page = customer.open_plans(shop.router.slug)  # the wait page offers no button yet: a page with a CSRF token

    answer = _post_form(customer, f"{waiting}/retry?lang={lang}", page, purchase_key="a-stale-tab-00000001")

    assert answer.status_code == 409
    assert TEXT[lang]["prompt_open"].split("{")[0] in _text(answer.text)
    assert len(daraja.pushes) == 1 and _count(Payment) == 1
    _age_initiation(waiting, 61)  # the prompt has gone from the phone: now a new one may go
    assert _post_form(customer, f"{waiting}/retry", _page(customer, waiting)).status_code == 303  # a button now
    assert len(daraja.pushes) == 2


# ---------------------------------------------------------------------------------------------
# Task 2: money assigned to a waiting purchase counts once; a payment is assigned at most once


def test_money_assigned_to_a_waiting_purchase_is_counted_once(app, shop, customer, daraja, router_box, worker):
    from portal.money import problems
    from portal.owners.payment_search import PaymentFilter, payment_totals
    from portal.owners.reports import build_overview

    waiting = _buy_at(customer, shop, SILENT_PHONE)
    code = _payment(waiting).voucher.code
    money = _stray(daraja, "174379", "TYPO000002")

    problems.assign_payment_to_voucher(shop.owner, money.id, code, reason="typo in the account")

    assert customer.wait_for(waiting, ("active",), timeout=20)["status"] == "active"
    app.extensions.pop("portal_payment_totals", None)
    assert payment_totals(shop.owner, PaymentFilter()).received == 10
    assert build_overview(shop.owner).revenue_today == 10
    paid, old = _payment(waiting), _by_receipt("TYPO000002")
    assert old.id == paid.id and (paid.status, paid.amount, paid.source) == ("paid", 10, "manual")
    history = db.session.get(Payment, money.id)
    assert (history.status, history.amount, history.receipt) == ("unmatched", None, None) and history.resolved_at
    assert paid.public_id in history.note


def test_two_owners_assigning_one_payment_at_once_give_it_to_one_voucher(
    app, shop, customer, daraja, make_owner, router_box, worker
):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from portal.models import AuditLog, User
    from portal.money import problems

    admin = make_owner(admin=True)
    codes = [_payment(_buy_at(customer, shop, SILENT_PHONE)).voucher.code for _ in range(2)]
    money = _stray(daraja, "174379", "TWICE00001")
    # At the same moment on PostgreSQL; one after the other on SQLite, which serialises writers
    # in its file lock (two threads in one process wait on each other there).
    racing = db.engine.dialect.name == "postgresql"
    users, start = [shop.owner.id, admin.id], threading.Barrier(2 if racing else 1)

    def assign(n: int) -> str:
        with app.app_context():
            user = db.session.get(User, users[n])
            start.wait()
            try:
                problems.assign_payment_to_voucher(user, money.id, codes[n], reason="customer called")
                return "assigned"
            except problems.AlreadyHandled:
                return "already"
            finally:
                db.session.remove()

    with ThreadPoolExecutor(2 if racing else 1) as pool:
        outcomes = sorted(pool.map(assign, range(2)))

    assert outcomes == ["already", "assigned"]
    db.session.expire_all()
    paid = db.session.scalars(sa.select(Payment).where(Payment.status == "paid")).all()
    assert len(paid) == 1 and paid[0].receipt == "TWICE00001" and paid[0].amount == 10
    assert _count(Voucher, Voucher.status.in_(("paid", "active"))) == 1
    assert _count(AuditLog, AuditLog.action == "problem.assign_payment") == 1

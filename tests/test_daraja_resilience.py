"""Daraja misbehaving: 500s, hangs, the circuit breaker, and the scheduled token refresh."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot.vouchers import is_awaiting_payment
from portal.models import Activation, Paybill, Payment, StkInitiation, Voucher, utcnow
from portal.money import reconciliation
from portal.owners.tokens import refresh_due_tokens

from .conftest import CONSUMER_KEY, CONSUMER_SECRET
from .test_purchase_flow import _buy, _count, _initiation


@pytest.fixture
def app_overrides():  # type: ignore[no-untyped-def]
    return {
        "PORTAL_DARAJA_BREAKER_FAILURES": 3,
        "PORTAL_DARAJA_BREAKER_COOL_OFF_S": 1.5,
        "PORTAL_DARAJA_TIMEOUT_S": 0.5,
    }


def test_daraja_500s_open_the_breaker_then_purchases_fail_fast_and_recover(shop, customer, daraja, router_box, worker):
    daraja.fail_mode = "500"
    for n in range(3):
        _buy(customer, shop, phone=f"0711 000 10{n}")
    requests_before = len(daraja.received)

    started = time.monotonic()
    fast = _buy(customer, shop, phone="0711 000 200")
    elapsed = time.monotonic() - started

    body = customer.status(fast)
    assert body["status"] == "failed" and "not responding" in body["message"] and "minute" in body["message"]
    assert elapsed < 1.0  # no HTTP request: the breaker answers at once
    assert len(daraja.received) == requests_before  # nothing was sent while the breaker was open
    refused = _initiation(fast)
    assert refused.status == "failed" and refused.result_code == "DarajaCircuitOpen"

    time.sleep(1.6)  # the cool-off passes; Daraja is healthy again
    daraja.fail_mode = None
    recovered = _buy(customer, shop, phone="0711 000 300")

    assert customer.wait_for(recovered, ("active",))["status"] == "active"
    _assert_nothing_half_done()


def test_a_hanging_push_is_never_resent_and_its_late_callback_still_activates(shop, customer, daraja, router_box, worker):
    daraja.fail_mode = "hang"
    started = time.monotonic()
    purchase = _buy(customer, shop, phone="0711 000 400")
    assert time.monotonic() - started < 3.0  # the customer is not kept waiting on a hung Daraja

    initiation = _initiation(purchase)
    assert initiation.outcome_unknown and initiation.checkout_request_id is None
    assert initiation.status == "initiated"
    assert customer.status(purchase)["status"] == "pending"

    daraja.fail_mode = None  # the hung request now goes through, and its callback comes later
    body = customer.wait_for(purchase, ("active", "failed"), timeout=15)

    assert body["status"] == "active"
    pushes = [p for p in daraja.pushes if p["PhoneNumber"] == "254711000400"]
    assert len(pushes) == 1  # never re-sent
    assert _initiation(purchase).checkout_request_id == pushes[0]["CheckoutRequestID"]
    _assert_nothing_half_done()


def test_an_unknown_outcome_push_that_never_completes_expires_cleanly(app, shop, customer, daraja):
    daraja.fail_mode = "hang"
    purchase = _buy(customer, shop, phone="0711 000 500")
    daraja.fail_mode = None
    daraja.set_outcome("254711000500", 1032)  # if it does reach the phone, the customer cancels
    db.session.execute(
        sa.update(StkInitiation).values(created_at=utcnow() - timedelta(seconds=app.config["PORTAL_STK_EXPIRY_S"] + 1))
    )
    db.session.commit()

    assert reconciliation.expire_unpaid_initiations() == 1

    assert customer.status(purchase)["status"] == "expired"
    _assert_nothing_half_done()


def _assert_nothing_half_done() -> None:
    db.session.expire_all()
    for payment in db.session.scalars(sa.select(Payment)):
        voucher = payment.voucher
        if payment.status == "paid":
            assert voucher.status in ("paid", "active")
        else:  # still waiting for money (or expired with its prompt, unpaid: late money still opens it)
            assert is_awaiting_payment(voucher), voucher.status
            assert _count(Activation, Activation.voucher_id == voucher.id) == 0
    for initiation in db.session.scalars(sa.select(StkInitiation)):
        if initiation.status == "failed":
            assert initiation.result_code and initiation.customer_message or initiation.result_desc
        if initiation.status == "initiated":
            assert initiation.checkout_request_id or initiation.outcome_unknown
    assert _count(Voucher, Voucher.status == "active") == _count(Activation, Activation.status == "done")


# ---------------------------------------------------------------------------------------------
# Token refresh


def _set_token(paybill: Paybill, token: str, expires_in: timedelta) -> None:
    from portal.mpesa.client import CachedToken
    from portal.owners.paybills import PaybillTokenStore

    PaybillTokenStore(paybill.id).save(CachedToken(token, utcnow() + expires_in))


def test_token_refresh_renews_expiring_reuses_valid_and_reports_bad_credentials(make_owner, make_paybill, daraja):
    owner = make_owner()
    for n in range(3):
        daraja.add_app(f"app-{n}", f"secret-{n}")
    expiring = make_paybill(owner, name="expiring")
    valid = make_paybill(None, name="valid")
    broken = make_paybill(make_owner(), name="broken")
    for n, paybill in enumerate((expiring, valid, broken)):  # three separate Daraja apps
        paybill.consumer_key, paybill.consumer_secret = f"app-{n}", f"secret-{n}"
    broken.consumer_secret = "wrong"
    db.session.commit()
    _set_token(expiring, "old-token", timedelta(minutes=5))
    _set_token(valid, "still-good", timedelta(minutes=50))
    calls_before = daraja.oauth_calls

    results = {r.paybill_id: r for r in refresh_due_tokens()}

    assert results[expiring.id].outcome == "refreshed"
    assert results[valid.id].outcome == "still valid"
    assert results[broken.id].outcome == "failed"
    assert daraja.oauth_calls - calls_before == 2  # the expiring one, and one try for the broken one
    db.session.expire_all()
    assert expiring.access_token != "old-token" and expiring.token_expires_at > utcnow() + timedelta(minutes=50)
    assert valid.access_token == "still-good"
    assert broken.last_token_error and "wrong" not in broken.last_token_error
    assert broken.last_token_error_at is not None


def test_a_fresh_token_is_reused_by_purchases(shop, customer, daraja):
    _set_token(shop.paybill, "x", timedelta(seconds=-1))  # force one fetch
    for n in range(3):
        _buy(customer, shop, phone=f"0711 000 6{n}0")
    assert daraja.oauth_calls <= 2  # the shop fixture's registration, then one refresh for all pushes


def test_tokens_refresh_command_prints_a_line_per_paybill(app, make_owner, make_paybill, daraja):
    make_paybill(make_owner())
    bad = make_paybill(make_owner(), number="174379")
    bad.consumer_key = "unknown-key"
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["tokens", "refresh"])

    lines = result.output.strip().splitlines()
    assert len(lines) == 2, result.output
    assert any("refreshed" in line for line in lines)
    assert any("failed" in line for line in lines)
    assert CONSUMER_SECRET not in result.output and CONSUMER_KEY not in result.output
    assert result.exit_code == 1  # a failure is visible to cron/monitoring


def test_paybills_sharing_a_daraja_app_share_one_token(make_owner, make_paybill, daraja):
    owner = make_owner()
    first, second = make_paybill(owner), make_paybill(owner)  # same owner, consumer key and secret
    _set_token(first, "old", timedelta(minutes=1))
    before = daraja.oauth_calls

    results = refresh_due_tokens()

    assert daraja.oauth_calls - before == 1  # a second fetch would kill the first paybill's token
    assert {r.outcome for r in results} == {"refreshed"}
    db.session.expire_all()
    assert first.access_token == second.access_token != "old"


def test_a_token_is_never_shared_with_another_owner_or_without_the_same_secret(make_owner, make_paybill, daraja):
    from portal.owners.paybills import PaybillTokenStore

    owner = make_owner()
    mine = make_paybill(owner)
    wrong_secret = make_paybill(owner)
    wrong_secret.consumer_secret = "not-the-secret"  # the same consumer key, copied without its secret
    other_owner = make_paybill(make_owner())  # the same key and secret, but someone else's paybill
    db.session.commit()
    _set_token(mine, "owner-a-token", timedelta(hours=1))
    before = daraja.oauth_calls

    assert PaybillTokenStore(wrong_secret.id).load_fresh() is None
    assert PaybillTokenStore(other_owner.id).load_fresh() is None
    results = {r.paybill_id: r for r in refresh_due_tokens()}

    assert results[mine.id].outcome == "still valid"
    assert results[wrong_secret.id].outcome == "failed"  # it had to prove its own secret, and could not
    assert results[other_owner.id].outcome == "refreshed" and "shares" not in results[other_owner.id].detail
    assert daraja.oauth_calls - before == 2
    db.session.expire_all()
    assert mine.access_token == "owner-a-token"
    assert wrong_secret.access_token is None and other_owner.access_token not in (None, "owner-a-token")


def test_two_refreshers_at_once_fetch_each_token_once(app, make_owner, make_paybill, daraja):
    from concurrent.futures import ThreadPoolExecutor

    paybills = [make_paybill(make_owner()) for _ in range(3)]
    for n, p in enumerate(paybills):
        daraja.add_app(f"app-{n}", f"secret-{n}")
        p.consumer_key, p.consumer_secret = f"app-{n}", f"secret-{n}"
    db.session.commit()
    for p in paybills:
        _set_token(p, "old", timedelta(minutes=1))
    before = daraja.oauth_calls

    def run(_: int) -> list[str]:
        with app.app_context():
            try:
                return [r.outcome for r in refresh_due_tokens()]
            finally:
                db.session.remove()

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(run, range(2)))

    assert daraja.oauth_calls - before == 3
    assert sorted(o for run_outcomes in outcomes for o in run_outcomes).count("refreshed") == 3


def test_a_token_replaced_by_another_process_is_picked_up_without_a_new_fetch(app, shop, customer, daraja, worker):
    import requests as http
    from sqlalchemy import update

    from portal.core.crypto import encrypt_secret
    from portal.owners.paybills import PaybillTokenStore

    first = _buy(customer, shop, phone="0711 000 700")  # this process now remembers the token
    assert customer.wait_for(first, ("active",))["status"] == "active"
    # Another process refreshes: Daraja issues a new token (killing ours) and it lands in the database.
    fresh = http.get(f"{daraja.base_url}/oauth/v1/generate?grant_type=client_credentials",
                     auth=(CONSUMER_KEY, CONSUMER_SECRET), timeout=5).json()["access_token"]
    with db.engine.begin() as conn:
        conn.execute(update(Paybill).values(access_token_encrypted=encrypt_secret(fresh),
                                            token_expires_at=utcnow() + timedelta(minutes=50)))
    calls_before = daraja.oauth_calls

    second = _buy(customer, shop, phone="0711 000 701")

    assert customer.wait_for(second, ("active",))["status"] == "active"
    assert daraja.oauth_calls == calls_before  # no fetch: a fetch would kill the other process's token
    assert PaybillTokenStore(shop.paybill.id).load().access_token == fresh

"""Issue 11 point 4: expiry does not end the search for the money. An initiation that expired
before anyone asked Daraja about it is still asked, with backoff, until a final answer comes or
PORTAL_LATE_QUERY_GIVE_UP_S pass; then it is given up and stays on the owner's Problems page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Activation, Payment, StkInitiation, utcnow
from portal.money import problems, reconciliation

from .conftest import wait_until
from .test_purchase_flow import _buy, _count, _initiation, _payment
from .test_reconciliation_batches import _waiting
from .test_worker_processes import start_worker, stop

LOST_CALLBACK_PHONE = "0711 222 333"


@pytest.fixture
def app_overrides():  # type: ignore[no-untyped-def]
    return {"PORTAL_RATE_LIMITS_ENABLED": False}


def _set(initiation: StkInitiation, **values: Any) -> None:
    db.session.execute(sa.update(StkInitiation).where(StkInitiation.id == initiation.id).values(**values))
    db.session.commit()


def _fresh(initiation: StkInitiation) -> StkInitiation:
    db.session.expire_all()
    return db.session.get(StkInitiation, initiation.id)


def _seconds_until(moment) -> float:  # type: ignore[no-untyped-def]
    return (moment - utcnow()).total_seconds()


def test_a_lost_callback_that_expires_before_any_query_is_found_later_and_goes_online(
    app, shop, customer, daraja, router_box, tmp_path
):
    """The reproduction: reconciliation would first ask after 10 minutes, the push expires
    after 2 s. On main's code the purchase ends "expired" although the customer paid."""
    daraja.set_outcome(LOST_CALLBACK_PHONE, 0, send_callback=False)
    env = {"PORTAL_STK_EXPIRY_S": "2", "PORTAL_RECONCILE_AFTER_S": "600", "PORTAL_LATE_QUERY_BACKOFF_S": "1"}
    workers = [start_worker(app, tmp_path / f"w{i}.log", **env) for i in range(2)]
    try:
        purchase = _buy(customer, shop, phone=LOST_CALLBACK_PHONE)
        checkout_id = _initiation(purchase).checkout_request_id
        wait_until(lambda: _initiation(purchase).status != "initiated", timeout=15)
        body = customer.wait_for(purchase, ("active",), timeout=30)
    finally:
        for w in workers:
            stop(w)
    logs = "\n".join((tmp_path / f"w{i}.log").read_text() for i in range(2))

    assert body["status"] == "active", logs[-3000:]
    initiation = _initiation(purchase)
    assert initiation.status == "completed" and initiation.late_query_count >= 1
    assert _count(Payment, Payment.status == "paid") == 1
    assert (_payment(purchase).source, _count(Activation)) == ("query", 1)
    assert list(router_box.users) == [body["voucher"]]
    assert daraja.query_calls[checkout_id] >= 1
    assert "Traceback" not in logs, logs[-5000:]


def test_late_queries_back_off_then_give_up_after_a_day(app, shop):
    app.config["PORTAL_LATE_QUERY_BACKOFF_S"] = (60, 300, 1800, 3600)
    (initiation,) = _waiting(shop, 1, ago_s=app.config["PORTAL_STK_EXPIRY_S"] + 10)
    _set(initiation, last_query_at=None)

    assert reconciliation.expire_unpaid_initiations() == 1
    expired = _fresh(initiation)
    assert expired.status == "expired" and 55 < _seconds_until(expired.next_query_at) <= 60
    assert reconciliation.claim_due_queries(limit=10, per_paybill=10) == []  # not due for a minute

    gaps = []
    for _ in range(5):
        _set(initiation, next_query_at=utcnow() - timedelta(seconds=1), last_query_at=utcnow() - timedelta(minutes=1))
        claimed = reconciliation.claim_due_queries(limit=10, per_paybill=10)
        assert claimed == [(shop.paybill.id, initiation.checkout_request_id)]
        assert reconciliation.claim_due_queries(limit=10, per_paybill=10) == []  # claimed once
        gaps.append(round(_seconds_until(_fresh(initiation).next_query_at) / 60))
    assert gaps == [5, 30, 60, 60, 60]
    assert _fresh(initiation).late_query_count == 5

    # A day after the push: no more late queries, even one that is due; then it is given up.
    _set(initiation, created_at=utcnow() - timedelta(hours=24, minutes=1), next_query_at=utcnow(),
         last_query_at=utcnow() - timedelta(hours=1))
    assert reconciliation.claim_due_queries(limit=10, per_paybill=10) == []
    assert reconciliation.give_up_late_queries() == 1
    assert reconciliation.give_up_late_queries() == 0
    given_up = _fresh(initiation)
    assert given_up.query_given_up_at is not None and given_up.next_query_at is None
    assert given_up.status == "expired" and _fresh(initiation).late_query_count == 5


def test_never_asked_initiations_are_claimed_before_late_queries(app, shop):
    late, fresh = _waiting(shop, 2, ago_s=app.config["PORTAL_STK_EXPIRY_S"] + 10)
    _set(late, status="expired", next_query_at=utcnow() - timedelta(seconds=1))
    _set(fresh, created_at=utcnow() - timedelta(seconds=app.config["PORTAL_RECONCILE_AFTER_S"] + 5))

    assert reconciliation.claim_due_queries(limit=10, per_paybill=1) == [(shop.paybill.id, fresh.checkout_request_id)]
    assert reconciliation.claim_due_queries(limit=10, per_paybill=1) == [(shop.paybill.id, late.checkout_request_id)]


def test_the_owners_ask_button_on_an_expired_given_up_initiation_records_the_money(
    app, shop, customer, daraja, router_box, worker
):
    daraja.set_outcome(LOST_CALLBACK_PHONE, 0, send_callback=False)
    purchase = _buy(customer, shop, phone=LOST_CALLBACK_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    wait_until(lambda: daraja.push_status(checkout_id)["is_completed"], timeout=5)
    _set(_initiation(purchase), created_at=utcnow() - timedelta(hours=25))
    assert reconciliation.expire_unpaid_initiations() == 1
    assert reconciliation.give_up_late_queries() == 1
    assert customer.status(purchase)["status"] == "expired"

    outcome = problems.query_initiation_now(shop.owner, _initiation(purchase).id, reason="customer showed the SMS")

    assert outcome == "settled"
    assert (_initiation(purchase).status, _payment(purchase).status) == ("completed", "paid")
    assert customer.wait_for(purchase, ("active",), timeout=20)["status"] == "active"
    with pytest.raises(problems.AlreadyHandled):
        problems.query_initiation_now(shop.owner, _initiation(purchase).id, reason="again")
    assert daraja.query_calls[checkout_id] == 1 and _count(Activation) == 1


def test_the_problems_page_shows_expired_initiations_still_asked_and_given_up_this_week(app, shop, signed_in):
    asking, given_up, long_ago = _waiting(shop, 3, ago_s=3600)
    _set(asking, status="expired", next_query_at=utcnow() + timedelta(minutes=30), late_query_count=2)
    _set(given_up, status="expired", created_at=utcnow() - timedelta(days=3),
         query_given_up_at=utcnow() - timedelta(days=2))
    _set(long_ago, status="expired", created_at=utcnow() - timedelta(days=9),
         query_given_up_at=utcnow() - timedelta(days=8))

    found = problems.list_problems(shop.owner)
    assert {i.id for i in found.stuck_initiations} == {asking.id, given_up.id}
    assert problems.problems_count(shop.owner) == 2
    _, b = signed_in(shop.owner)
    page = b.get("/dashboard/problems").text
    assert "expired, still asking M-Pesa: next try" in page and "2 late queries" in page
    assert "M-Pesa never gave a final answer in 24 h — check your M-Pesa statement" in page
    assert asking.checkout_request_id in page and given_up.checkout_request_id in page
    assert long_ago.checkout_request_id not in page


@pytest.mark.parametrize("raw", ["60,five", "60,,300", "0", "-60"])
def test_a_junk_late_query_backoff_stops_start_up(tmp_path, monkeypatch, raw):
    from portal.core.config import ConfigError, load_settings

    monkeypatch.setenv("PORTAL_LATE_QUERY_BACKOFF_S", raw)
    with pytest.raises(ConfigError, match="PORTAL_LATE_QUERY_BACKOFF_S"):
        load_settings(str(tmp_path))


def test_the_late_query_settings_default_to_minutes_then_hourly_for_a_day(tmp_path, monkeypatch):
    from portal.core.config import load_settings

    monkeypatch.delenv("PORTAL_LATE_QUERY_BACKOFF_S", raising=False)
    monkeypatch.delenv("PORTAL_LATE_QUERY_GIVE_UP_S", raising=False)
    settings = load_settings(str(tmp_path))
    assert settings["PORTAL_LATE_QUERY_BACKOFF_S"] == (60, 300, 1800, 3600)
    assert settings["PORTAL_LATE_QUERY_GIVE_UP_S"] == 86400
    monkeypatch.setenv("PORTAL_LATE_QUERY_BACKOFF_S", " 5, 10 ")
    assert load_settings(str(tmp_path))["PORTAL_LATE_QUERY_BACKOFF_S"] == (5, 10)

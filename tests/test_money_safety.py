"""Money is never lost: duplicates, races, silent callbacks, late successes, router and Daraja faults."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import activations
from portal.models import Activation, Payment, StkInitiation, Voucher, WebhookLog, utcnow
from portal.money import reconciliation, webhook_log

from .conftest import wait_until
from .test_purchase_flow import HOTSPOT, _buy, _count, _initiation, _payment, _post_callback, _success_body

SILENT_PHONE = "0700 099 999"  # the sandbox never calls back for this number


def _age_initiation(purchase: str, seconds: int) -> None:
    """Move an initiation into the past instead of sleeping through real minutes."""
    initiation = _initiation(purchase)
    db.session.execute(
        sa.update(StkInitiation)
        .where(StkInitiation.id == initiation.id)
        .values(created_at=utcnow() - timedelta(seconds=seconds))
    )
    db.session.commit()


def test_twenty_concurrent_identical_callbacks_record_one_payment(app, shop, customer, daraja, router_box, worker):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    body = _success_body(checkout_id, receipt="RACE000001")
    token = shop.paybill.webhook_token
    barrier = threading.Barrier(20)

    def deliver(_: int) -> int:
        barrier.wait()
        return _post_callback(app, token, body).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(deliver, range(20)))

    assert codes == [200] * 20
    code = customer.wait_for(purchase, ("active",))["voucher"]
    assert _count(Payment, Payment.status == "paid") == 1
    assert _count(Activation) == 1
    assert list(router_box.users) == [code]
    assert _count(WebhookLog) == 20
    assert _count(WebhookLog, WebhookLog.status == "processed") == 20


def test_callback_racing_c2b_for_the_same_receipt_records_one_payment(app, shop, customer, daraja, router_box, worker):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    payment = _payment(purchase)
    checkout_id = _initiation(purchase).checkout_request_id
    token, code = shop.paybill.webhook_token, payment.voucher.code
    barrier = threading.Barrier(2)

    def callback() -> None:
        barrier.wait()
        _post_callback(app, token, _success_body(checkout_id, receipt="RACE000002"))

    def c2b() -> None:
        barrier.wait()
        daraja.simulate_c2b("174379", 10, code, trans_id="RACE000002")

    for _ in range(3):  # several rounds: the second and third are pure duplicates
        threads = [threading.Thread(target=callback), threading.Thread(target=c2b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    customer.wait_for(purchase, ("active",))
    assert _count(Payment) == 1 and _count(Payment, Payment.receipt == "RACE000002") == 1
    assert _count(Activation) == 1
    assert list(router_box.users) == [code]


def test_a_callback_that_never_comes_is_found_by_reconciliation(shop, customer, daraja, router_box, worker):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    daraja.set_outcome(checkout_id, 0, send_callback=False)
    wait_until(lambda: daraja.push_status(checkout_id)["is_completed"], timeout=5)  # paid; callback lost
    _age_initiation(purchase, 40)

    counts = reconciliation.reconcile_stuck_initiations()

    assert counts["settled"] == 1
    body = customer.wait_for(purchase, ("active",))
    assert body["status"] == "active"
    payment = _payment(purchase)
    assert payment.status == "paid" and payment.source == "query" and payment.receipt is None
    assert daraja.query_calls[checkout_id] == 1


def test_still_processing_twice_then_success_activates_once(shop, customer, daraja, router_box, worker):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    daraja.set_outcome(checkout_id, 0, send_callback=False, pending_queries=2)
    wait_until(lambda: daraja.push_status(checkout_id)["is_completed"], timeout=5)

    for expected in ("pending", "pending", "settled"):
        _age_initiation(purchase, 40)
        db.session.execute(sa.update(StkInitiation).values(last_query_at=None))
        db.session.commit()
        counts = reconciliation.reconcile_stuck_initiations()
        assert counts[expected] == 1, (expected, counts)

    # ...and the late callback, when it finally comes, is a duplicate.
    daraja.send_callback(checkout_id)
    customer.wait_for(purchase, ("active",))
    assert _count(Payment, Payment.status == "paid") == 1 and _count(Activation) == 1
    assert len(router_box.users) == 1
    assert _payment(purchase).receipt  # the callback filled in the receipt the query could not give


def test_a_success_after_the_initiation_expired_is_honoured(app, shop, customer, daraja, router_box, worker):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    _age_initiation(purchase, app.config["PORTAL_STK_EXPIRY_S"] + 5)
    assert reconciliation.expire_unpaid_initiations() == 1
    assert customer.status(purchase)["status"] == "expired"

    _post_callback(app, shop.paybill.webhook_token, _success_body(checkout_id, receipt="LATE000001"))

    body = customer.wait_for(purchase, ("active",))
    assert body["status"] == "active" and body["voucher"] in router_box.users


def test_a_failure_never_downgrades_a_success(app, shop, customer, daraja, worker):
    purchase = _buy(customer, shop)
    customer.wait_for(purchase, ("active",))
    checkout_id = _initiation(purchase).checkout_request_id
    failure = {"Body": {"stkCallback": {"MerchantRequestID": "x", "CheckoutRequestID": checkout_id,
                                        "ResultCode": 1032, "ResultDesc": "Request cancelled by user"}}}

    _post_callback(app, shop.paybill.webhook_token, failure)

    assert _payment(purchase).status == "paid" and _initiation(purchase).status == "completed"
    assert customer.status(purchase)["status"] == "active"


def test_router_down_then_back_activates_without_a_manual_step(shop, customer, daraja, router_box, worker):
    router_box.refuse_connections(True)
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation, Activation.status == "failed"), timeout=10)
    activation = db.session.scalars(sa.select(Activation)).one()
    assert activation.last_error and "Unreachable" in activation.last_error
    assert customer.status(purchase)["status"] == "paid"  # money in; the customer sees progress

    router_box.refuse_connections(False)
    body = customer.wait_for(purchase, ("active",), timeout=20)

    assert body["status"] == "active" and body["voucher"] in router_box.users
    assert _count(Activation, Activation.status == "done") == 1


def test_connection_dropped_mid_command_is_retried_and_done_once(shop, customer, daraja, router_box, worker):
    # Warm the connection, then drop it on the next command.
    purchase = _buy(customer, shop)
    customer.wait_for(purchase, ("active",))
    router_box.drop_connections_on_next_command(1)

    second = _buy(customer, shop, phone="0712 000 111")
    body = customer.wait_for(second, ("active",), timeout=20)

    assert body["status"] == "active"
    assert len(router_box.users) == 2
    assert _count(Activation, Activation.status == "done") == 2


def test_activation_claims_are_exclusive(app, shop, customer, daraja, router_box):
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation), timeout=5)

    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda _: _claim_in_context(app), range(4)))

    assert sorted(len(c) for c in claims) == [0, 0, 0, 1]
    assert activations.run_activation(next(c for c in claims if c)[0])
    assert customer.status(purchase)["status"] == "active"


def _claim_in_context(app) -> list[int]:  # type: ignore[no-untyped-def]
    with app.app_context():
        try:
            return activations.claim_due_activations(worker_id=threading.current_thread().name)
        finally:
            db.session.remove()


def test_an_abandoned_claim_is_picked_up_after_its_lease(app, shop, customer, daraja, router_box):
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation), timeout=5)
    assert activations.claim_due_activations(worker_id="dead-worker")
    assert activations.claim_due_activations(worker_id="other") == []  # lease still held

    db.session.execute(sa.update(Activation).values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    assert activations.run_due_activations() == 1
    assert customer.status(purchase)["status"] == "active"
    assert db.session.scalars(sa.select(Activation)).one().attempts == 2


def test_retry_delays_grow_and_are_capped():
    delays = [activations.retry_delay(n) for n in range(1, 20)]
    assert delays[0] <= 2.0
    assert max(delays) <= activations.RETRY_CAP_S
    assert activations.retry_delay(12) >= activations.RETRY_CAP_S * 0.5


def test_webhook_that_hit_a_database_error_is_reprocessed(app, shop, customer, daraja, worker, monkeypatch):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    real = webhook_log.settlement.record_stk_result
    calls = {"n": 0}

    def locked_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise sa.exc.OperationalError("UPDATE payments", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(webhook_log.settlement, "record_stk_result", locked_once)
    answer = _post_callback(app, shop.paybill.webhook_token, _success_body(checkout_id, receipt="RETRY00001"))

    assert answer.status_code == 200 and answer.json()["ResultCode"] == 0
    entry = db.session.scalars(sa.select(WebhookLog)).one()
    assert entry.status == "failed" and "locked" in entry.error
    assert _payment(purchase).status == "pending"

    assert entry.next_try_at is not None  # the retry waits a little; here its time has come
    db.session.execute(sa.update(WebhookLog).where(WebhookLog.id == entry.id).values(next_try_at=utcnow()))
    db.session.commit()
    counts = webhook_log.reprocess_failed(older_than=timedelta(0))

    assert counts == {"retried": 1, "processed": 1, "still_failed": 0, "gave_up": 0}
    db.session.expire_all()
    assert db.session.get(WebhookLog, entry.id).status == "processed"
    assert customer.wait_for(purchase, ("active",))["status"] == "active"


def test_old_webhook_logs_are_purged(app, shop):
    webhook_log.store_raw("stk_callback", b"{}", remote_addr="127.0.0.1", paybill_id=None)
    old = webhook_log.store_raw("stk_callback", b"{}", remote_addr="127.0.0.1", paybill_id=None)
    db.session.execute(sa.update(WebhookLog).where(WebhookLog.id == old.id).values(received_at=utcnow() - timedelta(days=91)))
    db.session.commit()

    assert webhook_log.purge_old() == 1
    assert _count(WebhookLog) == 1


def test_spent_wall_clock_vouchers_are_removed_from_the_router(shop, customer, daraja, router_box, worker):
    purchase = _buy(customer, shop)
    code = customer.wait_for(purchase, ("active",))["voucher"]
    assert wait_until(lambda: any(s["user"] == code for s in router_box.active.values()))  # the device login follows the activation
    db.session.execute(sa.update(Voucher).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    assert reconciliation.expire_spent_vouchers() == 1

    wait_until(lambda: code not in router_box.users, timeout=10)
    assert code not in router_box.users
    assert not any(s["user"] == code for s in router_box.active.values())
    assert _payment(purchase).voucher.status == "expired"


def test_healthz_reports_database_and_backlog(app, shop, customer, daraja):
    _buy(customer, shop, phone=SILENT_PHONE)
    response = requests.get(f"{app.live_url}/healthz", timeout=5)
    body = response.json()
    assert response.status_code == 200 and body["database"] == "ok"
    assert body["stuck_initiations"] == 0 and "jobs" in body


@pytest.fixture
def unreachable_db_app(tmp_path):  # type: ignore[no-untyped-def]
    from .conftest import build_app

    return build_app("postgresql://nobody@127.0.0.1:1/none", "http://127.0.0.1:1")


def test_healthz_is_503_when_the_database_is_unreachable(unreachable_db_app):
    response = unreachable_db_app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["database"] == "unreachable"


def test_connected_time_vouchers_expire_when_the_router_has_counted_them_down(shop, make_plan, customer, daraja, router_box, worker):
    from portal.models import Plan

    connected = make_plan(shop.owner, name="2 Hours online", price=20, duration_s=7200, validity_mode="connected_time")
    db.session.execute(sa.update(Plan).where(Plan.id == shop.plan.id).values(is_active=False))
    db.session.commit()
    bought = [customer.buy(shop.router.slug, connected.id, phone, **HOTSPOT) for phone in ("0712 345 678", "0711 222 333")]
    used_up, still_good = (
        customer.wait_for(b.headers["Location"].replace(customer.base, ""), ("active",))["voucher"] for b in bought
    )
    assert _payment_for(used_up).voucher.plan_id == connected.id and _payment_for(used_up).voucher.expires_at is None
    router_box.users[used_up]["uptime"] = "2h"  # the router counted the whole allowance
    router_box.users[still_good]["uptime"] = "1h59m"

    counts = reconciliation.expire_used_up_vouchers()

    assert counts == {"routers": 1, "expired": 1, "unreachable": 0, "started": 0}
    wait_until(lambda: used_up not in router_box.users, timeout=10)
    assert used_up not in router_box.users and still_good in router_box.users
    assert _payment_for(used_up).voucher.status == "expired"
    assert _payment_for(still_good).voucher.status == "active"


def test_usage_check_skips_a_router_that_is_down(shop, customer, daraja, router_box, worker):
    customer.wait_for(_buy(customer, shop), ("active",))  # the plan has a data limit
    router_box.refuse_connections(True)

    assert reconciliation.expire_used_up_vouchers() == {"routers": 0, "expired": 0, "unreachable": 1, "started": 0}


def _payment_for(code: str) -> Payment:
    db.session.expire_all()
    return db.session.scalars(sa.select(Payment).join(Voucher, Payment.voucher_id == Voucher.id).where(Voucher.code == code)).one()


def test_each_job_records_its_run_for_health(app, shop):
    from portal.jobs import JOBS, record_run
    from portal.models import JobRun

    for name, (func, _) in JOBS.items():
        record_run(name, func)
    record_run("broken_job", lambda: 1 / 0)

    runs = {r.name: r for r in db.session.scalars(sa.select(JobRun))}
    assert set(runs) == set(JOBS) | {"broken_job"}
    assert all(runs[n].last_status == "ok" and runs[n].duration_ms is not None for n in JOBS)
    assert runs["broken_job"].last_status == "error" and "ZeroDivisionError" in runs["broken_job"].last_error
    health = requests.get(f"{app.live_url}/healthz", timeout=5).json()
    assert health["jobs"]["broken_job"]["last_status"] == "error"


def test_a_router_that_refuses_our_login_is_marked_and_the_payment_waits(shop, customer, daraja, router_box, worker):
    from portal.models import Router

    router_box.set_password("changed-by-the-owner")
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation, Activation.status == "failed"), timeout=10)

    db.session.expire_all()
    router = db.session.get(Router, shop.router.id)
    assert router.login_refused_at is not None and "invalid user name or password" in router.last_error
    assert customer.status(purchase)["status"] == "paid"

    router.api_password = "changed-by-the-owner"  # the owner fixes the credentials
    db.session.commit()
    db.session.execute(sa.update(Activation).values(next_attempt_at=utcnow()))
    db.session.commit()
    worker.wake()
    assert customer.wait_for(purchase, ("active",))["status"] == "active"
    db.session.expire_all()
    assert db.session.get(Router, shop.router.id).login_refused_at is None


def test_reconciliation_queries_paybills_in_parallel_within_each_rate_limit(app, make_owner, make_paybill, make_router, make_plan, customer, daraja, worker):
    """Three paybills with slow answers: the run takes about one paybill's share, not the sum.

    Each owner has a Daraja app of their own, as in production: tokens are shared only within an
    owner, so three owners on one app would knock each other's tokens out (Daraja keeps one per app).
    """
    shops = []
    for n in range(3):
        owner = make_owner()
        daraja.add_app(f"shop-{n}-app", f"shop-{n}-secret")
        make_paybill(owner, consumer_key=f"shop-{n}-app", consumer_secret=f"shop-{n}-secret")
        router = make_router(owner, name=f"Shop {n}")
        shops.append((router.slug, make_plan(owner).id))
    phones = {(n, k): f"0711 30{n}{k} 00" for n in range(3) for k in range(2)}
    for phone in phones.values():  # paid, but the callback is lost
        daraja.set_outcome("254" + phone.replace(" ", "")[1:], 0, send_callback=False)
    purchases = [
        customer.buy(slug, plan_id, phones[n, k], **HOTSPOT).headers["Location"].replace(customer.base, "")
        for n, (slug, plan_id) in enumerate(shops) for k in range(2)
    ]
    for purchase in purchases:
        wait_until(lambda p=purchase: daraja.push_status(_initiation(p).checkout_request_id)["is_completed"], timeout=5)
        _age_initiation(purchase, 40)
    rate = reconciliation.PerPaybillRate(2.0)  # 2 queries/s per paybill

    started = time.monotonic()
    counts = reconciliation.reconcile_stuck_initiations(rate=rate)
    elapsed = time.monotonic() - started

    statuses = [(i.paybill_id, i.status, i.query_count) for i in db.session.scalars(sa.select(StkInitiation))]
    assert counts["queried"] == 6 and counts["settled"] == 6, (counts, statuses)
    assert elapsed < 2.0  # in series at 2/s per paybill it would take 2.5 s
    assert all(n == 1 for n in daraja.query_calls.values())  # no duplicate query


def test_a_success_for_a_voucher_already_queued_by_hand_is_still_recorded(app, shop, customer, daraja, worker):
    from portal.hotspot import activations as outbox

    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    payment = _payment(purchase)
    outbox.queue_activation(voucher_id=payment.voucher_id, router_id=shop.router.id, device_mac=None, device_ip=None)
    db.session.commit()  # an activation exists already (e.g. an owner's manual action)

    _post_callback(app, shop.paybill.webhook_token, _success_body(_initiation(purchase).checkout_request_id, receipt="QUEUED0001"))

    paid = _payment(purchase)
    assert paid.status == "paid" and paid.receipt == "QUEUED0001"
    assert _count(Activation) == 1


def test_a_receipt_arriving_after_a_manual_settlement_is_a_second_payment(app, shop, customer, daraja, worker):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    payment = _payment(purchase)
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(status="paid", source="manual", amount=10))
    db.session.commit()

    _post_callback(app, shop.paybill.webhook_token, _success_body(_initiation(purchase).checkout_request_id, receipt="LATEREAL01"))

    second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "LATEREAL01")).one()
    assert second.id != payment.id and second.status == "unmatched" and "second payment" in second.note


def test_a_printed_cash_voucher_starts_its_clock_at_first_use_not_when_printed(shop, router_box, worker):
    from portal.hotspot.voucher_batches import generate_batch

    generate_batch(shop.owner, plan_id=shop.plan.id, router_id=shop.router.id, count=2, note="cash sales")
    wait_until(lambda: len(router_box.users) == 2, timeout=10)
    wait_until(lambda: _count(Voucher, Voucher.status == "active") == 2, timeout=10)
    vouchers = db.session.scalars(sa.select(Voucher).order_by(Voucher.id)).all()
    assert all(v.expires_at is None for v in vouchers)  # in the drawer: no clock yet
    router_box.users[vouchers[0].code]["uptime"] = "10m"  # a customer has been online 10 minutes

    counts = reconciliation.expire_used_up_vouchers()

    assert counts["started"] == 1
    db.session.expire_all()
    used, unused = db.session.scalars(sa.select(Voucher).order_by(Voucher.id)).all()
    expected = utcnow() + timedelta(seconds=3600 - 600)
    assert abs((used.expires_at - expected).total_seconds()) < 5
    assert unused.expires_at is None

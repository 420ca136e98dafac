"""Issue 11 points 5 and 6: a cancel wins over a late activation, and the activation worker stays
responsive while one router is slow. The end-to-end cases run against two real `flask worker`
processes (PostgreSQL when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import activations
from portal.hotspot.voucher_batches import disable_voucher, generate_batch
from portal.models import Activation, Payment, Voucher, utcnow
from portal.sandbox.router import SandboxRouter

from .conftest import wait_until
from .test_money_holes import (  # noqa: F401 - the same fixtures as the other money-hole tests
    SILENT_PHONE,
    app_overrides,
    two_workers,
)
from .test_purchase_flow import _buy, _count, _initiation, _payment
from .test_worker_processes import start_worker, stop


def _reload(model: type, row_id: int) -> Any:
    db.session.expire_all()
    return db.session.get(model, row_id)


# ---------------------------------------------------------------------------------------------
# Point 5: disable and cancel win over a late activation


def test_money_that_arrives_after_the_voucher_was_cancelled_opens_nothing_and_is_the_owners(
    app, shop, customer, daraja, router_box, two_workers  # noqa: F811
):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)  # the prompt stays open: no callback yet
    payment = _payment(purchase)
    disable_voucher(shop.owner, payment.voucher_id, reason="customer asked for cash instead")

    daraja.set_outcome(_initiation(purchase).checkout_request_id, 0, delay_s=0.0)  # then the money comes

    settled = wait_until(lambda: _reload(Payment, payment.id).status != "pending" and _reload(Payment, payment.id),
                         timeout=15)
    assert settled.status == "unmatched" and settled.receipt, settled.status  # on the owner's Problems page
    assert "cancelled" in settled.note
    time.sleep(2.0)  # give the workers every chance to (wrongly) act on it
    assert _reload(Voucher, payment.voucher_id).status == "cancelled"
    assert router_box.users == {}
    assert _count(Activation, Activation.kind == "activate", Activation.status != "done") == 0


def test_a_cancel_while_the_activation_runs_ends_with_no_user_on_the_router(
    app, shop, customer, daraja, router_box, two_workers  # noqa: F811
):
    router_box.command_delay_s = 1.5  # the add is still on its way when the owner cancels
    purchase = _buy(customer, shop)
    activation_id = wait_until(lambda: db.session.scalar(
        sa.select(Activation.id).where(Activation.status == "running")), timeout=20)
    disable_voucher(shop.owner, _payment(purchase).voucher_id, reason="sold by mistake")

    def both_done() -> bool:
        db.session.expire_all()
        rows = db.session.scalars(sa.select(Activation)).all()
        return len(rows) == 2 and all(row.status == "done" for row in rows)

    assert wait_until(both_done, timeout=40)
    removal = db.session.scalars(sa.select(Activation).where(Activation.kind == "remove")).one()
    activation = _reload(Activation, activation_id)
    assert activation.done_at <= removal.done_at  # the removal never ran before the add ended
    assert router_box.users == {}


def test_the_claim_itself_refuses_an_activation_whose_voucher_was_cancelled(app, shop, customer, daraja, router_box):
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation), timeout=5)
    voucher_id = _payment(purchase).voucher_id
    # The cancel lands after the activation was queued and without closing it (the race).
    db.session.execute(sa.update(Voucher).where(Voucher.id == voucher_id).values(status="cancelled"))
    activations.queue_removal(db.session.get(Voucher, voucher_id))
    db.session.commit()

    claimed = activations.claim_due_activations(worker_id="w1")

    kinds = {db.session.get(Activation, i).kind for i in claimed}
    assert kinds == {"remove"}  # the activation was closed unrun, so the removal may go
    activation = db.session.scalars(sa.select(Activation).where(Activation.kind == "activate")).one()
    assert activation.status == "done" and "cancelled" in activation.last_error
    assert activations.run_due_activations() == 0 and router_box.users == {}


def test_a_removal_is_not_claimed_while_the_activation_is_unfinished(app, shop, customer, daraja, router_box):
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation), timeout=5)
    (activation_id,) = activations.claim_due_activations(worker_id="w1")  # running in "w1"
    voucher = db.session.get(Voucher, _payment(purchase).voucher_id)
    activations.queue_removal(voucher)
    db.session.commit()

    assert activations.claim_due_activations(worker_id="w2") == []  # the removal waits
    assert activations.run_activation(activation_id, worker_id="w1")
    assert len(activations.claim_due_activations(worker_id="w2")) == 1


# ---------------------------------------------------------------------------------------------
# Point 6: leases are checked, and a slow router holds only a few threads


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_new_holders_result(app, shop, customer, daraja, router_box):
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation), timeout=5)
    (activation_id,) = activations.claim_due_activations(worker_id="stale")
    stale_work, _conn = activations._load_work(activation_id, "stale")
    db.session.execute(sa.update(Activation).values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert activations.claim_due_activations(worker_id="fresh") == [activation_id]

    assert activations._record_success(stale_work) is False  # the stale worker's word counts for nothing
    activations._record_failure(stale_work, RuntimeError("late timeout"))
    row = _reload(Activation, activation_id)
    assert (row.status, row.claimed_by, row.attempts) == ("running", "fresh", 2)
    assert activations.run_activation(activation_id, worker_id="stale") is False  # not its row any more
    assert activations.run_activation(activation_id, worker_id="fresh")
    assert customer.status(purchase)["status"] == "active"


def test_a_live_worker_renews_the_lease_of_a_slow_router_call(app, shop, customer, daraja, router_box):
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation), timeout=5)
    (activation_id,) = activations.claim_due_activations(worker_id="slow")
    before = _reload(Activation, activation_id).lease_until
    time.sleep(0.05)
    assert activations.renew_leases([activation_id], "slow") == 1
    assert activations.renew_leases([activation_id], "someone-else") == 0
    assert _reload(Activation, activation_id).lease_until > before
    assert activations.claim_due_activations(worker_id="other") == []
    assert customer.status(purchase)["status"] != "active"


def test_claims_take_at_most_a_few_rows_of_one_router(app, shop, make_router, make_plan, router_box):
    other_box = SandboxRouter().start()
    try:
        other = make_router(shop.owner, name="Second shop", box=other_box)
        generate_batch(shop.owner, plan_id=shop.plan.id, router_id=shop.router.id, count=20)
        generate_batch(shop.owner, plan_id=shop.plan.id, router_id=other.id, count=1)
        db.session.commit()

        claimed = activations.claim_due(8, worker_id="w", per_router=2, busy_routers={shop.router.id: 1})

        by_router = [c.router_id for c in claimed]
        assert sorted(by_router) == sorted([shop.router.id, other.id])  # one more of the big batch, and the other's
    finally:
        other_box.stop()


def test_customers_of_healthy_routers_go_online_while_one_router_crawls(
    app, shop, customer, daraja, router_box, make_router, make_plan, tmp_path
):
    crawling = SandboxRouter().start()
    crawling.command_delay_s = 3.0  # every command takes 3 s: a router on a bad link
    workers = []
    try:
        slow = make_router(shop.owner, name="Far shop", box=crawling)
        generate_batch(shop.owner, plan_id=shop.plan.id, router_id=slow.id, count=40)  # a big cash batch
        db.session.commit()
        workers = [start_worker(app, tmp_path / f"w{i}.log") for i in range(2)]
        wait_until(lambda: _count(Activation, Activation.status == "running"), timeout=20)

        started = time.monotonic()
        purchase = _buy(customer, shop)  # on the healthy router
        body = customer.wait_for(purchase, ("active",), timeout=20)
        online_after = time.monotonic() - started
    finally:
        for w in workers:
            stop(w)
        crawling.stop()
    assert body["status"] == "active"
    assert online_after < 8.0, online_after
    assert list(router_box.users) == [body["voucher"]]

"""Real `flask worker` processes against one database: a killed worker, and two workers under traffic."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Activation, JobRun, Payment, Voucher, WebhookLog

from .conftest import TEST_FERNET_KEY, wait_until
from .test_purchase_flow import _buy, _count, _initiation

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app_overrides():  # type: ignore[no-untyped-def]
    # The soak pushes to the same test numbers many times a minute on purpose; customer rate
    # limits (one push per phone per minute) are tested elsewhere.
    return {"PORTAL_RATE_LIMITS_ENABLED": False}


def start_worker(app: Any, log_path: Path, **env: str) -> subprocess.Popen:
    environment = dict(
        os.environ,
        DATABASE_URL=app.config["DATABASE_URL"],
        SECRET_KEY="test-secret-key",
        PORTAL_ENCRYPTION_KEYS=TEST_FERNET_KEY,
        DARAJA_BASE_URL=app.config["DARAJA_BASE_URL"],
        PORTAL_BASE_URL=app.live_url,
        PORTAL_JOB_TICK_S="1",
        PORTAL_ACTIVATION_LEASE_S="3",
        PORTAL_RECONCILE_AFTER_S="2",
        PORTAL_STK_EXPIRY_S="120",
        PORTAL_ROUTER_COMMAND_TIMEOUT_S="20",
        PORTAL_DARAJA_TIMEOUT_S="3",
    )
    environment.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=ROOT,
        env=environment,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_worker_killed_after_claiming_leaves_work_a_second_worker_completes(app, shop, customer, daraja, router_box, tmp_path):
    router_box.command_delay_s = 30.0  # the first worker will hang inside its router command
    purchase = _buy(customer, shop)
    wait_until(lambda: _count(Activation), timeout=5)
    first = start_worker(app, tmp_path / "first.log")
    try:
        claimed = wait_until(lambda: _count(Activation, Activation.status == "running"), timeout=20)
        assert claimed, (tmp_path / "first.log").read_text()
        db.session.expire_all()
        assert db.session.scalars(sa.select(Activation)).one().claimed_by.endswith(f":{first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    router_box.command_delay_s = 0.0

    second = start_worker(app, tmp_path / "second.log")
    try:
        body = customer.wait_for(purchase, ("active",), timeout=30)
    finally:
        stop(second)

    assert body["status"] == "active", (tmp_path / "second.log").read_text()[-3000:]
    activation = db.session.scalars(sa.select(Activation)).one()
    assert activation.status == "done" and activation.attempts == 2
    assert activation.claimed_by.endswith(f":{second.pid}")
    assert list(router_box.users) == [body["voucher"]]


def test_two_workers_under_simulated_traffic_activate_every_paid_voucher_exactly_once(
    app, shop, customer, daraja, router_box, tmp_path, make_plan
):
    """Two workers run every job for a minute (PostgreSQL; shorter on SQLite) while purchases,
    duplicate callbacks, silent callbacks, C2B duplicates and failures arrive."""
    seconds = float(os.environ.get("PORTAL_SOAK_S") or (60 if db.engine.dialect.name == "postgresql" else 15))
    day = make_plan(shop.owner, name="1 Day", price=50, duration_s=86400)
    workers = [start_worker(app, tmp_path / f"w{i}.log") for i in range(2)]
    rng = random.Random(7)
    purchases: list[str] = []
    started = time.monotonic()
    try:
        n = 0
        while time.monotonic() - started < seconds:
            n += 1
            purchases.append(_traffic_step(app, shop, customer, daraja, rng, n, day))
            time.sleep(0.25)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not _settled(purchases):
            time.sleep(0.5)
    finally:
        for w in workers:
            stop(w)
    logs = "\n".join((tmp_path / f"w{i}.log").read_text() for i in range(2))

    db.session.expire_all()
    paid = db.session.scalars(sa.select(Payment).where(Payment.status == "paid")).all()
    statuses = {p.status for p in db.session.scalars(sa.select(Payment))}
    by_status = {s: _count(Payment, Payment.status == s) for s in statuses}
    assert len(paid) >= len(purchases) // 2, (len(purchases), by_status)  # traffic really happened
    assert _count(Payment, Payment.status == "pending") == 0, by_status
    for payment in paid:
        assert payment.voucher.status == "active", (payment.id, payment.voucher.status)
    active_codes = set(db.session.scalars(sa.select(Voucher.code).where(Voucher.status == "active")))
    assert set(router_box.users) == active_codes
    assert _count(Activation) == len(active_codes)
    assert _count(Activation, Activation.status != "done") == 0
    assert _count(WebhookLog, WebhookLog.status.in_(("failed", "received"))) == 0
    assert {run.last_status for run in db.session.scalars(sa.select(JobRun))} == {"ok"}
    assert "Traceback" not in logs, logs[-5000:]


def _traffic_step(app, shop, customer, daraja, rng, n, day) -> str:  # type: ignore[no-untyped-def]
    roll = rng.random()
    plan = day if n % 5 == 0 else shop.plan
    phone = f"0711{n:06d}"
    if roll < 0.15:
        phone = "0700 099 999"  # silent: settled by reconciliation, or by a C2B payment below
    elif roll < 0.22:
        phone = "0700 001 032"  # cancelled
    response = customer.buy(shop.router.slug, plan.id, phone)
    purchase = response.headers["Location"].replace(customer.base, "")
    initiation = _initiation(purchase)
    if phone == "0700 099 999":
        if rng.random() < 0.5:
            daraja.set_outcome(initiation.checkout_request_id, 0, send_callback=False)
        else:
            daraja.simulate_c2b("174379", plan.price, initiation.account_reference, trans_id=f"SOAK{n:06d}")
    elif rng.random() < 0.3:
        time.sleep(0.3)
        daraja.send_callback(initiation.checkout_request_id)  # a duplicate delivery
    return purchase


def _settled(purchases: list[str]) -> bool:
    db.session.expire_all()
    pending = _count(Payment, Payment.status == "pending")
    waiting = _count(Voucher, Voucher.status == "paid")
    return pending == 0 and waiting == 0 and bool(purchases)


"""Issue 14 point 6: the overview's numbers mean what they say, checked against a sandbox router
holding known live sessions, a real purchase through the sandbox Daraja, and recorded job runs."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from portal.core.extensions import db
from portal.jobs import record_run
from portal.models import JobRun, Payment, Voucher, WebhookLog, utcnow
from portal.owners import online, reports
from portal.sandbox.router import SandboxRouter

from .conftest import wait_until


def _log_in(box: SandboxRouter, user: str, mac: str, ip: str) -> None:
    box.users[user] = {".id": f"*U{len(box.users) + 1}", "name": user, "password": user, "profile": "default"}
    box.add_host(mac, ip)
    box.log_in_host(user=user, password_matches=lambda p: True, ip=ip, mac=mac, login_by="http-chap")


def test_customers_online_now_are_the_routers_live_sessions_not_active_vouchers(app, shop, router_box, make_router):
    second_box = SandboxRouter().start()
    try:
        second = make_router(shop.owner, name="Second shop", box=second_box)
        _log_in(router_box, "CUSTOMER1", "AA:00:00:00:00:01", "10.5.50.31")
        _log_in(second_box, "CUSTOMER2", "AA:00:00:00:00:02", "10.5.50.32")
        _log_in(second_box, "CUSTOMER3", "AA:00:00:00:00:03", "10.5.50.33")
        # Twenty printed vouchers "active" on the router but in a drawer: not customers.
        for i in range(20):
            db.session.add(Voucher(code=f"UNSOLD{i:04d}", owner_id=shop.owner.id, plan_id=shop.plan.id,
                                   router_id=second.id, status="active", source="batch"))
        db.session.commit()
        online.forget_answers()

        now = reports.build_overview(shop.owner).online_now

        assert now.customers == 3
        assert {(r.name, r.sessions) for r in now.routers} == {("Mama Njeri Cafe", 1), ("Second shop", 2)}

        # Cached a few seconds: a session that ends now shows after the cache lapses, not before.
        second_box.log_out_mac("AA:00:00:00:00:03")
        asked = second_box.count_commands("/ip/hotspot/active/print")
        assert reports.build_overview(shop.owner).online_now.customers == 3
        assert second_box.count_commands("/ip/hotspot/active/print") == asked
        online.forget_answers()
        assert reports.build_overview(shop.owner).online_now.customers == 2

        # A router that went away is named, and the others still count.
        second_box.refuse_connections(True)
        online.forget_answers()
        now = reports.build_overview(shop.owner).online_now
        assert now.customers == 1 and [r.name for r in now.silent] == ["Second shop"]
    finally:
        second_box.stop()


def test_online_now_on_the_page_and_per_owner(app, shop, router_box, make_owner, make_router, signed_in):
    _log_in(router_box, "CUSTOMER9", "AA:00:00:00:00:09", "10.5.50.39")
    other = make_owner()
    make_router(other, name="Not yours")  # same sandbox box: its session must not count for shop.owner twice
    online.forget_answers()
    _, browser = signed_in(shop.owner)

    page = browser.get("/dashboard/overview").text

    tile = page.split('id="online-now"', 1)[1].split("</div>", 1)[0]
    assert "<strong>1</strong>" in tile and "live from the router" in tile


def test_a_silent_router_costs_the_page_at_most_the_budget(app, shop, router_box):
    router_box.command_delay_s = 3.0
    online.forget_answers()
    started = time.monotonic()

    now = online.online_now(shop.owner, budget_s=0.5)

    assert time.monotonic() - started < 1.5
    assert now.silent and now.silent[0].error == "not answered yet"


def test_paid_to_router_runs_from_the_callbacks_arrival_to_the_routers_login(app, shop, router_box, customer, worker):
    router_box.command_delay_s = 0.25  # each router command takes a quarter second
    online.forget_answers()
    bought = customer.buy(shop.router.slug, shop.plan.id, "0712345678", mac="AA:BB:CC:DD:EE:01", ip="10.5.50.23")
    assert customer.wait_for(bought.headers["Location"], ("active",), timeout=20)["status"] == "active"
    payment = db.session.scalars(sa.select(Payment).where(Payment.status == "paid")).one()
    callback = db.session.scalars(sa.select(WebhookLog).where(WebhookLog.kind == "stk_callback")).one()
    voucher = db.session.get(Voucher, payment.voucher_id)
    # The router logs the device in too, right after the voucher counts as active.
    assert wait_until(lambda: (router_box.session_for_mac("AA:BB:CC:DD:EE:01") or {}).get("user") == voucher.code)

    median = reports.build_overview(shop.owner).median_paid_to_router_s

    # The start is stamped while that callback is processed (within its request, right after it
    # was stored); the end when the router took the voucher (the device login follows it).
    assert callback.received_at <= voucher.paid_at < callback.received_at + timedelta(seconds=2)
    assert median == (voucher.activated_at - voucher.paid_at).total_seconds()
    assert median >= 0.5  # profile and user on a slow router: several quarter-second commands


def test_the_jobs_warning_only_for_jobs_really_overdue(app, shop, signed_in):
    _, browser = signed_in(shop.owner)
    # Nothing ever ran: no worker, every job overdue.
    assert "Is <code>flask worker</code> running" in browser.get("/dashboard/overview").text

    for name in app.extensions["portal_job_intervals"]:
        if name != "purge_webhook_logs":  # six-hourly: its first turn is hours away
            record_run(name, lambda: {"queried": 2, "settled": 1, "pending": 0, "errors": 0})
    page = browser.get("/dashboard/overview").text
    assert "Is <code>flask worker</code> running" not in page
    assert "2 asked M-Pesa, 1 settled" in page and "{&#34;" not in page and '{"' not in page

    # The ten-second job last ran 10 minutes ago while the others keep running: only it is overdue.
    stale = utcnow() - timedelta(minutes=10)
    db.session.execute(sa.update(JobRun).where(JobRun.name == "reconcile_initiations").values(last_finished_at=stale))
    db.session.commit()
    page = browser.get("/dashboard/overview").text
    warning = page.split('id="jobs-overdue"', 1)[1].split("</p>", 1)[0]
    assert warning.startswith(">reconcile initiations: overdue")


def test_job_results_read_as_words():
    words = reports.describe_job_result
    assert words("reconcile_initiations", '{"queried": 0, "pending": 0, "settled": 0, "errors": 0}') == "nothing to do"
    assert words("expire_initiations", "3") == "3 unanswered payment requests expired"
    assert words("expire_used_up_vouchers", '{"routers": 2, "expired": 1, "unreachable": 0, "started": 0}') == \
        "2 routers checked, 1 used up"
    assert words("refresh_tokens", '["Demo paybill: refreshed"]') == "Demo paybill: refreshed"
    assert words("reprocess_webhooks", '{"retried": 1, "processed": 1, "still_failed": 0}') == \
        "1 webhooks retried, 1 processed"

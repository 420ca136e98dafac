"""The money pages over real HTTP: overview, payments (filters, keyset pages, streamed CSV),
vouchers (batches, print sheet, disable) and logs, for an owner with data and with none."""

from __future__ import annotations

import csv
import io
import json
import secrets
import threading
import tracemalloc
from datetime import timedelta

import sqlalchemy as sa

from portal.core import database
from portal.core.database import use_autocommit_in_this_thread
from portal.core.extensions import db
from portal.models import Activation, AuditLog, Payment, Voucher, WebhookLog, utcnow
from portal.owners import payment_search

from .conftest import wait_until
from .dashboard_support import field_errors, flashes

PAGES = ["/dashboard/overview", "/dashboard/payments", "/dashboard/problems", "/dashboard/vouchers",
         "/dashboard/logs", "/dashboard/logs/audit"]


def seed_payments(shop, count: int, *, status: str = "paid", start=None, phone: str = "254712345678",  # type: ignore[no-untyped-def]
                  step=timedelta(seconds=1), router_id=None, owner_id=None) -> None:
    """Bulk insert, newest last; fast enough for 100,000 rows on SQLite."""
    start = start or utcnow() - step * count
    rows = [
        dict(public_id=secrets.token_hex(8), owner_id=owner_id or shop.owner.id, router_id=router_id or shop.router.id,
             paybill_id=shop.paybill.id, amount_expected=10, amount=10 if status == "paid" else None, phone=phone,
             status=status, source="stk", created_at=start + step * i, paid_at=start + step * i if status == "paid" else None)
        for i in range(count)
    ]
    # One real transaction (this thread otherwise autocommits each row on SQLite: far slower).
    was_autocommit = getattr(database._thread_state, "autocommit", False)
    use_autocommit_in_this_thread(False)
    try:
        with db.engine.begin() as conn:
            for i in range(0, count, 10_000):
                conn.execute(Payment.__table__.insert(), rows[i:i + 10_000])
    finally:
        use_autocommit_in_this_thread(was_autocommit)


def test_every_money_page_renders_for_an_owner_with_nothing(signed_in):
    _, b = signed_in()
    for path in PAGES:
        page = b.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        assert "<script>" not in page.text and "style=" not in page.text
    assert "No payments yet" in b.get("/dashboard/payments").text
    assert "Nothing needs you" in b.get("/dashboard/problems").text


def test_every_money_page_renders_with_data(app, shop, signed_in, daraja):
    seed_payments(shop, 30)
    seed_payments(shop, 5, status="failed")
    daraja.simulate_c2b("174379", 50, "NOSUCHCODE", trans_id="UNMATCH001")
    _, b = signed_in(shop.owner)
    overview = b.get("/dashboard/overview").text
    assert "KES 300" in overview and "<svg" in overview and "<rect" in overview
    payments = b.get("/dashboard/payments").text
    assert payments.count("<tr>") == 37  # header + 36 rows (30 paid, 5 failed, 1 unmatched)
    problems = b.get("/dashboard/problems").text
    assert "UNMATCH001" in problems and 'class="badge"' in problems
    logs = b.get("/dashboard/logs").text
    assert "c2b_confirmation" in logs
    for path in PAGES:
        assert b.get(path).status_code == 200


def test_owners_see_only_their_own_money(app, shop, signed_in, make_owner):
    seed_payments(shop, 3, phone="254711111111")
    _, stranger = signed_in()
    assert "254711111111" not in stranger.get("/dashboard/payments").text
    assert "KES 30" not in stranger.get("/dashboard/overview").text
    assert stranger.get("/dashboard/payments.csv").text.count("\n") == 1  # the header only


def test_payment_filters_normalise_the_phone_and_reject_bad_input_next_to_the_field(app, shop, signed_in):
    seed_payments(shop, 4, phone="254712345678")
    seed_payments(shop, 2, phone="254799000111")
    _, b = signed_in(shop.owner)

    page = b.get("/dashboard/payments", params={"phone": "0799 000 111"})
    assert page.status_code == 200 and page.text.count("<td>254799000111</td>") == 2 and "254712345678" not in page.text

    bad = b.get("/dashboard/payments", params={"phone": "12345", "receipt": "x!", "date_from": "2025-02-10",
                                               "date_to": "2025-02-01"})
    assert bad.status_code == 400
    errors = field_errors(bad.text)
    assert "Enter a Kenyan mobile number, e.g. 0712 345 678." in errors
    assert "A receipt is 6–20 letters and digits." in errors
    assert "The end date is before the start date." in errors


def test_payment_filters_by_status_router_and_nairobi_dates(app, shop, signed_in, make_router):
    other_router = make_router(shop.owner, name="Second")
    day = utcnow().replace(hour=22, minute=30, second=0, microsecond=0) - timedelta(days=3)  # 01:30 next day in Nairobi
    seed_payments(shop, 2, start=day)
    seed_payments(shop, 3, status="failed", router_id=other_router.id)
    _, b = signed_in(shop.owner)
    nairobi_day = (day + timedelta(hours=3)).date().isoformat()
    assert b.get("/dashboard/payments", params={"status": "failed"}).text.count("Second") == 3 + 1  # + the option
    assert b.get("/dashboard/payments", params={"router_id": other_router.id}).text.count("<tr>") == 4
    dated = b.get("/dashboard/payments", params={"date_from": nairobi_day, "date_to": nairobi_day})
    assert dated.text.count("<tr>") == 3


def test_keyset_pages_return_every_row_exactly_once_while_rows_are_inserted(app, shop):
    seed_payments(shop, 260, step=timedelta(milliseconds=1))
    # Ties on created_at are broken by id: give 20 rows the same instant.
    same = utcnow() - timedelta(hours=1)
    seed_payments(shop, 20, start=same, step=timedelta(0))
    before = set(db.session.scalars(sa.select(Payment.id)))
    stop = threading.Event()

    def insert_while_paging() -> None:
        with app.app_context():
            while not stop.is_set():
                seed_payments(shop, 5)

    inserter = threading.Thread(target=insert_while_paging)
    inserter.start()
    try:
        seen: list[int] = []
        after = None
        while True:
            page = payment_search.search_payments(shop.owner, payment_search.PaymentFilter(), after=after, limit=25)
            seen += [row.id for row in page.rows]
            if page.next_cursor is None:
                break
            after = page.next_cursor
    finally:
        stop.set()
        inserter.join()
    assert len(seen) == len(set(seen)), "a row was shown twice"
    assert before <= set(seen), "a row that existed before paging began was skipped"


def test_a_bad_cursor_is_refused(signed_in):
    _, b = signed_in()
    assert b.get("/dashboard/payments", params={"after": "not-a-cursor!"}).status_code == 400


def test_csv_of_100k_payments_streams_in_flat_memory(app, shop):
    seed_payments(shop, 100_000, step=timedelta(milliseconds=10))
    seed_payments(shop, 1_000, status="failed")
    db.session.expire_all()

    tracemalloc.start()
    lines = 0
    try:
        for chunk in payment_search.stream_payments_csv(shop.owner, payment_search.PaymentFilter(status="paid")):
            lines += chunk.count("\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == 100_000 + 1  # the header and every paid row, not the failed ones
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while exporting"


def test_csv_over_http_matches_the_filter_and_defuses_formulas(app, shop, signed_in):
    seed_payments(shop, 7)
    db.session.execute(sa.update(Payment).where(Payment.id == 1).values(note="=HYPERLINK(\"x\")"))
    db.session.commit()
    _, b = signed_in(shop.owner)
    response = b.get("/dashboard/payments.csv", params={"status": "paid"})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][0] == "id" and len(rows) == 8
    assert any(cell.startswith("'=HYPERLINK") for row in rows for cell in row)


# ---------------------------------------------------------------------------------------------
# Vouchers


def test_batch_vouchers_reach_the_router_and_print_with_qr_codes(app, shop, signed_in, router_box, worker):
    _, b = signed_in(shop.owner)
    b.get("/dashboard/vouchers")
    made = b.post("/dashboard/vouchers/batches", {"plan_id": shop.plan.id, "router_id": shop.router.id, "count": 3})
    assert made.status_code == 303, made.text[:500]
    batch_page = b.follow(made)
    codes = [v.code for v in db.session.scalars(sa.select(Voucher).where(Voucher.source == "batch"))]
    assert len(codes) == 3 and all(code in batch_page.text for code in codes)
    assert wait_until(lambda: set(codes) <= set(router_box.users), timeout=10)

    batch_url = made.headers["Location"]
    sheet = b.get(batch_url + "/print").text
    assert sheet.count("<svg") == 3 and all(code in sheet for code in codes)
    assert "style=" not in sheet and "<script>" not in sheet  # its Print button is in dashboard.js
    csv_rows = list(csv.reader(io.StringIO(b.get(batch_url + ".csv").text)))
    assert len(csv_rows) == 4 and csv_rows[1][6] == f"{app.config['PORTAL_BASE_URL']}/r/{shop.router.slug}?voucher={csv_rows[1][0]}"
    assert db.session.scalars(sa.select(AuditLog).where(AuditLog.action == "voucher.batch")).one().actor == shop.owner.email


def test_batch_form_rejects_bad_input_next_to_the_field(app, shop, signed_in):
    _, b = signed_in(shop.owner)
    b.get("/dashboard/vouchers")
    bad = b.post("/dashboard/vouchers/batches", {"plan_id": shop.plan.id, "router_id": shop.router.id, "count": 501})
    assert bad.status_code == 400 and "Between 1 and 500." in field_errors(bad.text)
    none = b.post("/dashboard/vouchers/batches", {"plan_id": 99999, "router_id": shop.router.id, "count": 2})
    assert none.status_code == 400 and "Not a valid choice." in field_errors(none.text)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Voucher)) == 0


def test_money_posts_without_csrf_are_refused(app, shop, signed_in):
    _, b = signed_in(shop.owner)
    refused = b.post("/dashboard/vouchers/batches", {"plan_id": shop.plan.id, "router_id": shop.router.id, "count": 2},
                     csrf=False)
    assert refused.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Voucher)) == 0


def test_search_by_code_or_phone_and_disable_removes_the_user_from_the_router(app, shop, signed_in, router_box, worker):
    _, b = signed_in(shop.owner)
    b.get("/dashboard/vouchers")
    b.post("/dashboard/vouchers/batches", {"plan_id": shop.plan.id, "router_id": shop.router.id, "count": 2})
    voucher = db.session.scalars(sa.select(Voucher).order_by(Voucher.id)).first()
    voucher.phone = "254712000999"
    db.session.commit()
    assert wait_until(lambda: voucher.code in router_box.users)

    assert voucher.code in b.get("/dashboard/vouchers", params={"q": voucher.code[:5].lower()}).text
    by_phone = b.get("/dashboard/vouchers", params={"q": "0712 000 999"}).text
    assert voucher.code in by_phone and by_phone.count("<tr>") == 2

    detail = b.get(f"/dashboard/vouchers/{voucher.id}")
    missing = b.post(f"/dashboard/vouchers/{voucher.id}/disable", {"reason": ""})
    assert missing.status_code == 400 and field_errors(missing.text)
    done = b.post(f"/dashboard/vouchers/{voucher.id}/disable", {"reason": "sold by mistake"})
    assert detail.status_code == 200 and done.status_code == 303
    assert wait_until(lambda: voucher.code not in router_box.users)
    db.session.expire_all()
    assert db.session.get(Voucher, voucher.id).status == "cancelled"
    again = b.follow(b.post(f"/dashboard/vouchers/{voucher.id}/disable", {"reason": "twice"}))
    assert ("warning", f"Voucher {voucher.code} is already cancelled.") in flashes(again.text)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Activation).where(Activation.kind == "remove")) == 1


# ---------------------------------------------------------------------------------------------
# Logs


def test_webhook_log_filters_and_masks_secrets(app, shop, signed_in, daraja):
    daraja.simulate_c2b("174379", 50, "NOSUCHCODE", trans_id="LOGTEST001")
    secret_body = json.dumps({"Password": "hunter2hunter2", "access_token": "abc", "nested": {"passkey": "pk"},
                              "TransID": "LOGTEST002"})
    db.session.add(WebhookLog(kind="c2b_confirmation", paybill_id=shop.paybill.id, payload=secret_body,
                              status="rejected", trans_id="LOGTEST002"))
    db.session.commit()
    _, b = signed_in(shop.owner)
    listed = b.get("/dashboard/logs", params={"text": "logtest001"}).text
    assert "LOGTEST001" in listed and "LOGTEST002" not in listed
    rejected = b.get("/dashboard/logs", params={"status": "rejected"}).text
    assert "LOGTEST002" in rejected and "LOGTEST001" not in rejected
    entry = db.session.scalars(sa.select(WebhookLog).where(WebhookLog.trans_id == "LOGTEST002")).one()
    detail = b.get(f"/dashboard/logs/webhooks/{entry.id}").text
    assert "hunter2" not in detail and "&#34;pk&#34;" not in detail and "masked" in detail
    assert "LOGTEST002" in detail
    bad = b.get("/dashboard/logs", params={"date_from": "the other day"})
    assert bad.status_code == 400 and field_errors(bad.text)
    _, stranger = signed_in()
    assert stranger.get(f"/dashboard/logs/webhooks/{entry.id}").status_code == 404
    assert "LOGTEST" not in stranger.get("/dashboard/logs").text

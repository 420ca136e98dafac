"""The Balance page (statement, filters, CSV, payouts), the admins' Payouts queue, and the
one-click refund on the Problems page, over real HTTP."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import AuditLog, Payment, Payout, Refund
from portal.money import ledger, payouts

from .conftest import wait_until
from .dashboard_support import flashes
from .money_support import MONEY_OVERRIDES, buy, resend_callback


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return dict(MONEY_OVERRIDES)


def test_an_owner_sees_balance_statement_and_csv(app, platform_shop, customer, daraja, worker, signed_in):
    buy(customer, platform_shop)
    ledger.post_sales()
    _, b = signed_in(platform_shop.owner)
    page = b.get("/dashboard/balance").text
    assert "KES 95" in page and "Platform commission 5 %" in page and ">Balance<" in page
    assert 'href="/dashboard/payouts"' not in page  # the queue is for admins
    only_sales = b.get("/dashboard/balance?kind=sale").text
    assert "Sale, M-Pesa" in only_sales and "Platform commission" not in only_sales
    rows = list(csv.reader(io.StringIO(b.get("/dashboard/balance.csv").text)))
    assert rows[0][:5] == ["id", "when (Nairobi)", "account", "kind", "amount_kes"]
    assert sorted(int(r[4]) for r in rows[1:]) == [-5, 100]


def test_another_owner_sees_none_of_it(app, platform_shop, customer, daraja, worker, signed_in):
    buy(customer, platform_shop)
    ledger.post_sales()
    _, other = signed_in()
    page = other.get(f"/dashboard/balance?owner={platform_shop.owner.id}").text
    assert "KES 95" not in page and "Sale, M-Pesa" not in page


def test_one_click_refund_from_the_problems_page(app, platform_shop, customer, daraja, worker, signed_in):
    paid = buy(customer, platform_shop)
    resend_callback(daraja, paid, new_receipt="TSECOND010")
    second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "TSECOND010")).one()
    _, b = signed_in(platform_shop.owner)
    problems_page = b.get("/dashboard/problems").text
    assert f"/dashboard/payments/{second.id}/refund" in problems_page and "Refund KES 100" in problems_page
    response = b.post(f"/dashboard/payments/{second.id}/refund", {"reason": "paid twice", "from": "problems"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/dashboard/problems")
    assert any("Refund of KES 100 sent by M-Pesa" in text for _, text in flashes(b.follow(response).text))
    refund = db.session.scalars(sa.select(Refund)).one()
    assert wait_until(lambda: (db.session.expire_all(), db.session.get(Refund, refund.id).state)[1] == "completed")
    detail = b.get(f"/dashboard/payments/{second.id}").text
    assert 'id="refund-state">completed' in detail and "paid twice" in detail
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action == "payment.refund")) == 1
    refused = b.post(f"/dashboard/payments/{paid.id}/refund", {"reason": "try the paid one"})
    assert any("opened a voucher" in text for _, text in flashes(b.follow(refused).text))


def test_an_admin_approves_a_payout_from_the_queue(app, platform_shop, daraja, signed_in):
    app.config["PORTAL_PAYOUT_REQUIRES_APPROVAL"] = True
    check = payouts.set_payout_phone(platform_shop.owner, "0712345678", actor="test")
    wait_until(lambda: (db.session.expire_all(), db.session.get(Payout, check.id).state)[1] == "completed")
    ledger.adjust(platform_shop.owner, 700, "opening balance", actor="test")
    _, owner_browser = signed_in(platform_shop.owner)
    asked = owner_browser.post("/dashboard/balance/payout", {})
    assert any("an admin approves it" in text for _, text in flashes(owner_browser.follow(asked).text))
    payout = db.session.scalars(sa.select(Payout).where(Payout.kind == "payout")).one()
    _, admin = signed_in(admin=True)
    queue = admin.get("/dashboard/payouts?state=requested").text
    assert platform_shop.owner.email in queue and "Approve and send" in queue
    done = admin.post(f"/dashboard/payouts/{payout.id}/approve", {})
    assert any("sent" in text for _, text in flashes(admin.follow(done).text))
    assert wait_until(lambda: (db.session.expire_all(), db.session.get(Payout, payout.id).state)[1] == "completed")
    assert ledger.balance(platform_shop.owner.id) == 0
    assert owner_browser.get("/dashboard/payouts").status_code == 404


def test_an_owner_gives_their_paybill_b2c_credentials_on_its_page(app, shop, signed_in):
    from portal.models import PaybillB2C

    _, b = signed_in(shop.owner)
    page = b.get(f"/dashboard/paybills/{shop.paybill.id}").text
    assert "refunds are recorded as done by hand" in page
    saved = b.post(f"/dashboard/paybills/{shop.paybill.id}/b2c", {"initiator_name": "cafeapi",
                                                                 "initiator_password": "Cafe#Secret2026"})
    assert any("B2C credentials saved" in text for _, text in flashes(b.follow(saved).text))
    creds = db.session.get(PaybillB2C, shop.paybill.id)
    assert creds.initiator_password == "Cafe#Secret2026" and "Cafe#Secret2026" not in creds.initiator_password_encrypted
    assert "Cafe#Secret2026" not in b.get(f"/dashboard/paybills/{shop.paybill.id}").text

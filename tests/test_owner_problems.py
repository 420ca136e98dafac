"""Issue 14 point 8: fixing a problem takes one reason, and "Issue a voucher" offers the plan the
money covers and refuses a dearer one unless the owner says so."""

from __future__ import annotations

import re

import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Payment, Voucher

from .dashboard_support import field_errors
from .test_problems import _unmatched


def _row(page: str, receipt: str) -> str:
    return page.split(receipt, 1)[1].split("</tr>", 1)[0]


def test_one_why_per_row_whatever_the_action(app, shop, daraja, signed_in):
    _unmatched(daraja, receipt="ONEWHY0001")
    _, b = signed_in(shop.owner)

    row = _row(b.get("/dashboard/problems").text, "ONEWHY0001")

    assert row.count('name="reason"') == 1 and row.count("<form") == 1
    assert row.count("formaction=") == 4  # assign, issue, resolve and refund (issue 15) all post the same form


def test_issue_offers_the_plan_the_amount_covers(app, shop, daraja, signed_in, make_plan):
    make_plan(shop.owner, name="1 Day", price=50, duration_s=86400)
    make_plan(shop.owner, name="1 Week", price=250, duration_s=7 * 86400)
    _unmatched(daraja, receipt="COVERS0001", amount=60)
    _, b = signed_in(shop.owner)

    row = _row(b.get("/dashboard/problems").text, "COVERS0001")

    selected = re.findall(r'<option selected value="\d+">([^<]+)</option>', row)
    assert selected[0] == "1 Day · KES 50"  # the dearest plan KES 60 pays for, not the first in the list
    assert "1 Week · KES 250 (more than was paid)" in row


def test_a_plan_worth_more_than_was_paid_needs_a_tick(app, shop, daraja, router_box, worker, signed_in, make_plan):
    week = make_plan(shop.owner, name="1 Week", price=250, duration_s=7 * 86400)
    payment = _unmatched(daraja, receipt="GIFT000001", amount=10)
    _, b = signed_in(shop.owner)
    b.get("/dashboard/problems")
    form = {"plan_id": week.id, "router_id": shop.router.id, "reason": "regular customer"}

    refused = b.post(f"/dashboard/problems/payments/{payment.id}/issue", form)

    assert refused.status_code == 400
    assert 'Tick "Issue it anyway" to give it.' in " ".join(field_errors(refused.text))
    assert "1 Week costs KES 250 but KES 10 was paid." in " ".join(field_errors(refused.text))
    assert 'regular customer' in _row(refused.text, "GIFT000001")  # the typed reason is kept in its row
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Voucher)) == 0

    given = b.post(f"/dashboard/problems/payments/{payment.id}/issue", {**form, "allow_over_price": "y"})

    assert given.status_code == 303
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).voucher.plan_id == week.id

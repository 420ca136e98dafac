"""Issue 14 point 7 (payments): the failure reason in words, the plan, the total of the filtered
rows, and dates typed the way owners type them."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.dashboard.forms_money import parse_day
from portal.models import Payment, Voucher
from portal.owners import payment_search

from .dashboard_support import field_errors


def _payment(shop, *, status: str, amount: int | None = 10, result_code: str | None = None,  # type: ignore[no-untyped-def]
             created_at: datetime | None = None, with_voucher: bool = True, note: str | None = None) -> Payment:
    voucher = None
    if with_voucher:
        voucher = Voucher(code=secrets.token_hex(4).upper(), owner_id=shop.owner.id, plan_id=shop.plan.id,
                          router_id=shop.router.id, status="active" if status == "paid" else "pending_payment")
        db.session.add(voucher)
        db.session.flush()
    payment = Payment(public_id=secrets.token_hex(8), owner_id=shop.owner.id, router_id=shop.router.id,
                      paybill_id=shop.paybill.id, voucher_id=voucher.id if voucher else None, amount_expected=10,
                      amount=amount, status=status, result_code=result_code, note=note,
                      **({"created_at": created_at} if created_at else {}))
    db.session.add(payment)
    db.session.commit()
    return payment


def test_the_list_gives_the_reason_in_words_the_plan_and_the_filtered_total(app, shop, signed_in):
    for _ in range(3):
        _payment(shop, status="paid")
    _payment(shop, status="failed", amount=None, result_code="1032")
    _payment(shop, status="failed", amount=None, result_code="2001")
    _payment(shop, status="expired", amount=None)
    _payment(shop, status="unmatched", amount=25, with_voucher=False, note="account number ZZZ matched no voucher")
    _, b = signed_in(shop.owner)

    page = b.get("/dashboard/payments").text

    assert "the customer cancelled the prompt" in page and "wrong M-Pesa PIN" in page
    assert "no answer from M-Pesa before the prompt expired" in page
    assert "money came in but matched no voucher (account number ZZZ matched no voucher)" in page
    assert "<th>Plan</th>" in page and page.count(f"<td>{shop.plan.name}</td>") == 6
    totals = page.split('id="payment-totals"', 1)[1].split("</p>", 1)[0]
    assert "<strong>7</strong> payments" in totals and "<strong>KES 55</strong> received" in totals

    failed = b.get("/dashboard/payments", params={"status": "failed"}).text
    totals = failed.split('id="payment-totals"', 1)[1].split("</p>", 1)[0]
    assert "<strong>2</strong> payments match" in totals and "<strong>KES 0</strong>" in totals


def test_totals_cache_the_closed_days_and_count_today_live(app, shop):
    yesterday = datetime.now(UTC) - timedelta(days=2)
    _payment(shop, status="paid", created_at=yesterday)
    first = payment_search.payment_totals(shop.owner, payment_search.PaymentFilter())
    _payment(shop, status="paid")  # today: shows at once
    db.session.execute(sa.update(Payment).where(Payment.created_at < datetime.now(UTC) - timedelta(days=1))
                       .values(amount=99))  # an old row changed behind the cache's back
    db.session.commit()

    second = payment_search.payment_totals(shop.owner, payment_search.PaymentFilter())

    assert (first.count, first.received) == (1, 10)
    assert (second.count, second.received) == (2, 20)  # the closed day is the cached 10, today's 10 is live


@pytest.mark.parametrize("typed", ["2 Dec 2026", "2 december 2026", "2026-12-02", "02/12/2026", "Dec 2, 2026",
                                   "  2  Dec  2026 "])
def test_dates_are_read_as_typed(typed):
    assert parse_day(typed) == date(2026, 12, 2)


def test_today_and_yesterday_and_nonsense():
    assert parse_day("today", today=date(2026, 12, 2)) == date(2026, 12, 2)
    assert parse_day("Yesterday", today=date(2026, 12, 2)) == date(2026, 12, 1)
    with pytest.raises(ValueError):
        parse_day("next week")


def test_the_date_filter_takes_typed_dates_and_says_what_it_wants(app, shop, signed_in):
    _payment(shop, status="paid", created_at=datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    _payment(shop, status="paid", created_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    _, b = signed_in(shop.owner)

    page = b.get("/dashboard/payments", params={"date_from": "2 Dec 2026", "date_to": "2026-12-02"})

    assert page.status_code == 200
    assert '<strong>1</strong> payment match' in page.text
    assert 'value="2 Dec 2026"' in page.text  # shown back in the owner's words
    bad = b.get("/dashboard/payments", params={"date_from": "the other day"})
    assert bad.status_code == 400 and "Type a date like 2 Dec 2026 or 2026-12-02." in field_errors(bad.text)


def test_a_total_too_big_to_add_up_inline_comes_from_its_own_url(app, shop, signed_in, monkeypatch):
    monkeypatch.setattr(payment_search, "INLINE_TOTAL_ROWS", 2)
    for _ in range(3):
        _payment(shop, status="paid", created_at=datetime.now(UTC) - timedelta(days=3))
    _, b = signed_in(shop.owner)

    page = b.get("/dashboard/payments", params={"status": "paid"}).text

    assert 'data-fill-from="/dashboard/payments/totals?status=paid"' in page
    fragment = b.get("/dashboard/payments/totals", params={"status": "paid"}, headers={"X-Fragment": "1"}).text
    assert fragment.startswith('<p class="totals"') and "<strong>3</strong> payments match" in fragment
    full = b.get("/dashboard/payments/totals", params={"status": "paid"}).text  # the link, without JavaScript
    assert "<h1>Payments total</h1>" in full and "KES 30" in full
    assert "<strong>3</strong>" in b.get("/dashboard/payments", params={"status": "paid"}).text  # now cached: inline

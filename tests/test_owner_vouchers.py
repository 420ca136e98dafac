"""Issue 14 points 7 and 9 (vouchers): a status filter, cash vouchers in words, unpaid prompts that
expire with their initiation (and are still honoured if the money comes), batch notes, and
printed cards that carry what a shop's own cards carry."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import brands, voucher_batches
from portal.models import Payment, StkInitiation, Voucher, utcnow
from portal.money import reconciliation

from .conftest import wait_until

SILENT_PHONE = "0700 099 999"  # the sandbox never calls back for this number


def _voucher(shop, code: str, **kw) -> Voucher:  # type: ignore[no-untyped-def]
    defaults = dict(owner_id=shop.owner.id, plan_id=shop.plan.id, router_id=shop.router.id, status="active")
    defaults.update(kw)
    voucher = Voucher(code=code, **defaults)
    db.session.add(voucher)
    db.session.commit()
    return voucher


def _codes(page: str) -> list[str]:
    return re.findall(r'<td class="code"><a [^>]*>([A-Z0-9]+)</a>', page)


def test_cash_vouchers_read_unsold_in_use_and_used_up_and_the_filter_finds_each(app, shop, signed_in):
    now = utcnow()
    _voucher(shop, "UNSOLD1", source="batch", batch_ref="b1")
    _voucher(shop, "INUSE1", source="batch", batch_ref="b1", first_used_at=now, expires_at=now + timedelta(hours=1))
    _voucher(shop, "USEDUP1", source="batch", batch_ref="b1", status="expired", paid_at=now - timedelta(days=1),
             first_used_at=now - timedelta(days=1))
    _voucher(shop, "BOUGHT1", paid_at=now, expires_at=now + timedelta(hours=1))
    _voucher(shop, "WAITING1", status="pending_payment")
    _voucher(shop, "LAPSED1", status="expired")  # its prompt expired, never paid
    _voucher(shop, "OFF1", status="cancelled", paid_at=now)
    _, b = signed_in(shop.owner)

    default = b.get("/dashboard/vouchers").text
    assert set(_codes(default)) == {"UNSOLD1", "INUSE1", "USEDUP1", "BOUGHT1", "OFF1"}
    assert "pending payment" not in default and "awaiting payment" not in default
    for code, words in (("UNSOLD1", "unsold"), ("INUSE1", "in use"), ("USEDUP1", "used up"), ("OFF1", "disabled")):
        row = default.split(f">{code}</a>", 1)[1].split("</tr>", 1)[0]
        assert f">{words}</span>" in row, (code, row)

    expected = {"unsold": {"UNSOLD1"}, "in_use": {"INUSE1", "BOUGHT1"}, "used_up": {"USEDUP1"}, "disabled": {"OFF1"},
                "unpaid": {"WAITING1", "LAPSED1"}}
    for view, codes in expected.items():
        assert set(_codes(b.get("/dashboard/vouchers", params={"status": view}).text)) == codes, view
    assert len(_codes(b.get("/dashboard/vouchers", params={"status": "all"}).text)) == 7
    assert b.get("/dashboard/vouchers", params={"status": "nonsense"}).status_code == 200  # falls back, no 500


def test_an_unanswered_prompts_voucher_expires_with_it_and_late_money_still_opens_it(
    app, shop, customer, daraja, router_box, worker
):
    bought = customer.buy(shop.router.slug, shop.plan.id, SILENT_PHONE)
    purchase = bought.headers["Location"]
    payment = db.session.scalars(sa.select(Payment)).one()
    code = payment.voucher.code
    db.session.execute(sa.update(StkInitiation).values(created_at=utcnow() - timedelta(minutes=10)))
    db.session.commit()

    assert reconciliation.expire_unpaid_initiations() == 1

    db.session.expire_all()
    voucher = db.session.scalars(sa.select(Voucher).where(Voucher.code == code)).one()
    assert voucher.status == "expired" and voucher.paid_at is None
    assert voucher_batches.voucher_state(voucher) == ("prompt expired, unpaid", "")
    assert voucher not in voucher_batches.search_vouchers(shop.owner, None)

    # The customer pays at the paybill with the code after all: the money still opens the voucher.
    daraja.simulate_c2b("174379", 10, code, trans_id="LATEPAY001")
    assert customer.wait_for(purchase, ("active",), timeout=15)["status"] == "active"
    assert wait_until(lambda: code in router_box.users)


def test_a_batch_note_is_kept_and_shown(app, shop, signed_in):
    _, b = signed_in(shop.owner)
    b.get("/dashboard/vouchers")
    made = b.post("/dashboard/vouchers/batches", {"plan_id": shop.plan.id, "router_id": shop.router.id, "count": 2,
                                                  "note": "for the counter <Mama Njeri>"})
    assert made.status_code == 303
    batch = b.follow(made).text
    assert "Note: <q>for the counter &lt;Mama Njeri&gt;</q>" in batch
    assert "<q>for the counter &lt;Mama Njeri&gt;</q>" in b.get("/dashboard/vouchers").text


def test_printed_cards_carry_business_wifi_price_duration_data_speed_and_support_phone(app, shop, signed_in):
    brands.forget_brands()  # process-wide cache keyed by router id: another test's router 1 may be in it
    shop.owner.business_name, shop.owner.support_phone = "Mama Njeri Cafe & Co", "0722 000 111"
    shop.router.wifi_name = "MamaNjeri-WiFi"
    db.session.commit()
    _, b = signed_in(shop.owner)
    b.get("/dashboard/vouchers")
    made = b.post("/dashboard/vouchers/batches", {"plan_id": shop.plan.id, "router_id": shop.router.id, "count": 3})
    batch_url = made.headers["Location"]
    batch_page = b.get(batch_url).text
    for layout in ("a4-8", "a4-12", "a4-24", "thermal-58"):
        assert f"layout={layout}" in batch_page

    for layout in ("a4-8", "a4-12", "a4-24", "thermal-58"):
        sheet = b.get(batch_url + "/print", params={"layout": layout}).text
        assert f'<body class="layout-{layout}">' in sheet
        assert sheet.count('<div class="card">') == 3
        card = sheet.split('<div class="card">', 2)[1]
        for words in ("Mama Njeri Cafe &amp; Co", "MamaNjeri-WiFi", "KES 10", "1 hour", "500 MB",
                      "5Mbps down / 2Mbps up", "Help: 0722 000 111"):
            assert words in card, (layout, words)
        assert "data-print" in sheet and "style=" not in sheet
    assert '<body class="layout-a4-24">' in b.get(batch_url + "/print", params={"layout": "<x>"}).text


def test_the_brands_support_phone_and_name_fill_what_the_account_leaves_empty(app, shop, signed_in):
    brands.forget_brands()
    brands.save_brand(shop.owner, None, hotspot_name="Njeri Hotspot", support_phone="0733 444 555")
    db.session.commit()
    _, b = signed_in(shop.owner)
    b.get("/dashboard/vouchers")
    made = b.post("/dashboard/vouchers/batches", {"plan_id": shop.plan.id, "router_id": shop.router.id, "count": 1})
    card = b.get(made.headers["Location"] + "/print").text.split('<div class="card">', 1)[1]
    assert "Njeri Hotspot" in card and "Help: 0733 444 555" in card

"""Issue 14 point 11 in real Chromium: every dashboard page at 360 px (a phone) and 1366 px (a
laptop), screenshotted to test-artifacts/screenshots/dashboard-*.png, fails on horizontal overflow
of the page body; on the phone the menu folds behind a button (with JavaScript off too) and
tables become cards."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from portal.core.extensions import db
from portal.models import Activation, Payment, Voucher, utcnow
from portal.owners import online

from .browser import SCREENSHOTS
from .dashboard_support import PASSWORD

PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 1, "is_mobile": True, "has_touch": True}
LAPTOP = {"viewport": {"width": 1366, "height": 768}, "device_scale_factor": 1}
OVERFLOW = "() => [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]"


@pytest.fixture
def busy_shop(shop: Any, daraja: Any, make_owner: Any) -> Any:
    """An owner with something on every page: payments of each kind, a problem of each money kind,
    a batch with a note, a long unbroken value (the usual overflow culprit)."""
    now = utcnow()
    long_ref = "ACCOUNTNUMBERTHATNOBODYCANBREAK" * 2
    daraja.simulate_c2b("174379", 10, long_ref, trans_id="UNMATCHED01")
    for i, (status, code) in enumerate((("paid", None), ("failed", "1032"), ("failed", "2001"), ("expired", None))):
        voucher = Voucher(code=f"SHOT{i}ABCDE", owner_id=shop.owner.id, plan_id=shop.plan.id, router_id=shop.router.id,
                          status="active" if status == "paid" else "pending_payment", phone="254712345678",
                          paid_at=now if status == "paid" else None, activated_at=now if status == "paid" else None)
        db.session.add(voucher)
        db.session.flush()
        db.session.add(Payment(public_id=secrets.token_hex(8), owner_id=shop.owner.id, router_id=shop.router.id,
                               paybill_id=shop.paybill.id, voucher_id=voucher.id, amount_expected=10,
                               amount=10 if status == "paid" else None, phone="254712345678", status=status,
                               result_code=code, receipt=f"RCPT{i}XYZ01" if status == "paid" else None,
                               created_at=now - timedelta(minutes=i)))
        if status == "paid":
            db.session.add(Activation(voucher_id=voucher.id, router_id=shop.router.id, status="failed",
                                      last_error="RouterUnreachable: connection refused by 10.0.0.1:8728 " * 3))
    from portal.hotspot.voucher_batches import generate_batch

    generate_batch(shop.owner, plan_id=shop.plan.id, router_id=shop.router.id, count=3, note="for the counter")
    db.session.commit()
    make_owner("another-owner-with-a-long-address@example.com")
    online.forget_answers()
    return shop


def _pages(app: Any, shop: Any) -> list[tuple[str, str]]:
    voucher = db.session.query(Voucher).filter(Voucher.source == "batch").first()
    return [
        ("overview", "/dashboard/overview"),
        ("routers", "/dashboard/routers"),
        ("router", f"/dashboard/routers/{shop.router.id}"),
        ("router-setup", f"/dashboard/routers/{shop.router.id}/setup"),
        ("router-edit", f"/dashboard/routers/{shop.router.id}/edit"),
        ("paybills", "/dashboard/paybills"),
        ("paybill", f"/dashboard/paybills/{shop.paybill.id}"),
        ("plans", "/dashboard/plans"),
        ("plan-form", "/dashboard/plans/new"),
        ("payments", "/dashboard/payments"),
        ("problems", "/dashboard/problems"),
        ("vouchers", "/dashboard/vouchers"),
        ("batch", f"/dashboard/vouchers/{voucher.id}/batch"),
        ("voucher", f"/dashboard/vouchers/{voucher.id}"),
        ("print-a4", f"/dashboard/vouchers/{voucher.id}/batch/print?layout=a4-12"),
        ("print-thermal", f"/dashboard/vouchers/{voucher.id}/batch/print?layout=thermal-58"),
        ("logs", "/dashboard/logs"),
        ("audit", "/dashboard/logs/audit"),
        ("account", "/dashboard/account"),
        ("sms", "/dashboard/sms"),  # issue 17
    ]


class Screen:
    def __init__(self, chromium: Any, app: Any, name: str, device: dict[str, Any], *, javascript: bool = True) -> None:
        self.context = chromium.new_context(java_script_enabled=javascript, **device)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.app, self.name = app, name

    def sign_in(self, email: str) -> None:
        self.page.goto(f"{self.app.live_url}/dashboard/sign-in")
        self.page.fill("#email", email)
        self.page.fill("#password", PASSWORD)
        self.page.click("form button[type=submit]")
        self.page.wait_for_url("**/dashboard/overview")

    def visit(self, key: str, path: str) -> tuple[int, int, int]:
        answer = self.page.goto(f"{self.app.live_url}{path}")
        assert answer is not None and answer.status == 200, (path, answer and answer.status)
        self.page.wait_for_load_state("networkidle")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"dashboard-{self.name}-{key}.png"), full_page=True)
        return tuple(self.page.evaluate(OVERFLOW))  # type: ignore[return-value]


@pytest.fixture
def screens(chromium: Any, app: Any) -> Iterator[Any]:
    made: list[Screen] = []

    def make(name: str, device: dict[str, Any], **kw: Any) -> Screen:
        made.append(Screen(chromium, app, name, device, **kw))
        return made[-1]

    yield make
    for screen in made:
        screen.context.close()


@pytest.mark.parametrize("width", [360, 1366])
def test_every_dashboard_page_fits_the_screen(width, app, busy_shop, screens, signed_in):
    screen = screens(str(width), PHONE if width == 360 else LAPTOP)
    screen.sign_in(busy_shop.owner.email)
    overflowing = []
    for key, path in _pages(app, busy_shop):
        document_width, body_width, viewport = screen.visit(key, path)
        if max(document_width, body_width) > viewport:
            overflowing.append(f"{key}: {max(document_width, body_width)} px wide in a {viewport} px window")
    assert overflowing == [], overflowing


def test_the_admins_owner_list_fits_a_phone(app, busy_shop, screens, make_owner):
    admin = make_owner(admin=True)
    screen = screens("360-admin", PHONE)
    screen.sign_in(admin.email)
    document_width, body_width, viewport = screen.visit("owners", "/dashboard/owners")
    assert max(document_width, body_width) <= viewport


def test_on_a_phone_the_menu_folds_and_tables_become_cards(app, busy_shop, screens):
    screen = screens("360-menu", PHONE)
    screen.sign_in(busy_shop.owner.email)
    page = screen.page
    page.goto(f"{app.live_url}/dashboard/payments")
    assert not page.is_visible("nav a[href='/dashboard/plans']")
    page.click("label.nav-button")
    assert page.is_visible("nav a[href='/dashboard/plans']")
    screen.visit("menu-open", "/dashboard/payments")
    # A table row is a card: its cells stack, each labelled with the column heading.
    first_cell = page.locator("table.cards tbody tr").first.locator("td").first
    assert first_cell.get_attribute("data-label") == "When"
    boxes = [page.locator("table.cards tbody tr").first.locator("td").nth(i).bounding_box() for i in range(2)]
    assert boxes[1]["y"] > boxes[0]["y"]  # stacked, not side by side


def test_the_menu_works_without_javascript(app, busy_shop, screens):
    screen = screens("360-nojs", PHONE, javascript=False)
    screen.sign_in(busy_shop.owner.email)
    page = screen.page
    assert not page.is_visible("nav a[href='/dashboard/plans']")
    page.click("label.nav-button")
    assert page.is_visible("nav a[href='/dashboard/plans']")
    document_width, body_width, viewport = screen.visit("nojs-payments", "/dashboard/payments")
    assert max(document_width, body_width) <= viewport  # the table scrolls in its box; the page does not


def test_a_laptop_shows_the_menu_without_a_button(app, busy_shop, screens):
    screen = screens("1366-menu", LAPTOP)
    screen.sign_in(busy_shop.owner.email)
    assert screen.page.is_visible("nav a[href='/dashboard/plans']")
    assert not screen.page.is_visible("label.nav-button")


@pytest.mark.parametrize(("layout", "pages"), [("a4-24", 1), ("a4-12", 2), ("a4-8", 3)])
def test_a4_sheets_print_8_12_or_24_cards_a_page(layout, pages, app, shop, screens):
    from portal.hotspot.voucher_batches import generate_batch

    shop.owner.business_name, shop.owner.support_phone = "Mama Njeri Cafe", "0722 000 111"
    shop.router.wifi_name = "MamaNjeri-WiFi"
    db.session.commit()
    generate_batch(shop.owner, plan_id=shop.plan.id, router_id=shop.router.id, count=24)
    first = db.session.query(Voucher).filter(Voucher.source == "batch").order_by(Voucher.id).first()
    screen = screens(f"print-{layout}", LAPTOP)
    screen.sign_in(shop.owner.email)
    screen.page.goto(f"{app.live_url}/dashboard/vouchers/{first.id}/batch/print?layout={layout}")
    screen.page.emulate_media(media="print")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screen.page.screenshot(path=str(SCREENSHOTS / f"dashboard-print-{layout}.png"), full_page=True)

    pdf = screen.page.pdf(prefer_css_page_size=True)

    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == pages  # page objects, not the /Pages tree


def test_the_thermal_layout_prints_on_a_58_mm_roll(app, shop, screens):
    from portal.hotspot.voucher_batches import generate_batch

    generate_batch(shop.owner, plan_id=shop.plan.id, router_id=shop.router.id, count=2)
    first = db.session.query(Voucher).filter(Voucher.source == "batch").order_by(Voucher.id).first()
    screen = screens("print-thermal", LAPTOP)
    screen.sign_in(shop.owner.email)
    screen.page.goto(f"{app.live_url}/dashboard/vouchers/{first.id}/batch/print?layout=thermal-58")

    pdf = screen.page.pdf(prefer_css_page_size=True)

    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)", pdf)
    assert boxes and all(abs(float(width) - 58 / 25.4 * 72) < 2 for width, _ in boxes)  # 58 mm wide pages

"""The customer's whole path in real headless Chromium at 320 px: from the router's login page,
through the portal, to the site they first asked for, against the sandbox Daraja and router.
Screenshots of each step land in test-artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Voucher, utcnow
from portal.sandbox.hotspot import SandboxHotspot

MAC, IP = "AA:BB:CC:DD:EE:01", "10.5.50.23"


@pytest.fixture(params=["chap", "pap"])
def login_method(request: pytest.FixtureRequest) -> str:
    return request.param


def _hotspot(app: Any, shop: Any, router_box: Any, *, chap: bool) -> SandboxHotspot:
    return SandboxHotspot(
        router_box, portal_url=f"{app.live_url}/r/{shop.router.slug}", device_mac=MAC, device_ip=IP, chap=chap
    ).start()


@pytest.fixture
def hotspot_for(app: Any, shop: Any, router_box: Any) -> Iterator[Any]:
    started: list[SandboxHotspot] = []

    def make(*, chap: bool) -> SandboxHotspot:
        started.append(_hotspot(app, shop, router_box, chap=chap))
        return started[-1]

    yield make
    for hotspot in started:
        hotspot.stop()


def _land(page: Any, hotspot: SandboxHotspot) -> str:
    """The phone opens a web page; the hotspot sends it to its login page, which hands it to the portal."""
    link_orig = f"{hotspot.base_url}/welcome"
    page.goto(f"{hotspot.login_url}?dst={quote(link_orig, safe='')}")
    page.wait_for_url(re.compile(r"/r/[\w-]+\?"))
    return link_orig


def _assert_online(hotspot: SandboxHotspot, router_box: Any, code: str, *, method: str = "POST") -> None:
    login_by = "http-chap" if hotspot.chap else "http-pap"
    assert hotspot.logins[-1] == {"method": method, "username": code, "login_by": login_by, "error": None}
    session = router_box.session_for_mac(MAC)
    assert session is not None and session["user"] == code


def test_purchase_from_the_router_login_page_to_link_orig(
    login_method, app, shop, router_box, worker, phone, hotspot_for
):
    hotspot = hotspot_for(chap=login_method == "chap")
    customer = phone(javascript=True)
    page = customer.page

    link_orig = _land(page, hotspot)
    assert page.locator("html").get_attribute("lang") == "en"
    customer.shot("plans")
    if login_method == "chap":  # Swahili for this run: switch on the page
        page.click("footer a")
        assert page.locator("html").get_attribute("lang") == "sw"
    page.fill("#phone", "0712 345 678")
    customer.shot("phone-entered")
    page.click("form[action$='/buy'] button[type=submit]")
    page.wait_for_url(re.compile(r"/p/[\w-]+$"))
    customer.shot("wait")
    page.wait_for_selector("#router-login")
    code = page.inner_text("#code").strip()
    customer.shot("online-save-code")
    page.wait_for_url(link_orig)

    assert "You are online" in page.content()
    _assert_online(hotspot, router_box, code)
    assert page.context.cookies()  # the phone number is remembered on this device
    assert any(c["name"] == "phone" for c in page.context.cookies())


def test_purchase_with_javascript_off(app, shop, router_box, worker, phone, hotspot_for):
    hotspot = hotspot_for(chap=True)  # CHAP computed by the portal: no script needed
    customer = phone(javascript=False)
    page = customer.page

    link_orig = _land(page, hotspot)
    page.fill("#phone", "0712345678")
    page.click("form[action$='/buy'] button[type=submit]")
    page.wait_for_url(re.compile(r"/p/[\w-]+$"))
    customer.shot("wait-nojs")
    page.wait_for_selector("#router-login button", timeout=20_000)  # the page refreshes itself every 2 s
    code = page.inner_text("#code").strip()
    customer.shot("online-nojs")
    page.click("#router-login button")
    page.wait_for_url(link_orig)

    _assert_online(hotspot, router_box, code)


def test_voucher_code_login_and_a_router_refusal_in_plain_words(app, shop, router_box, phone, hotspot_for):
    hotspot = hotspot_for(chap=True)
    expires = utcnow() + timedelta(hours=1)
    db.session.add_all(
        [
            Voucher(
                code="ABCD2345XY",
                owner_id=shop.owner.id,
                plan_id=shop.plan.id,
                router_id=shop.router.id,
                status="active",
                expires_at=expires,
            ),
            Voucher(
                code="NOTON2345R",
                owner_id=shop.owner.id,
                plan_id=shop.plan.id,
                router_id=shop.router.id,
                status="paid",
                expires_at=expires,
            ),
        ]
    )
    db.session.commit()
    router_box.users["ABCD2345XY"] = {".id": "*1", "name": "ABCD2345XY", "password": "ABCD2345XY", "profile": "default"}
    customer = phone(javascript=True)
    page = customer.page

    link_orig = _land(page, hotspot)
    page.click("#voucher summary")
    page.fill("#code", "notOn-2345r")  # known to the portal, not (yet) to the router
    customer.shot("voucher-entered")
    page.click("#voucher button[type=submit]")
    page.wait_for_selector("div.error")  # the router refused; its login page sent us back with $(error)
    customer.shot("router-refused")
    assert "The hotspot did not let you in" in page.inner_text("div.error")
    assert "does not know this code" in page.inner_text("div.error")

    assert page.get_attribute("#voucher", "open") is not None  # opened again for the next try
    page.fill("#code", "abcd 2345 xy")
    page.click("#voucher button[type=submit]")
    page.wait_for_selector("#router-login")
    customer.shot("voucher-connecting")
    page.wait_for_url(link_orig)

    _assert_online(hotspot, router_box, "ABCD2345XY")


def test_receipt_recovery_of_a_buy_goods_payment_with_javascript_off(
    app, shop, daraja, router_box, worker, phone, hotspot_for
):
    hotspot = hotspot_for(chap=False)
    daraja.simulate_c2b("174379", 10, None, trans_id="SGR7XK2M9P")  # paid with no account number
    customer = phone(javascript=False)
    page = customer.page

    link_orig = _land(page, hotspot)
    page.click("#paid summary")
    page.fill("#receipt", "sgr7xk2m9p")
    customer.shot("receipt-entered")
    page.click("#paid button[type=submit]")
    page.wait_for_url(re.compile(r"/p/[\w-]+$"))
    page.wait_for_selector("#router-login button", timeout=20_000)
    code = page.inner_text("#code").strip()
    customer.shot("receipt-online")
    page.click("#router-login button")
    page.wait_for_url(link_orig)

    _assert_online(hotspot, router_box, code)
    db.session.expire_all()
    assert db.session.scalars(sa.select(Voucher.code)).all() == [code]


def test_a_failed_payment_reads_clearly_at_320px(app, shop, daraja, phone, hotspot_for):
    hotspot = hotspot_for(chap=False)
    customer = phone(javascript=True, lang="sw-KE")
    page = customer.page

    _land(page, hotspot)
    assert page.locator("html").get_attribute("lang") == "sw"
    customer.shot("plans-sw")
    page.fill("#phone", "0700 001 032")  # the sandbox cancels this one
    page.click("form[action$='/buy'] button[type=submit]")
    page.wait_for_selector("#purchase[data-status=failed]")
    customer.shot("cancelled-sw")

    assert "Umeghairi malipo" in page.inner_text("#message")
    assert page.is_visible("text=Tuma ombi tena")
    # Nothing is wider than the phone: no sideways scrolling at 320 px.
    assert page.evaluate("document.documentElement.scrollWidth") <= 320

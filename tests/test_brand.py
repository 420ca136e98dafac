"""The owner's brand on the customer pages: set in the dashboard (per owner, per router), checked
before it is stored, and shown on every customer page from our own host."""

from __future__ import annotations

import struct
import zlib

import pytest
import requests
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import brands
from portal.models import AuditLog, Brand

from .dashboard_support import field_errors, flashes

pytest_plugins = ["tests.dashboard_support"]

HOTSPOT = {"mac": "AA:BB:CC:DD:EE:01", "ip": "10.5.50.23", "link-login-only": "http://10.5.50.1/login"}


def _png(side: int = 4) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x0a\x7d\x33\xff" * side for _ in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_a_router_field_overrides_the_owners_and_empty_fields_fall_back(app, shop, make_router):
    other_router = make_router(shop.owner, name="Second shop")
    brands.save_brand(shop.owner, None, hotspot_name="Mama Njeri", support_phone="0722 000 111", accent="#112233")
    brands.save_brand(shop.owner, shop.router, hotspot_name="Mama Njeri Town", logo_bytes=_png())

    here, there = brands.brand_for(shop.router.id), brands.brand_for(other_router.id)

    assert (here.hotspot_name, here.support_phone, here.accent) == ("Mama Njeri Town", "0722 000 111", "#112233")
    assert here.logo_id is not None and there.logo_id is None
    assert (there.hotspot_name, there.support_phone) == ("Mama Njeri", "0722 000 111")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("accent", "red"),
        ("accent", "#12345g"),
        ("accent", "#123456;}body{display:none"),
        ("support_phone", "<script>"),
        ("terms_url", "javascript:alert(1)"),
        ("terms_url", "ftp://example.com/terms"),
        ("terms_url", '"><script>alert(1)</script>'),
        ("hotspot_name", "x" * 61),
    ],
)
def test_hostile_or_wrong_brand_values_are_refused_and_nothing_is_stored(app, shop, field, value):
    with pytest.raises(brands.BrandError) as refused:
        brands.save_brand(shop.owner, None, **{field: value})
    assert refused.value.field == field
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Brand)) == 0


@pytest.mark.parametrize(
    "logo",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',  # script in an image
        b"GIF89a" + b"\x00" * brands.LOGO_MAX_BYTES,  # too heavy for a 2G page
        b"not an image at all",
    ],
)
def test_a_logo_must_be_a_small_raster_image(app, shop, logo):
    with pytest.raises(brands.BrandError) as refused:
        brands.save_brand(shop.owner, None, logo_bytes=logo)
    assert refused.value.field == "logo"


def test_every_customer_page_shows_the_brand_from_our_host(app, shop, customer, daraja):
    brands.save_brand(
        shop.owner, None, hotspot_name="Mama <Njeri>", accent="#7A1FA2", support_phone="0722 000 111",
        terms_url="https://example.com/terms?a=1&b=2", logo_bytes=_png(),
    )
    plans = customer.open_plans(shop.router.slug, **HOTSPOT)
    purchase = customer.buy(shop.router.slug, shop.plan.id, "0700 099 999", page=plans, **HOTSPOT)
    wait = customer.http.get(f"{customer.base}{purchase.headers['Location']}", timeout=5)
    missing = customer.http.get(f"{customer.base}/no/such/page", timeout=5)

    for page in (plans.text, wait.text):
        assert "Mama &lt;Njeri&gt;" in page and "<Njeri>" not in page
        assert 'href="tel:0722000111"' in page and 'href="https://example.com/terms?a=1&amp;b=2"' in page
        assert "/accent/7a1fa2.css" in page
    logo_url = customer.base + plans.text.split('<img src="', 1)[1].split('"', 1)[0]
    logo = requests.get(logo_url, timeout=5)
    assert logo.content == _png() and logo.headers["Content-Type"] == "image/png"
    assert "immutable" in logo.headers["Cache-Control"] and logo.headers["X-Content-Type-Options"] == "nosniff"
    accent = requests.get(f"{customer.base}/accent/7a1fa2.css", timeout=5)
    assert accent.text == ":root{--a:#7a1fa2}" and accent.headers["Content-Type"].startswith("text/css")
    assert requests.get(f"{customer.base}/accent/7a1fa2;x.css", timeout=5).status_code == 404
    assert missing.status_code == 404 and "Mama" not in missing.text  # no router, no brand: still a page


def test_favicon_is_served_from_static_and_linked_with_a_version(app, shop, customer):
    plans = customer.open_plans(shop.router.slug, **HOTSPOT)
    assert '<link rel="icon" href="/static/favicon.ico?v=' in plans.text
    icon = requests.get(f"{customer.base}/favicon.ico", timeout=5)
    assert icon.status_code == 200 and icon.content.startswith(b"\x00\x00\x01\x00") and "max-age" in icon.headers["Cache-Control"]


def test_the_owner_sets_the_brand_in_the_dashboard_for_all_routers_and_for_one(app, signed_in, make_router, make_plan):
    owner, b = signed_in()
    router = make_router(owner)
    make_plan(owner)

    detail = b.get(f"/dashboard/routers/{router.id}")
    assert f"/dashboard/routers/{router.id}/brand" in detail.text
    saved = b.post("/dashboard/brand", {"hotspot_name": "Njeri Net", "accent": "#0a7d33", "support_phone": "0722 000 111"})
    assert ("ok", "Customer page look saved.") in flashes(b.follow(saved).text)
    bad = b.post(f"/dashboard/routers/{router.id}/brand", {"terms_url": "javascript:alert(1)"})
    assert bad.status_code == 400 and any("http:// or https://" in e for e in field_errors(bad.text))
    logo = b.post(
        f"/dashboard/routers/{router.id}/brand",
        {"hotspot_name": "Njeri Net Town"},
        files={"logo": ("logo.png", _png(), "image/png")},
    )
    page = b.follow(logo).text
    assert "Njeri Net Town" in page and "0722 000 111" in page  # the router's own name, the owner's phone

    shown = brands.brand_for(router.id)
    assert (shown.hotspot_name, shown.support_phone, shown.logo_id is not None) == ("Njeri Net Town", "0722 000 111", True)
    actions = db.session.scalars(sa.select(AuditLog.action).where(AuditLog.action == "brand_changed")).all()
    assert len(actions) == 2


def test_another_owners_router_brand_page_is_not_found(app, signed_in, make_owner, make_router):
    _, b = signed_in()
    elsewhere = make_router(make_owner(), name="Not mine")
    assert b.get(f"/dashboard/routers/{elsewhere.id}/brand").status_code == 404

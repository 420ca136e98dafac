"""Issue 17's plan options on the sandbox router, over real RouterOS API bytes: devices per voucher
(``shared-users`` on the plan's profile) and lock to the buying device (``mac-address`` on the user)."""

from __future__ import annotations

import pytest

from portal.sandbox.router import SandboxTrap

from .conftest import wait_until
from .test_purchase_flow import HOTSPOT, _payment


@pytest.fixture
def app_overrides():  # type: ignore[no-untyped-def]
    return {"PORTAL_RATE_LIMITS_ENABLED": False}


def _buy_online(customer, shop, plan, router_box):  # type: ignore[no-untyped-def]
    response = customer.buy(shop.router.slug, plan.id, "0712 345 678", **HOTSPOT)
    assert response.status_code == 303, response.text[:300]
    purchase = response.headers["Location"].replace(customer.base, "")
    assert customer.wait_for(purchase, ("active",), timeout=20)["status"] == "active"
    code = _payment(purchase).voucher.code
    wait_until(lambda: code in router_box.users, timeout=10)
    return code


def test_a_two_device_plan_sets_shared_users_2_and_lets_two_devices_on(shop, make_plan, customer, router_box, worker):
    family = make_plan(shop.owner, name="Family", price=30, devices=2)
    code = _buy_online(customer, shop, family, router_box)

    user = router_box.users[code]
    assert router_box.profiles[user["profile"]]["shared-users"] == "2"
    assert "mac-address" not in user or user["mac-address"] in ("", "00:00:00:00:00:00")
    for n, mac in enumerate(("AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02")):
        router_box.add_host(mac, f"10.5.50.{40 + n}")
        router_box.log_in_host(user=code, password_matches=lambda p: True, ip=f"10.5.50.{40 + n}", mac=mac, login_by="http-pap")
    router_box.add_host("AA:BB:CC:DD:EE:03", "10.5.50.43")
    with pytest.raises(SandboxTrap):  # a third device is one too many
        router_box.log_in_host(user=code, password_matches=lambda p: True, ip="10.5.50.43",
                               mac="AA:BB:CC:DD:EE:03", login_by="http-pap")


def test_a_locked_one_device_voucher_refuses_a_second_device(shop, make_plan, customer, router_box, worker):
    locked = make_plan(shop.owner, name="Mine only", price=20, lock_to_device=True)
    code = _buy_online(customer, shop, locked, router_box)

    user = router_box.users[code]
    assert user["mac-address"] == HOTSPOT["mac"]
    assert router_box.profiles[user["profile"]]["shared-users"] == "1"
    router_box.add_host(HOTSPOT["mac"], HOTSPOT["ip"])
    router_box.log_in_host(user=code, password_matches=lambda p: True, ip=HOTSPOT["ip"], mac=HOTSPOT["mac"], login_by="http-pap")
    router_box.add_host("AA:BB:CC:DD:EE:09", "10.5.50.99")
    with pytest.raises(SandboxTrap, match="MAC"):
        router_box.log_in_host(user=code, password_matches=lambda p: True, ip="10.5.50.99",
                               mac="AA:BB:CC:DD:EE:09", login_by="http-pap")


def test_plan_add_devices_and_lock_show_on_the_plans_page_and_the_printed_cards(shop, customer, signed_in):
    import sqlalchemy as sa

    from portal.core.extensions import db
    from portal.models import Plan

    result = _cli("plan", "add", "--owner", shop.owner.email, "--name", "Family", "--price", "30",
                              "--duration", "1d", "--devices", "2", "--lock-to-device")
    assert result.exit_code == 0, result.output
    family = db.session.scalars(sa.select(Plan).where(Plan.name == "Family")).one()
    assert (family.devices, family.lock_to_device) == (2, True)

    page = customer.open_plans(shop.router.slug, **HOTSPOT).text
    assert "2 devices" in page
    assert "vifaa 2" in customer.open_plans(shop.router.slug, lang="sw", **HOTSPOT).text

    _, b = signed_in(shop.owner)
    assert "locked to the buyer" in b.get("/dashboard/plans").text
    made = b.post("/dashboard/vouchers/batches", {"plan_id": family.id, "router_id": shop.router.id, "count": 1})
    card = b.get(made.headers["Location"] + "/print").text.split('<div class="card">', 1)[1]
    assert "2 devices" in card


def _cli(*args: str):  # type: ignore[no-untyped-def]
    from flask import current_app

    return current_app.test_cli_runner().invoke(args=list(args))

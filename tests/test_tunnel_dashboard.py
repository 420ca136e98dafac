"""What the owner sees of a tunnel router, and what the worker and /healthz make of its state."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import activations
from portal.hotspot.routers import create_router
from portal.models import Activation, Router, TunnelHub, Voucher, utcnow

from .dashboard_support import field_errors, flashes


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PORTAL_TUNNEL_ENDPOINT": "hub.example.net:51820", "PORTAL_TUNNEL_NETWORK": "10.77.0.0/24"}


def _tunnel_router(owner) -> Router:  # type: ignore[no-untyped-def]
    router = create_router(owner=owner, name="Behind NAT", host="", port=8728, username="voucher-portal",
                           password="pw-from-the-script", tunnel=True)
    db.session.commit()
    return router


def _form(**kw: str) -> dict[str, str]:
    data = {"name": "Kibera Hotspot", "connection_mode": "tunnel", "host": "", "port": "8728",
            "api_username": "voucher-portal", "api_password": "", "paybill_id": "0"}
    data.update(kw)
    return data


def test_an_owner_adds_a_tunnel_router_and_gets_its_script(app, signed_in):
    owner, b = signed_in()
    assert "Over the portal&#39;s WireGuard tunnel" in b.get("/dashboard/routers/new").text \
        or "Over the portal's WireGuard tunnel" in b.get("/dashboard/routers/new").text

    added = b.post("/dashboard/routers/new", _form())

    assert added.status_code == 302, field_errors(added.text)
    router = db.session.scalars(sa.select(Router).where(Router.owner_id == owner.id)).one()
    assert (router.connection_mode, router.host, router.tunnel_address) == ("tunnel", "10.77.0.2", "10.77.0.2")
    setup = b.follow(added)
    assert "RouterOS 6 has no WireGuard" in setup.text and "/system device-mode print" in setup.text
    made = b.post(f"/dashboard/routers/{router.id}/setup/script", {"api_username": "voucher-portal",
                                                                     "hotspot_profile": "hsprof1", "html_directory": "hotspot"})
    script = html.unescape(re.search(r'<textarea[^>]*id="setup-script"[^>]*>(.*?)</textarea>', made.text, re.S)[1])
    assert f'private-key="{router.wg_private_key}"' in script
    assert "persistent-keepalive=25s" in script and "address=10.77.0.1/32" in script
    assert 'download="' in made.text  # the script can be saved as a file
    # The private key is only ever inside the script: not on the router's own pages.
    for path in (f"/dashboard/routers/{router.id}", "/dashboard/routers", f"/dashboard/routers/{router.id}/edit"):
        page = b.get(path).text
        assert router.wg_private_key not in page
    assert "tunnel: never connected" in b.get("/dashboard/routers").text


def test_the_router_pages_say_connected_or_stale(app, signed_in):
    owner, b = signed_in()
    router = _tunnel_router(owner)
    router.wg_last_handshake_at = utcnow() - timedelta(seconds=12)
    db.session.commit()
    assert "tunnel: connected, last handshake 12 s ago" in b.get(f"/dashboard/routers/{router.id}").text
    router.wg_last_handshake_at = utcnow() - timedelta(minutes=20)
    db.session.commit()
    detail = b.get(f"/dashboard/routers/{router.id}").text
    from portal.owners.scope import NAIROBI

    assert f"tunnel: stale since {router.wg_last_handshake_at.astimezone(NAIROBI):%d %b %Y %H:%M} Nairobi time" in detail
    assert "Activations wait and retry while the tunnel is down" in detail
    assert "tunnel: stale since" in b.get("/dashboard/routers").text


def test_an_existing_router_switches_to_the_tunnel_and_back(app, signed_in, make_router, router_box):
    owner, b = signed_in()
    router = make_router(owner)
    edit = {"name": router.name, "host": router.host, "port": str(router.port), "api_username": router.api_username,
            "api_password": "", "paybill_id": "0"}
    switched = b.post(f"/dashboard/routers/{router.id}/edit", dict(edit, connection_mode="tunnel"))
    assert switched.status_code == 302, field_errors(switched.text)
    db.session.expire_all()
    router = db.session.get(Router, router.id)
    assert (router.connection_mode, router.host) == ("tunnel", "10.77.0.2")
    assert router.api_password == router_box.password  # the stored password was kept

    no_host = b.post(f"/dashboard/routers/{router.id}/edit", dict(edit, connection_mode="direct", host=""))
    assert no_host.status_code == 400 and "Enter the router's address." in field_errors(no_host.text)
    back = b.post(f"/dashboard/routers/{router.id}/edit", dict(edit, connection_mode="direct", host="203.0.113.5"))
    assert back.status_code == 302
    db.session.expire_all()
    router = db.session.get(Router, router.id)
    assert (router.connection_mode, router.host, router.tunnel_address) == ("direct", "203.0.113.5", "10.77.0.2")


def test_rotate_keys_makes_a_new_key_and_keeps_the_old_one_as_the_peer(app, signed_in):
    owner, b = signed_in()
    router = _tunnel_router(owner)
    old = router.wg_public_key
    b.get(f"/dashboard/routers/{router.id}")
    rotated = b.post(f"/dashboard/routers/{router.id}/tunnel/rotate")
    assert rotated.status_code == 302
    db.session.expire_all()
    router = db.session.get(Router, router.id)
    assert router.wg_previous_public_key == old and router.wg_public_key != old
    assert any("old key keeps working" in text for _, text in flashes(b.follow(rotated).text))


def test_without_a_hub_the_form_offers_no_tunnel(app, signed_in):
    app.config["TUNNEL_ENABLED"] = False
    _, b = signed_in()
    assert "WireGuard tunnel" not in b.get("/dashboard/routers/new").text
    refused = b.post("/dashboard/routers/new", _form())  # a forged choice is read as direct, which needs a host
    assert refused.status_code == 400 and "Enter the router's address." in field_errors(refused.text)


def _queued_activation(router: Router, plan) -> Activation:  # type: ignore[no-untyped-def]
    voucher = Voucher(code="TUNL2345", owner_id=router.owner_id, plan_id=plan.id, router_id=router.id, status="paid",
                      paid_at=utcnow())
    db.session.add(voucher)
    db.session.flush()
    activations.queue_activation(voucher_id=voucher.id, router_id=router.id, device_mac=None, device_ip=None)
    db.session.commit()
    return db.session.scalars(sa.select(Activation).where(Activation.voucher_id == voucher.id)).one()


def test_a_stale_tunnel_is_an_unreachable_router_retried_and_the_owner_sees_why(app, signed_in, make_plan):
    owner, b = signed_in()
    router = _tunnel_router(owner)
    router.wg_last_handshake_at = utcnow() - timedelta(minutes=10)
    db.session.get(TunnelHub, 1).last_sync_at = utcnow()  # `flask tunnel run` is watching: its word counts
    db.session.commit()
    activation = _queued_activation(router, make_plan(owner))

    activations.run_due_activations()  # 10.77.0.2 is never dialled: the test's loopback guard would fail it

    db.session.expire_all()
    activation = db.session.get(Activation, activation.id)
    assert activation.status == "failed" and activation.next_attempt_at > utcnow()
    assert "RouterUnreachable" in activation.last_error and "tunnel: stale since" in activation.last_error
    assert "tunnel: stale since" in b.get(f"/dashboard/routers/{router.id}").text


def test_healthz_shows_the_hub_and_its_stale_peers(app, make_owner):
    import requests

    owner = make_owner()
    fresh, stale = _tunnel_router(owner), _tunnel_router(owner)
    fresh.wg_last_handshake_at = utcnow()
    hub = db.session.get(TunnelHub, 1)
    hub.last_sync_at, hub.peer_count, hub.last_sync_ms = utcnow(), 2, 40
    db.session.commit()
    body = requests.get(f"{app.live_url}/healthz", timeout=5).json()["tunnel"]
    assert body["configured"] is True and body["state"] == "syncing"
    assert (body["peers"], body["stale_peers"], body["last_sync_failed"]) == (2, 1, False)
    assert stale.wg_last_handshake_at is None


def test_test_connection_on_a_tunnel_router_words_the_tunnel_state(app, signed_in):
    owner, b = signed_in()
    router = _tunnel_router(owner)
    app.config["PORTAL_ROUTER_CONNECT_TIMEOUT_S"] = 0.2
    router.host = "127.0.0.1"  # a closed loopback port stands in for the unreachable tunnel address
    router.port = 9
    db.session.commit()
    b.get(f"/dashboard/routers/{router.id}")
    tested = b.follow(b.post(f"/dashboard/routers/{router.id}/test"))
    assert any("over the tunnel (tunnel: never connected" in text for _, text in flashes(tested.text)), flashes(tested.text)

"""Over a real WireGuard tunnel: namespaces this test makes, wireguard-go, the hub made and kept in
sync by `flask tunnel run`, the worker in the hub's namespace, and a router site configured from
the generated script's own WireGuard lines (tests/tunnel_support.py). In CI these tests FAIL when
namespaces or wireguard-go cannot be had; they never skip.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import router_setup
from portal.hotspot.routers import create_router
from portal.models import Activation, Router, TunnelHub
from portal.owners.paybills import register_c2b_urls
from portal.tunnel import peers
from portal.tunnel.status import tunnel_state

from .conftest import wait_until
from .tunnel_support import HUB_ENDPOINT, HUB_PORT, PYTHON, TUNNEL_NETWORK, flask_args, portal_env, run

HOTSPOT = {"mac": "AA:BB:CC:DD:EE:01", "ip": "10.5.50.23", "link-login-only": "http://10.5.50.1/login"}


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    # The hub and the worker run in another network namespace, where only a file database is reachable.
    return f"sqlite:///{tmp_path}/portal.db"


@pytest.fixture
def app_overrides(lab) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "PORTAL_TUNNEL_ENDPOINT": f"{HUB_ENDPOINT}:{HUB_PORT}",
        "PORTAL_TUNNEL_NETWORK": TUNNEL_NETWORK,
        "PORTAL_TUNNEL_INTERFACE": lab.hub.interface,
        "PORTAL_TUNNEL_SYNC_INTERVAL_S": 0.5,
    }


@pytest.fixture
def shop(app, make_owner, make_paybill, make_plan):  # type: ignore[no-untyped-def]
    class Shop:
        pass

    s = Shop()
    s.owner = make_owner()
    s.paybill = make_paybill(s.owner)
    register_c2b_urls(s.paybill)
    s.plan = make_plan(s.owner, rate_limit="2M/5M")
    return s


def _tunnel_router(shop, name: str = "Behind CGNAT") -> Router:  # type: ignore[no-untyped-def]
    router = create_router(owner=shop.owner, name=name, host="", port=8728, username="voucher-portal",
                           password="replaced-by-the-script", tunnel=True)
    db.session.commit()
    return router


def _script_from_cli(app, router: Router) -> str:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["router", "setup-script", "--slug", router.slug])
    assert result.exit_code == 0, result.output
    return result.output


def _start_hub(app, lab) -> None:  # type: ignore[no-untyped-def]
    lab.hub.start(*flask_args("tunnel", "run"), env=portal_env(app), log=lab.tmp / "hub.log")
    assert wait_until(lambda: _hub_synced(), timeout=20), (lab.tmp / "hub.log").read_text()[-3000:]


def _hub_synced() -> bool:
    db.session.expire_all()
    hub = db.session.get(TunnelHub, 1)
    return hub is not None and hub.last_sync_at is not None


def _start_worker(app, lab) -> None:  # type: ignore[no-untyped-def]
    lab.hub.start(*flask_args("worker"), env=portal_env(app), log=lab.tmp / "worker.log")


def _handshake_recorded(router_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(Router, router_id).wg_last_handshake_at is not None


def _hub_peers(lab) -> dict[str, str]:  # type: ignore[no-untyped-def]
    lines = lab.hub.exec("wg", "show", lab.hub.interface, "dump").stdout.splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t")[3] for line in lines}


def _buy(customer, shop, router: Router) -> str:  # type: ignore[no-untyped-def]
    response = customer.buy(router.slug, shop.plan.id, "0712 345 678", **HOTSPOT)
    assert response.status_code == 303, response.text[:500]
    return response.headers["Location"].replace(customer.base, "")


def _probe(lab, tun, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    """From the hub's namespace, log in to the router's API over the tunnel."""
    result = lab.hub.exec(PYTHON, "-m", "portal.sandbox.tunnel_lab", "probe", "--host", tun.tunnel_ip, "--port", str(tun.api_port),
                          f"--username={tun.api_user}", f"--password={tun.api_password}", "--timeout", str(timeout), check=False)
    return result.returncode == 0


def test_a_purchase_is_activated_through_the_tunnel(app, lab, shop, customer, daraja):  # type: ignore[no-untyped-def]
    router = _tunnel_router(shop)
    script = _script_from_cli(app, router)
    _start_hub(app, lab)
    site = lab.add_site()
    tun = lab.configure_router(site, script)
    # The script and the hub agree: the router's key is the hub's peer, at the router's pool address.
    assert tun.tunnel_ip == router.tunnel_address and tun.allowed_address == "10.77.0.1/32"
    assert _hub_peers(lab) == {peers.keys.public_key_of(tun.private_key): f"{router.tunnel_address}/32"}
    assert wait_until(lambda: _handshake_recorded(router.id), timeout=20), "no handshake recorded by the hub"
    _start_worker(app, lab)

    purchase = _buy(customer, shop, router)
    body = customer.wait_for(purchase, ("active", "failed"), timeout=40)

    assert body["status"] == "active", (body, (lab.tmp / "worker.log").read_text()[-3000:])
    assert body["voucher"] in wait_until(site.users, timeout=5)  # on the router that listens only on its tunnel address
    db.session.expire_all()
    counted = db.session.get(Router, router.id)
    assert counted.wg_rx_bytes > 0 and counted.wg_tx_bytes > 0
    assert tunnel_state(counted).state == "connected"
    health = requests.get(f"{app.live_url}/healthz", timeout=5).json()["tunnel"]
    assert (health["state"], health["peers"], health["stale_peers"]) == ("syncing", 1, 0)
    # Nothing of the lab exists in this (the root) namespace: no address, so no route to it.
    root_addresses = run("ip", "-o", "address").stdout
    for prefix in ("10.77.0.", "198.51.100.", "198.18.0."):
        assert prefix not in root_addresses


def test_adding_a_router_while_another_is_mid_activation_does_not_interrupt_it(app, lab, shop, customer, daraja):  # type: ignore[no-untyped-def]
    first = _tunnel_router(shop)
    script = _script_from_cli(app, first)
    _start_hub(app, lab)
    site = lab.add_site()
    lab.configure_router(site, script, delay_s=1.0)  # every command takes a second: the activation takes several
    assert wait_until(lambda: _handshake_recorded(first.id), timeout=20)
    _start_worker(app, lab)
    purchase = _buy(customer, shop, first)

    def running() -> Activation | None:
        db.session.expire_all()
        return db.session.scalars(sa.select(Activation).where(Activation.router_id == first.id,
                                                              Activation.status == "running")).first()

    assert wait_until(running, timeout=20), "the activation never started"
    second = _tunnel_router(shop, name="Second site")
    assert wait_until(lambda: len(_hub_peers(lab)) == 2, timeout=10), "the hub did not add the second router"
    assert running() is not None, "the first activation should still be in flight when the second peer is added"

    body = customer.wait_for(purchase, ("active", "failed"), timeout=40)

    assert body["status"] == "active"
    db.session.expire_all()
    activation = db.session.scalars(sa.select(Activation).where(Activation.router_id == first.id)).one()
    assert activation.attempts == 1 and activation.last_error is None  # no retry: its connection never broke
    assert second.tunnel_address != first.tunnel_address


def test_one_router_cannot_reach_another_routers_tunnel_address(app, lab, shop):  # type: ignore[no-untyped-def]
    a, b = _tunnel_router(shop, "Site A"), _tunnel_router(shop, "Site B")
    script_a, script_b = _script_from_cli(app, a), _script_from_cli(app, b)
    _start_hub(app, lab)
    site_a, site_b = lab.add_site(), lab.add_site()
    tun_a = lab.configure_router(site_a, script_a)
    # Site B is careless: it would send the whole pool into the tunnel. And the hub host has IP
    # forwarding switched on globally, as Docker does.
    lab.configure_router(site_b, script_b, lax_allowed_ips=TUNNEL_NETWORK)
    lab.hub.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
    assert wait_until(lambda: _handshake_recorded(a.id) and _handshake_recorded(b.id), timeout=20)
    time.sleep(1.5)  # a hub pass after the sysctl turns forwarding off on the hub interface again

    assert _probe(lab, tun_a), "the hub itself reaches router A"
    blocked = site_b.exec(PYTHON, "-m", "portal.sandbox.tunnel_lab", "connect", "--host", tun_a.tunnel_ip,
                          "--port", str(tun_a.api_port), "--timeout", "3", check=False)
    assert blocked.returncode == 1, "router B reached router A through the hub"
    forwarding = lab.hub.exec("cat", f"/proc/sys/net/ipv4/conf/{lab.hub.interface}/forwarding").stdout.strip()
    assert forwarding == "0"


def test_a_router_reaches_no_service_on_the_portal_host(app, lab, shop):  # type: ignore[no-untyped-def]
    """Only the replies to the portal's own API connections come back in: a service listening on
    every address of the hub host (the web app, PostgreSQL, SSH…) is refused to a router."""
    from portal.tunnel import pool

    router = _tunnel_router(shop, "Curious site")
    script = _script_from_cli(app, router)
    _start_hub(app, lab)
    site = lab.add_site()
    tun = lab.configure_router(site, script)
    assert wait_until(lambda: _handshake_recorded(router.id), timeout=20)
    hub_ip = str(pool.hub_address())
    listener = lab.hub.start(PYTHON, "-m", "http.server", "--bind", "0.0.0.0", "18080", log=lab.tmp / "hub-service.log")
    assert wait_until(lambda: lab.hub.exec(PYTHON, "-m", "portal.sandbox.tunnel_lab", "connect", "--host", hub_ip,
                                           "--port", "18080", "--timeout", "1", check=False).returncode == 0, timeout=10)

    refused = site.exec(PYTHON, "-m", "portal.sandbox.tunnel_lab", "connect", "--host", hub_ip, "--port", "18080",
                        "--timeout", "3", check=False)
    assert refused.returncode == 1, "the router reached a service on the hub host"
    assert _probe(lab, tun), "the portal's own API connection to the router still works"
    rules = lab.hub.exec("nft", "list", "table", "inet", f"portal_tunnel_{lab.hub.interface}").stdout
    assert "ct state established,related accept" in rules and "drop" in rules
    listener.terminate()


def test_key_rotation_keeps_the_router_reachable_and_drops_the_old_peer(app, lab, shop):  # type: ignore[no-untyped-def]
    router = _tunnel_router(shop)
    script = _script_from_cli(app, router)
    _start_hub(app, lab)
    site = lab.add_site()
    tun = lab.configure_router(site, script)
    assert wait_until(lambda: _handshake_recorded(router.id), timeout=20)
    old_key = router.wg_public_key

    rotated = app.test_cli_runner().invoke(args=["router", "rotate-keys", "--slug", router.slug])
    assert rotated.exit_code == 0, rotated.output
    db.session.expire_all()
    router = db.session.get(Router, router.id)
    new_key = router.wg_public_key
    assert wait_until(lambda: set(_hub_peers(lab)) == {old_key, new_key}, timeout=10)
    assert _hub_peers(lab)[old_key] == f"{router.tunnel_address}/32"  # the key in use keeps the address
    assert _probe(lab, tun), "before the new script is pasted the old key still carries the API"

    new_script = router_setup.setup_script(router, app.config["PORTAL_BASE_URL"],
                                           router_setup.SetupOptions(tunnel=peers.setup_for(router)), "unused")
    # An API connection the portal holds open, asked every 0.2 s, before, during and after the switch.
    watch = lab.hub.start(PYTHON, "-m", "portal.sandbox.tunnel_lab", "watch", "--host", tun.tunnel_ip,
                          "--port", str(tun.api_port), f"--username={tun.api_user}", f"--password={tun.api_password}",
                          "--timeout", "10", "--seconds", "8", log=lab.tmp / "watch.log")
    time.sleep(2)
    lab.rekey_router(site, new_script)

    def rotation_finished() -> bool:
        db.session.expire_all()
        return db.session.get(Router, router.id).wg_previous_public_key is None

    assert wait_until(rotation_finished, timeout=20), "the hub never saw the new key's handshake"
    assert _hub_peers(lab) == {new_key: f"{router.tunnel_address}/32"}
    assert watch.wait(timeout=30) == 0, (lab.tmp / "watch.log").read_text()
    assert "failed 0" in (lab.tmp / "watch.log").read_text()  # not one command lost across the key switch
    assert all(_probe(lab, tun) for _ in range(3)), "new connections reach the router over the new key"

"""The tunnel's address pool and keys: one address per router, never twice, held until deletion;
keys as WireGuard makes them, private halves encrypted at rest; the hub's peer list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.config import ConfigError
from portal.core.extensions import db
from portal.hotspot.routers import create_router, set_connection_mode
from portal.models import Router, TunnelHub
from portal.tunnel import hub, keys, peers, pool

from .conftest import build_app
from .tunnel_support import ensure_wireguard

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PORTAL_TUNNEL_ENDPOINT": "hub.example.net:51820", "PORTAL_TUNNEL_NETWORK": "10.77.0.0/24",
            "PORTAL_TUNNEL_INTERFACE": "wg-test"}


def _add(owner, name: str = "Site", **kw) -> Router:  # type: ignore[no-untyped-def]
    router = create_router(owner=owner, name=name, host="", port=8728, username="u", password="p", tunnel=True, **kw)
    db.session.commit()
    return router


def test_addresses_are_never_handed_out_twice_by_two_processes_adding_at_once(app, make_owner, database_url, tmp_path):
    owner = make_owner()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.tunnel_adder", database_url, str(owner.id), "25", str(go)],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    db.session.expire_all()
    addresses = list(db.session.scalars(sa.select(Router.tunnel_address)))
    assert len(addresses) == 50 and len(set(addresses)) == 50
    assert "10.77.0.1" not in addresses and "10.77.0.0" not in addresses
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TunnelHub)) == 1  # one hub keypair, though both raced for it


def test_a_router_keeps_its_address_when_it_switches_away_and_back(app, make_owner):
    owner = make_owner()
    first, second = _add(owner, "A"), _add(owner, "B")
    assert (first.tunnel_address, second.tunnel_address) == ("10.77.0.2", "10.77.0.3")
    assert first.host == "10.77.0.2"  # its API host is its tunnel address
    set_connection_mode(first, "direct", "203.0.113.9")
    db.session.commit()
    assert (first.connection_mode, first.host, first.tunnel_address) == ("direct", "203.0.113.9", "10.77.0.2")
    _add(owner, "C")  # the held address is not handed to anyone else
    set_connection_mode(first, "tunnel")
    db.session.commit()
    assert (first.host, first.tunnel_address) == ("10.77.0.2", "10.77.0.2")
    db.session.delete(second)
    db.session.commit()
    assert _add(owner, "D").tunnel_address == "10.77.0.3"  # freed when its router is deleted


def test_a_direct_router_switches_to_the_tunnel(app, make_owner, make_router):
    router = make_router(make_owner())
    assert router.connection_mode == "direct" and router.tunnel_address is None
    set_connection_mode(router, "tunnel")
    db.session.commit()
    assert router.connection_mode == "tunnel" and router.host == router.tunnel_address == "10.77.0.2"
    assert keys.public_key_of(router.wg_private_key) == router.wg_public_key


def test_a_full_pool_says_so(app, make_owner):
    app.config["PORTAL_TUNNEL_NETWORK"] = "10.9.0.0/29"
    owner = make_owner()
    made = [_add(owner, f"r{i}").tunnel_address for i in range(5)]  # .2-.6: .1 is the hub's
    assert made == [f"10.9.0.{i}" for i in range(2, 7)]
    with pytest.raises(pool.PoolExhausted):
        _add(owner, "one too many")
    db.session.rollback()


def test_keys_are_wireguard_keys_and_private_halves_are_encrypted_at_rest(app, make_owner):
    router = _add(make_owner())
    stored = db.session.execute(sa.text("SELECT wg_private_key_encrypted, wg_public_key FROM routers")).one()
    assert router.wg_private_key not in stored[0] and stored[1] == router.wg_public_key
    hub_row = db.session.execute(sa.text("SELECT private_key_encrypted, public_key FROM tunnel_hub")).one()
    hub_private = db.session.get(TunnelHub, 1).private_key
    assert hub_private not in hub_row[0]
    # The same public key `wg pubkey` derives (wireguard-tools is installed by scripts/install-wireguard).
    ensure_wireguard()
    derived = subprocess.run(["wg", "pubkey"], input=hub_private, capture_output=True, text=True, check=True).stdout.strip()
    assert derived == hub_row[1] == keys.public_key_of(hub_private)
    assert keys.is_key(router.wg_public_key) and not keys.is_key("c2hvcnQ=")


def test_the_setup_values_come_from_the_router_and_the_hub(app, make_owner):
    router = _add(make_owner())
    setup = peers.setup_for(router)
    assert setup.router_private_key == router.wg_private_key
    assert setup.hub_address == "10.77.0.1" and setup.router_address == "10.77.0.2/24"
    assert (setup.endpoint_host, setup.endpoint_port) == ("hub.example.net", 51820)


def test_the_hub_lists_one_slash_32_per_router_and_holds_the_old_key_until_the_new_one_shakes_hands(app, make_owner):
    owner = make_owner()
    a, b = _add(owner, "A"), _add(owner, "B")
    old = b.wg_public_key
    peers.rotate_keys(b)
    db.session.commit()
    lines = hub.desired_peers([a, b])
    assert lines == [hub.PeerLine(a.wg_public_key, "10.77.0.2"), hub.PeerLine(old, "10.77.0.3"),
                     hub.PeerLine(b.wg_public_key, None)]
    peers.rotate_keys(b)  # again before pasting: the key in use stays the old one
    assert b.wg_previous_public_key == old
    conf = hub.render_conf("PRIV", 51820, lines)
    assert conf.count("[Peer]") == 3 and conf.count("AllowedIPs") == 2 and "ListenPort = 51820" in conf


def test_tunnel_settings_are_checked_at_start(database_url, daraja):
    for bad in ({"PORTAL_TUNNEL_ENDPOINT": "no-port"}, {"PORTAL_TUNNEL_ENDPOINT": "h:70000"},
                {"PORTAL_TUNNEL_ENDPOINT": "h:51820", "PORTAL_TUNNEL_NETWORK": "10.77.0.1/24"},
                {"PORTAL_TUNNEL_ENDPOINT": "h:51820", "PORTAL_TUNNEL_NETWORK": "10.77.0.0/30"},
                {"PORTAL_TUNNEL_ENDPOINT": "h:51820", "PORTAL_TUNNEL_INTERFACE": "much-too-long-name0"}):
        with pytest.raises(ConfigError):
            build_app(database_url, daraja.base_url, **bad)
    plain = build_app(database_url, daraja.base_url)
    assert plain.config["TUNNEL_ENABLED"] is False  # no endpoint: everything works as before


def test_without_a_hub_a_router_cannot_be_made_a_tunnel_router(app, make_owner):
    app.config["TUNNEL_ENABLED"] = False
    owner = make_owner()
    with pytest.raises(pool.TunnelNotConfigured):
        _add(owner)
    db.session.rollback()

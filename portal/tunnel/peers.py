"""A router's side of the tunnel: its address and keypair, key rotation, and what its script needs."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from ..models import Router, utcnow
from . import keys, pool

ROUTER_INTERFACE = "wg-portal"  # the interface the setup script makes on the router


@dataclass(frozen=True)
class TunnelSetup:
    """The values the router's WireGuard lines need (router_setup.tunnel_lines)."""

    interface: str
    router_private_key: str
    router_address: str  # with the pool's prefix, e.g. 10.77.0.2/16
    hub_public_key: str
    hub_address: str
    endpoint_host: str
    endpoint_port: int


def enable_tunnel(router: Router) -> None:
    """Make ``router`` a tunnel router: a pool address (kept if it has one), a keypair (kept if it has
    one), and its API host set to the tunnel address. Raises TunnelNotConfigured, PoolExhausted.
    The caller commits; `flask tunnel run` adds the peer on its next pass without touching the others."""
    pool.require_enabled()
    address = pool.assign_address(router)
    if not router.wg_public_key:
        private, public = keys.new_keypair()
        router.wg_private_key, router.wg_public_key = private, public
    router.connection_mode = "tunnel"
    router.host = address


def rotate_keys(router: Router) -> None:
    """A new router keypair (and so a new script). The key in use stays the hub's peer until the new
    one has shaken hands, so the router stays reachable until the owner pastes the new script.
    Rotating again before that keeps the key in use as the old one. The caller commits."""
    pool.require_enabled()
    if router.connection_mode != "tunnel" or not router.wg_public_key:
        raise ValueError("only a tunnel router has keys to rotate")
    if router.wg_previous_public_key is None:
        router.wg_previous_public_key = router.wg_public_key
    private, public = keys.new_keypair()
    router.wg_private_key, router.wg_public_key = private, public
    router.wg_rotated_at = utcnow()


def setup_for(router: Router) -> TunnelSetup:
    """The tunnel half of the router's setup script; makes the hub keypair if nobody has yet (caller commits)."""
    pool.require_enabled()
    hub = pool.ensure_hub()
    cfg = current_app.config
    return TunnelSetup(
        interface=ROUTER_INTERFACE,
        router_private_key=router.wg_private_key,
        router_address=f"{router.tunnel_address}/{pool.network().prefixlen}",
        hub_public_key=hub.public_key,
        hub_address=str(pool.hub_address()),
        endpoint_host=cfg["TUNNEL_ENDPOINT_HOST"],
        endpoint_port=cfg["TUNNEL_LISTEN_PORT"],
    )

"""The hub row (its keypair) and the address pool: one unique tunnel address per router."""

from __future__ import annotations

import ipaddress
import logging

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from ..core.extensions import db
from ..models import Router, TunnelHub
from . import keys

log = logging.getLogger(__name__)

HUB_ID = 1


class TunnelNotConfigured(RuntimeError):
    """PORTAL_TUNNEL_ENDPOINT is not set, so no router can use the tunnel."""


class PoolExhausted(RuntimeError):
    """Every address of PORTAL_TUNNEL_NETWORK is held by a router."""


def is_enabled() -> bool:
    return bool(current_app.config.get("TUNNEL_ENABLED"))


def require_enabled() -> None:
    if not is_enabled():
        raise TunnelNotConfigured(
            "the portal has no WireGuard hub: the operator sets PORTAL_TUNNEL_ENDPOINT (see the README)"
        )


def network() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(current_app.config["PORTAL_TUNNEL_NETWORK"])


def hub_address() -> ipaddress.IPv4Address:
    """The hub takes the network's first address."""
    return network().network_address + 1


def ensure_hub() -> TunnelHub:
    """The hub row, made (with a fresh keypair, private key encrypted) by whichever process asks first.

    Two processes racing both generate a key; the primary key lets one insert win and the other
    reads the winner's row. Runs inside the caller's transaction (a savepoint); the caller commits.
    """
    hub = db.session.get(TunnelHub, HUB_ID)
    if hub is not None:
        return hub
    private, public = keys.new_keypair()
    try:
        with db.session.begin_nested():
            hub = TunnelHub(id=HUB_ID, public_key=public)
            hub.private_key = private
            db.session.add(hub)
    except IntegrityError:
        hub = db.session.get(TunnelHub, HUB_ID, populate_existing=True)
        if hub is None:
            raise
    else:
        log.info("tunnel hub keypair created (public key %s)", public)
    return hub


def assign_address(router: Router) -> str:
    """Give ``router`` the lowest free pool address unless it already holds one; the caller commits.

    Never hands one address out twice: on PostgreSQL the hub row is locked (FOR UPDATE) so adders
    take turns and each sees the others' committed addresses; on SQLite every write transaction is
    IMMEDIATE, which serialises them too. The unique constraint on tunnel_address is the backstop:
    a collision moves on to the next address in a savepoint.
    """
    if router.tunnel_address:
        return router.tunnel_address
    ensure_hub()
    db.session.flush()  # the router needs its id for the UPDATE below
    db.session.execute(sa.select(TunnelHub.id).where(TunnelHub.id == HUB_ID).with_for_update())
    used = set(db.session.scalars(sa.select(Router.tunnel_address).where(Router.tunnel_address.is_not(None))))
    hub = hub_address()
    for candidate in network().hosts():
        address = str(candidate)
        if candidate == hub or address in used:
            continue
        try:
            with db.session.begin_nested():
                db.session.execute(
                    sa.update(Router).where(Router.id == router.id).values(tunnel_address=address)
                    .execution_options(synchronize_session=False)
                )
        except IntegrityError:
            used.add(address)
            continue
        set_committed_value(router, "tunnel_address", address)
        return address
    raise PoolExhausted(f"every address of {network()} is in use; the operator widens PORTAL_TUNNEL_NETWORK")

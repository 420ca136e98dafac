"""Routers in the database ↔ connections in the routeros package."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import joinedload

from ..core.extensions import db
from ..models import ROUTER_STATES, Activation, Router, User, utcnow
from ..routeros import hotspot
from ..routeros.connection import RouterConnection, RouterCredentials, RouterPool
from ..routeros.errors import RouterCommandFailed, RouterError, RouterLoginFailed, RouterUnreachable
from ..tunnel import peers as tunnel_peers
from ..tunnel import status as tunnel_status

log = logging.getLogger(__name__)


def router_pool() -> RouterPool:
    """One pool per app (and so per process): one reused, locked connection per router."""
    pool = current_app.extensions.get("portal_router_pool")
    if pool is None:
        cfg = current_app.config
        pool = RouterPool(
            connect_timeout=cfg["PORTAL_ROUTER_CONNECT_TIMEOUT_S"],
            command_timeout=cfg["PORTAL_ROUTER_COMMAND_TIMEOUT_S"],
        )
        current_app.extensions["portal_router_pool"] = pool
    return pool


_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,253})$")


def is_hotspot_dns_name(value: str) -> bool:
    """A host name (lower case, no scheme, path, trailing dot or IP) that can name a hotspot."""
    if not _HOST_NAME.match(value) or ".." in value or "." not in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return True
    return False


def credentials_for(router: Router) -> RouterCredentials:
    return RouterCredentials(
        host=router.host,
        port=router.port,
        username=router.api_username,
        password=router.api_password,
        use_tls=router.use_tls,
        label=router.slug,
    )


def connection_for(router: Router) -> RouterConnection:
    return router_pool().get(router.id, credentials_for(router))


def new_router_slug(name: str) -> str:
    """Readable and unique: 'Mama Njeri Cafe' → 'mama-njeri-cafe-4k2'."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "router"
    while True:
        slug = f"{base}-{secrets.token_hex(2)}"
        if not db.session.scalar(sa.select(Router.id).where(Router.slug == slug)):
            return slug


def create_router(
    *,
    owner: User,
    name: str,
    host: str,
    port: int,
    username: str,
    password: str,
    use_tls: bool = False,
    hotspot_server: str | None = None,
    slug: str | None = None,
    tunnel: bool = False,
) -> Router:
    """Add a router with its API password encrypted; the caller commits.

    ``tunnel``: reached over the WireGuard hub; ``host`` is ignored and becomes the router's pool
    address (raises tunnel.pool.TunnelNotConfigured or PoolExhausted)."""
    router = Router(
        owner_id=owner.id,
        name=name,
        slug=slug or new_router_slug(name),
        host=host,
        port=port,
        use_tls=use_tls,
        api_username=username,
        hotspot_server=hotspot_server,
    )
    router.api_password = password
    db.session.add(router)
    if tunnel:
        tunnel_peers.enable_tunnel(router)
    return router


def set_connection_mode(router: Router, mode: str, host: str | None = None) -> None:
    """direct (at ``host``, which it needs) or tunnel (its pool address, which it keeps when it
    switches back). The caller commits; the pooled connection follows the new host on next use."""
    if mode == "tunnel":
        tunnel_peers.enable_tunnel(router)
    elif mode == "direct":
        if not host:
            raise ValueError("a router reached directly needs its address")
        router.connection_mode, router.host = "direct", host
    else:
        raise ValueError(f"unknown connection mode {mode!r}")
    router_pool().discard(router.id)


# --- dashboard: edit, disable, test, live sessions -------------------------------------------


def update_router(
    router: Router,
    *,
    name: str,
    host: str,
    port: int,
    username: str,
    use_tls: bool,
    hotspot_server: str | None,
    paybill_id: int | None,
    password: str | None = None,
) -> None:
    """Change a router's settings; an empty ``password`` keeps the stored one. The caller commits.

    The pooled connection is rebuilt on its next use, because the pool compares credentials.
    """
    router.name = name
    router.host = host
    router.port = port
    router.api_username = username
    router.use_tls = use_tls
    router.hotspot_server = hotspot_server or None
    router.paybill_id = paybill_id
    if password:
        router.api_password = password
        router.login_refused_at = None


def set_router_status(router: Router, status: str) -> None:
    """active | disabled. A disabled router sells nothing (its /r/<slug> page is gone). Caller commits."""
    if status not in ROUTER_STATES:
        raise ValueError(f"unknown router status {status!r}")
    router.status = status
    if status == "disabled":
        router_pool().discard(router.id)


@dataclass(frozen=True)
class ConnectionReport:
    identity: str
    hotspot_servers: list[str]
    hotspot_dns_names: list[str] = field(default_factory=list)
    learned_dns_name: str | None = None  # the router's name, now kept because the owner set none


class RouterAddressRefused(RouterError):
    """The address points at the portal's own machine or link-local network (production only)."""


def check_connection(router: Router) -> ConnectionReport:
    """Log in with the stored credentials on a fresh connection, read identity and hotspot servers.

    Records the outcome on the router (last_seen_at, or last_error) and commits. Raises
    RouterAddressRefused (production: a loopback or link-local address, so the button cannot probe
    the portal's own network), RouterUnreachable in plain words (no socket text: refused and
    timed out read alike), RouterLoginFailed or RouterCommandFailed with the router's own words.
    """
    creds = credentials_for(router)
    db.session.commit()  # no transaction held open while we wait on the network
    try:
        if current_app.config["IS_PRODUCTION"]:
            _refuse_internal_host(creds.host, router.slug)
        report = _read_report(creds, router.slug, router.hotspot_server)
    except RouterError as exc:
        worded = _over_the_tunnel(router, exc)
        router.last_error = str(worded)[:500]
        if isinstance(exc, RouterLoginFailed):
            router.login_refused_at = utcnow()
        db.session.commit()
        if worded is exc:
            raise
        raise worded from exc
    router.last_seen_at = utcnow()
    router.last_error = None
    router.login_refused_at = None
    report = _learn_dns_name(router, report)
    db.session.commit()
    return report


def _over_the_tunnel(router: Router, exc: RouterError) -> RouterError:
    """A tunnel router that cannot be reached: say what the hub knows, not "check the address"."""
    state = tunnel_status.tunnel_state(router)
    if state is None or not isinstance(exc, RouterUnreachable):
        return exc
    return RouterUnreachable(
        f"could not reach the router over the tunnel ({state.words}); check that it is on and online and that "
        "its setup script was pasted", router_label=router.slug,
    )


def _learn_dns_name(router: Router, report: ConnectionReport) -> ConnectionReport:
    """A router that reports exactly one hotspot DNS name, on a router row without one, gets it:
    the captive pages then accept that name as the router's login address. An owner's own
    entry is never overwritten, and two names leave the choice to the owner."""
    if router.hotspot_dns_name or len(report.hotspot_dns_names) != 1:
        return report
    name = report.hotspot_dns_names[0]
    if not is_hotspot_dns_name(name):
        log.warning("router %s reported an unusable hotspot DNS name %r", router.slug, name[:80])
        return report
    router.hotspot_dns_name = name
    return dataclasses.replace(report, learned_dns_name=name)


def _read_report(creds: RouterCredentials, slug: str, server: str | None = None) -> ConnectionReport:
    conn = RouterConnection(
        creds,
        connect_timeout=current_app.config["PORTAL_ROUTER_CONNECT_TIMEOUT_S"],
        command_timeout=current_app.config["PORTAL_ROUTER_COMMAND_TIMEOUT_S"],
    )
    try:
        return ConnectionReport(
            identity=hotspot.read_identity(conn),
            hotspot_servers=hotspot.list_hotspot_servers(conn),
            hotspot_dns_names=_reported_dns_names(conn, server, slug),
        )
    except RouterUnreachable as exc:
        log.info("router %s: test connection failed: %s", slug, exc)
        raise RouterUnreachable(
            f"could not reach {creds.host} on port {creds.port}; check the address, the port and that "
            "the router's API service is enabled for the portal's address",
            router_label=slug,
        ) from exc
    finally:
        conn.close()


def _reported_dns_names(conn: RouterConnection, server: str | None, slug: str) -> list[str]:
    """The hotspot profiles' DNS names; a router whose API user may not read them reports none
    (the test still passes: the name is a convenience, the owner can type it)."""
    try:
        return hotspot.hotspot_dns_names(conn, server)
    except RouterCommandFailed as exc:
        log.info("router %s: could not read hotspot profiles: %s", slug, exc)
        return []


def _refuse_internal_host(host: str, slug: str) -> None:
    """Every address the host resolves to must be outside loopback, link-local and 'any'."""
    refused = RouterAddressRefused(
        f"{host} is this server or its link-local network; enter the router's public, VPN or LAN address",
        router_label=slug,
    )
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RouterUnreachable(f"cannot find the address {host}; check its spelling", router_label=slug) from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            raise refused


def active_sessions(router: Router) -> list[hotspot.ActiveSession]:
    """The router's active hotspot sessions, read live over the pooled connection."""
    conn = connection_for(router)
    db.session.commit()
    return hotspot.list_active_sessions(conn)


def disconnect_session(router: Router, session_id: str) -> None:
    """Log one active session out (already gone counts as done). Raises RouterError."""
    conn = connection_for(router)
    db.session.commit()
    hotspot.disconnect_session(conn, session_id)


def unfinished_activations(router: Router, limit: int = 50) -> list[Activation]:
    """Router work not done yet (pending, running, failed), oldest first, with each voucher loaded."""
    return list(
        db.session.scalars(
            sa.select(Activation)
            .where(Activation.router_id == router.id, Activation.status != "done")
            .options(joinedload(Activation.voucher))
            .order_by(Activation.created_at, Activation.id)
            .limit(limit)
        )
    )


QUIET_PROBE_AFTER = timedelta(minutes=3)


def probe_quiet_routers(limit: int = 20, *, now: datetime | None = None) -> dict[str, int]:
    """Issue 17: log in to API routers the portal has not reached for a few minutes, so a router
    that went down between sales shows (and alerts) within minutes. Oldest contact first, at most
    ``limit`` per run; each probe records last_seen_at or last_error (``check_connection``)."""
    cutoff = (now or utcnow()) - QUIET_PROBE_AFTER
    quiet = db.session.scalars(
        sa.select(Router).where(
            Router.status == "active", Router.transport == "api",
            sa.func.coalesce(Router.last_seen_at, Router.created_at) < cutoff,
        ).order_by(sa.func.coalesce(Router.last_seen_at, Router.created_at)).limit(limit)
    ).all()
    counts = {"reachable": 0, "unreachable": 0}
    for router in quiet:
        try:
            check_connection(router)
            counts["reachable"] += 1
        except RouterError:
            counts["unreachable"] += 1
    return {k: v for k, v in counts.items() if v}

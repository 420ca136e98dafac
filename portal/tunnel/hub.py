"""Reconcile the hub's WireGuard interface with the database, and record what each peer did.

One pass (`flask tunnel apply`): create the interface if it is missing, write the whole peer list
with `wg syncconf` (it changes only what differs, so no other router's tunnel is touched), finish
key rotations whose new key has shaken hands, and store each router's latest handshake and byte
counters. `flask tunnel run` repeats the pass every PORTAL_TUNNEL_SYNC_INTERVAL_S. The interface is
never brought down.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.exc import SQLAlchemyError

from ..core.extensions import db
from ..models import Router, TunnelHub, utcnow
from . import pool, wg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerLine:
    public_key: str
    allowed_ip: str | None  # None: a rotation's new key, waiting for its first handshake


@dataclass(frozen=True)
class SyncReport:
    interface: str
    created: bool
    peers: int
    rotations_finished: int
    handshakes_recorded: int
    elapsed_ms: int

    def line(self) -> str:
        made = " (interface created)" if self.created else ""
        return (f"{self.interface}: {self.peers} peers in sync{made}; {self.rotations_finished} key rotations finished; "
                f"{self.handshakes_recorded} routers' handshakes recorded; {self.elapsed_ms} ms")


def render_conf(private_key: str, listen_port: int, peers: list[PeerLine]) -> str:
    """The device's whole configuration in wg-quick strip form (what `wg syncconf` reads)."""
    lines = ["[Interface]", f"PrivateKey = {private_key}", f"ListenPort = {listen_port}", ""]
    for peer in peers:
        lines += ["[Peer]", f"PublicKey = {peer.public_key}"]
        if peer.allowed_ip:
            lines.append(f"AllowedIPs = {peer.allowed_ip}/32")  # one /32 each: sources are checked against it
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class PeerRow:
    """What a pass needs of one tunnel router, read in one short transaction (names as on Router)."""

    id: int
    slug: str
    wg_public_key: str
    wg_previous_public_key: str | None
    tunnel_address: str
    wg_last_handshake_at: datetime | None
    wg_rx_bytes: int
    wg_tx_bytes: int


def _tunnel_routers() -> list[PeerRow]:
    columns = [getattr(Router, f.name) for f in fields(PeerRow)]
    return [PeerRow(*row) for row in db.session.execute(
        sa.select(*columns).where(Router.connection_mode == "tunnel", Router.wg_public_key.is_not(None)).order_by(Router.id)
    )]


def desired_peers(routers: list[PeerRow] | list[Router]) -> list[PeerLine]:
    peers = []
    for router in routers:
        if router.wg_previous_public_key:
            # The key in use keeps the address until the new one has shaken hands (a handshake
            # needs no allowed IPs); then the next pass moves the address and drops the old key.
            peers.append(PeerLine(router.wg_previous_public_key, router.tunnel_address))
            peers.append(PeerLine(router.wg_public_key, None))
        else:
            peers.append(PeerLine(router.wg_public_key, router.tunnel_address))
    return peers


def apply_once() -> SyncReport:
    """One reconcile pass. Raises TunnelNotConfigured or WgError (recorded on the hub row too).

    Reads in one short transaction and writes in another: no transaction stays open while `ip`
    and `wg` run. A rotation is finished only if the router's key is still the one that shook
    hands (an owner rotating again meanwhile starts a new one).
    """
    pool.require_enabled()
    started = time.monotonic()
    cfg = current_app.config
    name = cfg["PORTAL_TUNNEL_INTERFACE"]
    hub = pool.ensure_hub()
    private_key, kind = hub.private_key, hub.interface_kind
    routers = _tunnel_routers()
    db.session.commit()
    try:
        report = _apply(name, cfg["TUNNEL_LISTEN_PORT"], private_key, kind, routers, started)
    except wg.WgError as exc:
        db.session.rollback()
        hub = db.session.get(TunnelHub, pool.HUB_ID)
        hub.last_sync_error = str(exc)[:500]
        db.session.commit()
        raise
    return report


def _apply(name: str, listen_port: int, private_key: str, kind: str | None, routers: list[PeerRow],
           started: float) -> SyncReport:
    created = not wg.interface_exists(name)
    if created:
        kind = wg.create_interface(name)
        log.info("tunnel interface %s created (%s)", name, kind)
    elif kind is None:
        kind = wg.interface_kind(name)
    wg.prepare_interface(name, f"{pool.hub_address()}/{pool.network().prefixlen}")
    stats = {peer.public_key: peer for peer in wg.dump(name)}
    finished = _finished_rotations(routers, stats)
    routers = [replace(r, wg_previous_public_key=None) if r.id in finished else r for r in routers]
    peers = desired_peers(routers)
    wg.syncconf(name, render_conf(private_key, listen_port, peers))
    changes = _stat_changes(routers, stats)
    _write(finished, changes)
    hub = db.session.get(TunnelHub, pool.HUB_ID)
    hub.interface_kind = kind
    hub.last_sync_at = utcnow()
    hub.last_sync_error = None
    hub.peer_count = len(peers)
    hub.last_sync_ms = int((time.monotonic() - started) * 1000)
    db.session.commit()
    return SyncReport(name, created, len(peers), len(finished), len(changes), hub.last_sync_ms)


def _finished_rotations(routers: list[PeerRow], stats: dict[str, wg.PeerStats]) -> dict[int, str]:
    """Router id → its new key, for every rotation whose new key has shaken hands."""
    finished = {}
    for router in routers:
        new = stats.get(router.wg_public_key)
        if router.wg_previous_public_key and new is not None and new.latest_handshake > 0:
            log.info("router %s: new tunnel key has shaken hands; old key removed", router.slug)
            finished[router.id] = router.wg_public_key
    return finished


def _stat_changes(routers: list[PeerRow], stats: dict[str, wg.PeerStats]) -> list[dict[str, object]]:
    changes = []
    for router in routers:
        seen = [stats[k] for k in (router.wg_public_key, router.wg_previous_public_key) if k in stats]
        if not seen:
            continue
        latest = max(p.latest_handshake for p in seen)
        handshake = datetime.fromtimestamp(latest, UTC) if latest else router.wg_last_handshake_at
        rx, tx = sum(p.rx_bytes for p in seen), sum(p.tx_bytes for p in seen)
        if (handshake, rx, tx) != (router.wg_last_handshake_at, router.wg_rx_bytes, router.wg_tx_bytes):
            changes.append({"rid": router.id, "hs": handshake, "rx": rx, "tx": tx})
    return changes


def _write(finished: dict[int, str], changes: list[dict[str, object]]) -> None:
    table = Router.__table__
    if finished:
        db.session.execute(
            sa.update(table).where(table.c.id == sa.bindparam("rid"), table.c.wg_public_key == sa.bindparam("key"))
            .values(wg_previous_public_key=None),
            [{"rid": rid, "key": key} for rid, key in finished.items()],
        )
    if changes:
        # One executemany for thousands of peers: only the rows whose counters moved.
        db.session.execute(
            sa.update(table).where(table.c.id == sa.bindparam("rid"))
            .values(wg_last_handshake_at=sa.bindparam("hs"), wg_rx_bytes=sa.bindparam("rx"), wg_tx_bytes=sa.bindparam("tx")),
            changes,
        )


def run_forever(app: Flask, stop: threading.Event | None = None) -> None:
    """`flask tunnel run`: a pass every PORTAL_TUNNEL_SYNC_INTERVAL_S until ``stop`` is set. A failed
    pass is logged and recorded on the hub row, and the next one tries again."""
    stop = stop or threading.Event()
    interval = app.config["PORTAL_TUNNEL_SYNC_INTERVAL_S"]
    while not stop.is_set():
        with app.app_context():
            try:
                report = apply_once()
            except wg.WgError as exc:
                log.error("tunnel sync failed: %s", exc)
            except SQLAlchemyError as exc:  # the database restarting must not stop the hub
                db.session.rollback()
                log.error("tunnel sync could not use the database: %s", type(exc).__name__)
            else:
                log.debug("%s", report.line())
            finally:
                db.session.remove()
        stop.wait(interval)

"""What the owner, the activation worker and /healthz are told about a tunnel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..core.extensions import db
from ..models import Router, TunnelHub, utcnow
from ..owners.scope import NAIROBI
from . import pool


@dataclass(frozen=True)
class TunnelState:
    state: str  # connected | never | stale
    last_handshake_at: datetime | None
    seconds_ago: int | None

    @property
    def words(self) -> str:
        if self.state == "connected":
            return f"tunnel: connected, last handshake {_ago(self.seconds_ago or 0)} ago"
        if self.state == "never":
            return "tunnel: never connected (paste the setup script on the router)"
        # Owners read Nairobi time everywhere in the dashboard (and in last_error, which it shows).
        return f"tunnel: stale since {self.last_handshake_at.astimezone(NAIROBI):%d %b %Y %H:%M} Nairobi time"


def _ago(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def stale_after() -> timedelta:
    return timedelta(seconds=current_app.config["PORTAL_TUNNEL_STALE_S"])


def tunnel_state(router: Router, now: datetime | None = None) -> TunnelState | None:
    """None for a router reached directly."""
    if router.connection_mode != "tunnel":
        return None
    now = now or utcnow()
    seen = router.wg_last_handshake_at
    if seen is None:
        return TunnelState("never", None, None)
    ago = max(0, int((now - seen).total_seconds()))
    return TunnelState("stale" if now - seen > stale_after() else "connected", seen, ago)


def hub_is_watching(now: datetime | None = None) -> bool:
    """True when `flask tunnel run` recorded a pass recently, so handshake times are current."""
    last = db.session.scalar(sa.select(TunnelHub.last_sync_at).where(TunnelHub.id == pool.HUB_ID))
    limit = timedelta(seconds=max(30.0, 5 * current_app.config["PORTAL_TUNNEL_SYNC_INTERVAL_S"]))
    return last is not None and (now or utcnow()) - last < limit


def unreachable_reason(router: Router) -> str | None:
    """Why the worker should not even try this router now, or None. Only a current hub's word
    counts: without `flask tunnel run` the handshake times are old, and the worker just tries."""
    state = tunnel_state(router)
    if state is None or state.state == "connected" or not hub_is_watching():
        return None
    return f"the router's {state.words}; it will be retried"


def hub_health() -> dict[str, object]:
    """For /healthz: is a hub configured, when did it last sync, how many peers, how many stale."""
    if not pool.is_enabled():
        return {"configured": False}
    hub = db.session.get(TunnelHub, pool.HUB_ID)
    cutoff = utcnow() - stale_after()
    stale = db.session.scalar(
        sa.select(sa.func.count()).select_from(Router).where(
            Router.connection_mode == "tunnel",
            sa.or_(Router.wg_last_handshake_at.is_(None), Router.wg_last_handshake_at < cutoff),
        )
    )
    return {
        "configured": True,
        "interface": current_app.config["PORTAL_TUNNEL_INTERFACE"],
        "state": "syncing" if hub_is_watching() else ("never synced" if hub is None or hub.last_sync_at is None else "not syncing"),
        "last_sync_at": hub.last_sync_at.isoformat() if hub and hub.last_sync_at else None,
        "last_sync_ms": hub.last_sync_ms if hub else None,
        "last_sync_failed": bool(hub and hub.last_sync_error),
        "peers": hub.peer_count if hub else 0,
        "stale_peers": stale,
    }

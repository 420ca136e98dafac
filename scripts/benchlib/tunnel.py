"""`scripts/bench --only tunnel`: the WireGuard hub (portal/tunnel/) over real wireguard-go devices in
network namespaces the bench makes and removes (portal/sandbox/tunnel_lab.py). Needs root.

- hub sync of 1,000 and of 5,000 peers: one real router site dials the hub; the other peers are
  routers in the database (keys made as the portal makes them). Timed is `flask tunnel apply`'s
  own pass (database read, `wg show dump`, `wg syncconf`, counters written), as recorded on the
  hub row, not the process start. Three passes per size: the pass that adds the new peers to a
  live hub, a pass with nothing to change (what `tunnel run` does every few seconds), and a pass
  adding one router. "No handshake lost": after every pass the real site's session is still the
  one it had (same latest handshake, endpoint kept) and its API answers over the tunnel at once.
- callback → user on the router over the tunnel: gunicorn (production mode, PostgreSQL) in this
  namespace takes the callbacks; `flask worker` and `flask tunnel run` run in the hub namespace
  (PostgreSQL by its Unix socket, which needs no network); the sandbox router runs in this
  process but listens only on its tunnel address inside the site namespace. The clock runs from
  just before the callback POST to the user's arrival on the router.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal.sandbox.tunnel_lab import HUB_ENDPOINT, HUB_PORT, PYTHON, ROOT, TunnelLab, call_in_netns

from . import figures, procs, seed
from .sandboxes import TimedRouter
from .table import Row, median, ms, percentile

NETWORK = "10.77.0.0/16"
SYNC_BAR_S = 2.0
E2E_BAR_S = 0.300  # the direct router's bar: a local tunnel adds well under a millisecond
FAR_BAR_S = 0.260  # 1.3 x one 200 ms command: an activation is one command in the common case


@dataclass(frozen=True)
class TunnelScale:
    quick: bool
    peer_counts: tuple[int, ...]
    purchases: int
    spread_s: float
    runs: int


FULL = TunnelScale(False, (1000, 5000), 100, 10.0, 2)
QUICK = TunnelScale(True, (100, 300), 10, 2.0, 1)


def figures_for(scale: TunnelScale, log_dir: Path, broken: figures.Findings) -> list[Row]:
    problem = _missing_prerequisite()
    if problem:
        broken.append(f"tunnel figures not measured: {problem}")
        return []
    return [*hub_sync(scale, log_dir, broken), *callback_over_tunnel(scale, log_dir, broken)]


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "the tunnel bench needs root (network namespaces, WireGuard devices)"
    if not (shutil.which("wg") and shutil.which("wireguard-go")):
        subprocess.run([str(ROOT / "scripts" / "install-wireguard")], capture_output=True, timeout=900, check=False)
    if not (shutil.which("wg") and shutil.which("wireguard-go")):
        return "wireguard-tools / wireguard-go missing and scripts/install-wireguard could not install them"
    return None


def _app(database_url: str, interface: str) -> Any:
    from portal import create_app
    from portal.core.extensions import db

    app = create_app({
        "DATABASE_URL": database_url, "SECRET_KEY": procs.SECRET_KEY, "PORTAL_ENCRYPTION_KEYS": procs.FERNET_KEY,
        "PORTAL_BASE_URL": procs.PUBLIC_URL, "PORTAL_SCHEDULER": "off",
        **_tunnel_settings(interface),
    })
    with app.app_context():
        db.create_all()
    return app


def _tunnel_settings(interface: str) -> dict[str, str]:
    return {"PORTAL_TUNNEL_ENDPOINT": f"{HUB_ENDPOINT}:{HUB_PORT}", "PORTAL_TUNNEL_NETWORK": NETWORK,
            "PORTAL_TUNNEL_INTERFACE": interface, "PORTAL_TUNNEL_SYNC_INTERVAL_S": "1"}


def _socket_url(tcp_url: str) -> str:
    """The same database by PostgreSQL's Unix socket: reachable from any network namespace."""
    name = tcp_url.rsplit("/", 1)[1]
    return f"postgresql://postgres@/{name}?host=/var/run/postgresql"


def _env(database_url: str, interface: str) -> dict[str, str]:
    env = procs.portal_env(database_url, production=True, **_tunnel_settings(interface))
    env["PYTHONPATH"] = str(ROOT)
    return env


def _script_for(app: Any, router_id: int, password: str) -> str:
    from portal.core.extensions import db
    from portal.hotspot import router_setup
    from portal.models import Router
    from portal.tunnel import peers

    with app.app_context():
        router = db.session.get(Router, router_id)
        router.api_username = "voucher-portal"
        router.api_password = password
        script = router_setup.setup_script(router, procs.PUBLIC_URL,
                                           router_setup.SetupOptions(tunnel=peers.setup_for(router)), password)
        db.session.commit()
        return script


def _flask(*args: str) -> list[str]:
    return [PYTHON, "-m", "flask", "--app", "wsgi", *args]


# --------------------------------------------------------------------------------------------
# Hub sync


def hub_sync(scale: TunnelScale, log_dir: Path, broken: figures.Findings) -> list[Row]:
    tcp_url = procs.recreate_pg_database("bench_tunnel")
    lab = TunnelLab(Path(tempfile.mkdtemp(prefix="tunnel-sync-", dir=log_dir)))
    app = _app(tcp_url, lab.hub.interface)
    env = _env(_socket_url(tcp_url), lab.hub.interface)
    rows = []
    try:
        owner_id, first_id = _first_router(app)
        script = _script_for(app, first_id, "bench-router-pass")
        _apply(lab, env, broken)
        site = lab.add_site()
        tun = lab.configure_router(site, script)
        session = _wait_for_handshake(lab, tun)
        if session is None:
            broken.append("the bench's router site never shook hands with the hub")
            return rows
        have = 1  # tunnel routers in the database (and so peers on the hub)
        for target in scale.peer_counts:
            added = target - have
            _bulk_routers(app, owner_id, have, added)
            added_ms = _apply(lab, env, broken)
            kept = [_session_kept(lab, tun, session, broken, f"adding {added} peers")]
            steady_ms = _apply(lab, env, broken)
            kept.append(_session_kept(lab, tun, session, broken, "a pass with nothing to change"))
            _bulk_routers(app, owner_id, target, 1)
            one_ms = _apply(lab, env, broken)
            kept.append(_session_kept(lab, tun, session, broken, "adding one router"))
            have = target + 1
            peers = len(lab.hub.exec("wg", "show", lab.hub.interface, "peers").stdout.split())
            if peers != have:
                broken.append(f"the hub has {peers} peers, the database {have} tunnel routers")
            worst = max(added_ms, steady_ms, one_ms) / 1000
            rows.append(Row(
                f"hub sync, {target:,} peers (worst pass)", f"{worst * 1000:.0f} ms", f"< {SYNC_BAR_S * 1000:.0f} ms",
                worst < SYNC_BAR_S and all(kept),
                [f"adding {added:,} peers to a live hub {added_ms:.0f} ms; nothing to change {steady_ms:.0f} ms; "
                 f"one router added {one_ms:.0f} ms; the real router site's session kept through all three: {all(kept)} "
                 f"(same handshake, API answered over the tunnel right after); `wg syncconf` over wireguard-go"],
            ))
    finally:
        lab.close()
        procs.drop_pg_database("bench_tunnel")
    return rows


def _first_router(app: Any) -> tuple[int, int]:
    from portal.core.extensions import db
    from portal.hotspot.routers import create_router
    from portal.owners.accounts import create_owner

    with app.app_context():
        owner = create_owner("tunnel@bench.example", seed.OWNER_PASSWORD)
        db.session.flush()
        router = create_router(owner=owner, name="Dials in", host="", port=8728, username="voucher-portal",
                               password="bench-router-pass", tunnel=True)
        db.session.commit()
        return owner.id, router.id


def _bulk_routers(app: Any, owner_id: int, start: int, count: int) -> None:
    """``count`` more tunnel routers, keys made and encrypted as the portal makes them (addresses
    are given in order here: assigning 5,000 one by one is the pool test's business, not this one's)."""
    from portal.core.crypto import encrypt_secret
    from portal.core.extensions import db
    from portal.models import Router
    from portal.tunnel import keys

    network = ipaddress.IPv4Network(NETWORK)
    with app.app_context():
        used = {a for (a,) in db.session.query(Router.tunnel_address).all()}
        rows, n = [], start
        password = encrypt_secret("bench-router-pass")
        while len(rows) < count:
            n += 1
            address = str(network.network_address + 1 + n)
            if address in used:
                continue
            private, public = keys.new_keypair()
            rows.append(dict(owner_id=owner_id, name=f"Peer {n}", slug=f"peer-{n}", host=address, port=8728,
                             api_username="voucher-portal", api_password_encrypted=password, connection_mode="tunnel",
                             tunnel_address=address, wg_public_key=public, wg_private_key_encrypted=encrypt_secret(private)))
        if rows:
            db.session.execute(Router.__table__.insert(), rows)
        db.session.commit()


def _apply(lab: TunnelLab, env: dict[str, str], broken: figures.Findings) -> float:
    """One `flask tunnel apply` in the hub namespace; its own pass time in ms (from its report)."""
    done = lab.hub.exec(*_flask("tunnel", "apply"), check=False, timeout=120, env=env)
    found = re.search(r"; (\d+) ms$", done.stdout.strip())
    if done.returncode != 0 or found is None:
        broken.append(f"flask tunnel apply failed: {(done.stderr or done.stdout)[-300:]}")
        return float("inf")
    return float(found[1])


def _peer_line(lab: TunnelLab, public_key: str) -> list[str] | None:
    for line in lab.hub.exec("wg", "show", lab.hub.interface, "dump").stdout.splitlines()[1:]:
        parts = line.split("\t")
        if parts[0] == public_key:
            return parts
    return None


def _wait_for_handshake(lab: TunnelLab, tun: Any) -> tuple[str, str] | None:
    from portal.tunnel import keys

    public = keys.public_key_of(tun.private_key)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = _peer_line(lab, public)
        if line and line[4] != "0":
            return public, line[4]
        time.sleep(0.1)
    return None


def _session_kept(lab: TunnelLab, tun: Any, session: tuple[str, str], broken: figures.Findings, what: str) -> bool:
    public, handshake = session
    line = _peer_line(lab, public)
    probe = lab.hub.exec(PYTHON, "-m", "portal.sandbox.tunnel_lab", "probe", "--host", tun.tunnel_ip,
                         f"--username={tun.api_user}", f"--password={tun.api_password}", "--timeout", "2", check=False)
    # WireGuard renews a session every two minutes on its own; a newer handshake is not a lost one.
    kept = line is not None and line[2] != "(none)" and int(line[4]) >= int(handshake) and probe.returncode == 0
    if not kept:
        broken.append(f"the router site's tunnel did not survive {what}: peer {line}, probe exit {probe.returncode}")
    return kept


# --------------------------------------------------------------------------------------------
# Callback → user over the tunnel


class _NoBox:
    host, port, username, password = "0.0.0.0", 8728, "voucher-portal", "bench-router-pass"


def callback_over_tunnel(scale: TunnelScale, log_dir: Path, broken: figures.Findings) -> list[Row]:
    tcp_url = procs.recreate_pg_database("bench_tunnel_e2e")
    lab = TunnelLab(Path(tempfile.mkdtemp(prefix="tunnel-e2e-", dir=log_dir)))
    app = _app(tcp_url, lab.hub.interface)
    shop = seed.make_shop(app, [_NoBox()], email="tunnelshop@bench.example")
    socket_env = _env(_socket_url(tcp_url), lab.hub.interface)
    portal = procs.Gunicorn("wsgi:app", _env(tcp_url, lab.hub.interface), log_dir / "gunicorn-tunnel.log", workers=3, threads=2,
                            cpus="0,1")
    box: TimedRouter | None = None
    try:
        from portal.core.extensions import db
        from portal.hotspot.routers import set_connection_mode
        from portal.models import Router

        with app.app_context():
            set_connection_mode(db.session.get(Router, shop.router_ids[0]), "tunnel")
            db.session.commit()
        script = _script_for(app, shop.router_ids[0], _NoBox.password)
        lab.hub.start(*_flask("tunnel", "run"), env=socket_env, log=log_dir / "tunnel-run.log")
        site = lab.add_site()
        deadline = time.monotonic() + 20
        while not _hub_up(lab) and time.monotonic() < deadline:
            time.sleep(0.1)
        tun = lab.configure_wireguard(site, script)
        box = TimedRouter(host=tun.tunnel_ip, port=tun.api_port, username=tun.api_user, password=tun.api_password,
                          identity="Bench router over the tunnel")
        call_in_netns(site.netns, box.start)  # its listener exists only inside the site's namespace
        if _wait_for_handshake(lab, tun) is None:
            broken.append("the bench's tunnel router never shook hands with the hub")
            return []
        lab.hub.start(*_flask("worker"), env=socket_env, log=log_dir / "flask-worker-tunnel.log")
        portal.start()
        figures._send_and_wait(portal, app, shop, [box], [0], 0.05, "TW", broken, timeout=30)  # warm-up
        rows = []
        # Then the router as far away as tunnels put them: 200 ms for every command it answers. One
        # router's API connection runs one command at a time (add, then the device login: 0.4 s of
        # it per purchase), so this one router gets a purchase a second, as each of the direct
        # figure's 20 routers does, in twice the runs.
        far = max(5, scale.purchases // 10)
        for delay_s, bar_s, title, tag, purchases, runs in ((0.0, E2E_BAR_S, "", "TU", scale.purchases, scale.runs),
                                                           (0.2, FAR_BAR_S, ", router at 200 ms/command", "TF", far, 2 * scale.runs)):
            box.command_delay_s = delay_s
            samples, per_run = [], []
            for run in range(runs):
                if delay_s:
                    time.sleep(1.0)  # a run starts a purchase-interval after the last, as purchases do within it
                lat = figures._send_and_wait(portal, app, shop, [box], list(range(purchases)),
                                             scale.spread_s / purchases, f"{tag}{run}", broken, timeout=30)
                samples += lat
                per_run.append(f"median {ms(median(lat))} p95 {ms(percentile(lat, 95))}")
            p95 = percentile(samples, 95)
            rows.append(Row(f"callback → user on router over the tunnel p95{title}", ms(p95), f"< {bar_s * 1000:.0f} ms", p95 < bar_s,
                            [f"{purchases} purchases over {scale.spread_s:.0f} s, {runs} run(s): " + "; ".join(per_run)
                             + "; gunicorn here, `flask worker` and `flask tunnel run` in the hub namespace, the router behind "
                               "wireguard-go in its own namespace"]))
        return rows
    finally:
        portal.stop()
        lab.close()
        if box is not None:
            box.stop()
        procs.drop_pg_database("bench_tunnel_e2e")


def _hub_up(lab: TunnelLab) -> bool:
    return lab.hub.exec("ip", "link", "show", lab.hub.interface, check=False).returncode == 0

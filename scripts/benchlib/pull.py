"""`scripts/bench --only pull`: routers that fetch their own work over HTTP (hotspot/pull_sync.py).

Two figures, on PostgreSQL with gunicorn in production mode:

- callback → user on a pull router: sandbox pulling routers (portal/sandbox/pulling_router.py)
  sync every interval at random phases against the portal; success callbacks are spread over two
  intervals; the clock runs from just before the callback POST to the moment the sandbox router
  added the user. A customer waits for the next sync, so the bar is the interval + 1 s. The time
  to "voucher active" (the router's acknowledgement, sent at once by the follow-up sync) is noted.
- 2,000 routers syncing every 15 s (about 133 syncs/s): each router's sync at its own phase, the
  body a real router sends (version, no acks, five users' usage), answered with an empty answer;
  the same schedule against a bare Flask endpoint in the same run, and the ratio of the p95s.

They run against the bench's portal (database bench_portal) after the other web figures.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import load, procs, seed
from .figures import Findings, hook_path
from .sandboxes import TimedRouter
from .table import Row, median, ms, percentile

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True)
class PullScale:
    quick: bool
    e2e_routers: int
    e2e_interval_s: int
    e2e_purchases: int
    e2e_spread_intervals: int
    fleet_routers: int
    fleet_interval_s: float
    fleet_warmup_s: float
    fleet_seconds: float
    client_threads: int


FULL = PullScale(False, 20, 15, 100, 2, 2000, 15.0, 5.0, 30.0, 24)
QUICK = PullScale(True, 3, 5, 6, 1, 100, 15.0, 1.0, 2.0, 6)


def figures(portal: procs.Gunicorn, bare: procs.Gunicorn, app: Any, scale: PullScale, broken: Findings) -> list[Row]:
    """Both figures against the running portal (PostgreSQL, production mode) and the bare Flask app."""
    return [callback_to_pull_router(portal, app, scale, broken), *fleet_syncs(portal, bare, app, scale, broken)]


# --------------------------------------------------------------------------------------------
# Callback → user on a pull router


def make_pull_shop(app: Any, count: int, interval_s: int, *, email: str) -> tuple[seed.Shop, list[str]]:
    """An owner with a paybill and plans (as seed.make_shop) and ``count`` pull routers; their tokens."""
    from portal.core.extensions import db
    from portal.hotspot.pull_sync import create_pull_router
    from portal.models import User

    shop = seed.make_shop(app, [], email=email)
    tokens = []
    with app.app_context():
        owner = db.session.get(User, shop.owner_id)
        for i in range(count):
            router, token = create_pull_router(owner=owner, name=f"Bench Kiosk {i}", interval_s=interval_s)
            db.session.flush()
            shop.router_ids.append(router.id)
            shop.router_slugs.append(router.slug)
            tokens.append(token)
        db.session.commit()
    return shop, tokens


def callback_to_pull_router(portal: procs.Gunicorn, app: Any, scale: PullScale, broken: Findings) -> Row:
    from portal.sandbox.pulling_router import SandboxPullingRouter

    interval = scale.e2e_interval_s
    shop, tokens = make_pull_shop(app, scale.e2e_routers, interval, email="kiosks@bench.example")
    boxes = [TimedRouter(identity=f"Bench kiosk {i}").start() for i in range(scale.e2e_routers)]
    pullers = [
        SandboxPullingRouter(box, f"{portal.url}/routers/{slug}/sync", token, interval_s=interval).start()
        for box, slug, token in zip(boxes, shop.router_slugs, tokens, strict=True)
    ]
    try:
        purchases = seed.seed_purchases(app, shop, scale.e2e_purchases, tag="PULL")
        spread = scale.e2e_spread_intervals * interval
        client = load.Client(portal.url)
        sent_mono: dict[str, float] = {}
        sent_wall: dict[str, float] = {}
        start = time.monotonic()
        for i, p in enumerate(purchases):
            pause = start + i * spread / len(purchases) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent_mono[p.code], sent_wall[p.code] = time.monotonic(), time.time()
            status, _data, _f, _t = client.request("POST", hook_path(shop), load.stk_callback_body(p), load.JSON)
            if status != 200:
                broken.append(f"pull: callback for {p.code} answered {status}")
        client.close()
        deadline = time.monotonic() + 2 * interval + 10
        while time.monotonic() < deadline and not all(p.code in boxes[p.router_index].added_at for p in purchases):
            time.sleep(0.05)
        to_user = [boxes[p.router_index].added_at.get(p.code, float("inf")) - sent_mono[p.code] for p in purchases]
        missing = sum(1 for lat in to_user if lat == float("inf"))
        if missing:
            broken.append(f"pull: {missing} of {len(purchases)} paid vouchers never reached their pull router")
        to_active = _active_latencies(app, purchases, sent_wall, timeout=interval + 10)
    finally:
        for puller in pullers:
            puller.stop()
        for box in boxes:
            box.stop()
    p95 = percentile(to_user, 95)
    bar = interval + 1.0
    return Row(
        f"callback → user on a pull router p95 (sync every {interval} s)", f"{p95:.2f} s", f"<= {bar:.0f} s", p95 <= bar,
        [f"{len(purchases)} callbacks over {scale.e2e_spread_intervals * interval} s across {scale.e2e_routers} sandbox pulling routers syncing "
         f"every {interval} s at random phases: median {median(to_user):.2f} s; callback → voucher active (acknowledged) "
         f"median {median(to_active):.2f} s, p95 {percentile(to_active, 95):.2f} s"],
    )


def _active_latencies(app: Any, purchases: list[seed.Purchase], sent_wall: dict[str, float], timeout: float) -> list[float]:
    import sqlalchemy as sa

    from portal.core.extensions import db
    from portal.models import Voucher

    codes = [p.code for p in purchases]
    deadline = time.monotonic() + timeout
    with app.app_context():
        while True:
            rows = dict(db.session.execute(sa.select(Voucher.code, Voucher.activated_at).where(Voucher.code.in_(codes))).all())
            if all(rows.get(c) for c in codes) or time.monotonic() > deadline:
                break
            db.session.rollback()
            time.sleep(0.2)
    return [rows[c].timestamp() - sent_wall[c] if rows.get(c) else float("inf") for c in codes]


# --------------------------------------------------------------------------------------------
# 2,000 routers syncing every 15 s


def seed_fleet(app: Any, count: int) -> list[tuple[str, str]]:
    """``count`` pull routers of one owner: (slug, token) each."""
    from portal.core.extensions import db
    from portal.hotspot.pull_sync import create_pull_router
    from portal.owners.accounts import create_owner

    fleet = []
    with app.app_context():
        owner = create_owner("fleet-pull@bench.example", seed.OWNER_PASSWORD)
        db.session.flush()
        for i in range(count):
            router, token = create_pull_router(owner=owner, name=f"Fleet kiosk {i}", slug=f"fleet-kiosk-{i:05d}")
            fleet.append((router.slug, token))
            if i % 500 == 499:
                db.session.flush()
        db.session.commit()
    return fleet


def _usage_body() -> bytes:
    users = [{"name": "".join(random.choice(ALPHABET) for _ in range(10)), "uptime": f"{random.randint(0, 59)}m{random.randint(0, 59)}s",
              "bytes-in": random.randint(0, 10**9), "bytes-out": random.randint(0, 10**9)} for _ in range(5)]
    return json.dumps({"version": "7.16.2 (stable)", "acks": [], "usage": users}).encode()


def _schedule(count: int, interval_s: float, seconds: float) -> list[tuple[float, int]]:
    """(offset, router) for each router syncing every interval at its own phase, within ``seconds``."""
    events = []
    for router in range(count):
        at = random.uniform(0, interval_s)
        while at < seconds:
            events.append((at, router))
            at += interval_s
    return sorted(events)


@dataclass
class SyncLoad:
    latencies: list[float]
    late: list[float]  # how far behind its schedule each request was sent
    errors: int
    elapsed_s: float

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.elapsed_s if self.elapsed_s else 0.0


def run_schedule(base_url: str, fleet: list[tuple[str, str]], bodies: list[bytes], events: list[tuple[float, int]],
                 threads: int) -> SyncLoad:
    """Open loop: each sync is sent at its scheduled time by whichever client thread is free."""
    due: queue.Queue[tuple[float, int] | None] = queue.Queue()
    result = SyncLoad([], [], 0, 0.0)
    lock = threading.Lock()

    def caller() -> None:
        client, lat, late, errors = load.Client(base_url), [], [], 0
        while (item := due.get()) is not None:
            at, router = item
            slug, token = fleet[router]
            late.append(time.monotonic() - at)
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            try:
                status, _data, _f, total = client.request("POST", f"/routers/{slug}/sync", bodies[router], headers)
            except OSError:
                errors += 1
                continue
            if status == 200:
                lat.append(total)
            else:
                errors += 1
        client.close()
        with lock:
            result.latencies += lat
            result.late += late
            result.errors += errors

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start = time.monotonic()
    for offset, router in events:
        pause = start + offset - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        due.put((start + offset, router))
    for _ in workers:
        due.put(None)
    for worker in workers:
        worker.join()
    result.elapsed_s = time.monotonic() - start
    return result


def fleet_syncs(portal: procs.Gunicorn, bare: procs.Gunicorn, app: Any, scale: PullScale, broken: Findings) -> list[Row]:
    fleet = seed_fleet(app, scale.fleet_routers)
    bodies = [_usage_body() for _ in fleet]
    rate = scale.fleet_routers / scale.fleet_interval_s
    run_schedule(portal.url, fleet, bodies, _schedule(len(fleet), scale.fleet_interval_s, scale.fleet_warmup_s), scale.client_threads)
    events = _schedule(len(fleet), scale.fleet_interval_s, scale.fleet_seconds)
    ours = run_schedule(portal.url, fleet, bodies, events, scale.client_threads)
    baseline = run_schedule(bare.url, fleet, bodies, events, scale.client_threads)
    if ours.errors:
        broken.append(f"pull fleet: {ours.errors} syncs not answered 200")
    p95, bare_p95 = percentile(ours.latencies, 95), percentile(baseline.latencies, 95)
    title = (f"pull sync p95, {scale.fleet_routers:,} routers every {scale.fleet_interval_s:.0f} s "
             f"(≈{rate:.0f}/s, PostgreSQL, 2 cores)")
    note = (f"{len(events)} syncs over {scale.fleet_seconds:.0f} s at each router's own phase, {scale.client_threads} "
            f"keep-alive client threads: {ours.per_second:.0f}/s answered, median {ms(median(ours.latencies))}, "
            f"client behind schedule p95 {ms(percentile(ours.late, 95))}; body: version, no acks, 5 users' usage "
            f"({len(bodies[0])} B); bare Flask: median {ms(median(baseline.latencies))}, p95 {ms(bare_p95)}")
    return [
        Row(title, ms(p95), "< 50 ms", p95 < 0.050, [note]),
        Row("  ratio to bare Flask endpoint p95 (same schedule, same run)", f"{p95 / bare_p95:.2f} ({ms(bare_p95)} bare)"
            if bare_p95 else "n/a", "report", None),
    ]

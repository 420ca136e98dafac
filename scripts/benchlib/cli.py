"""scripts/bench: start everything, measure each figure, print one table, exit 1 on a missed bar."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import figures, money, procs, pull, seed, sms, tunnel
from .sandboxes import TimedRouter
from .table import Row, render

DESCRIPTION = """\
Measure the portal's quality bars (DESIGN.md) on this machine and print one table:
figure, value, bar, met. Exits 1 when a bar is missed (or something is broken), 0 otherwise.

Starts everything itself, all on 127.0.0.1: gunicorn serving wsgi:app (gthread, --workers x
--threads, pinned with taskset to --cpus) in production mode on PostgreSQL (database bench_portal
on BENCH_PG_URL's server, default postgresql://postgres@127.0.0.1:5432/test) and in development
mode on a SQLite file (production refuses SQLite); a bare Flask JSON app under the same gunicorn
settings; `flask worker` (PORTAL_SCHEDULER=off in the web process, woken by PostgreSQL NOTIFY);
sandbox routers and a sandbox Daraja answering after 200 ms, inside this process.
Timings are taken by the client side, in this process. Data is generated per run.

--quick (about a minute, for CI) uses small counts; bars are reported but not enforced: it fails
only when something is broken (errors, unpaid callbacks, lost activations, duplicate queries).
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, bars not enforced (CI smoke test)")
    parser.add_argument("--only", default="", help="comma-separated figure groups: callbacks,router,pages,dashboard,jobs,pull,money,sms,tunnel (default: all; tunnel needs root)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (default 3: cores + 1; measured best on 2 cores)")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker (default 2: more threads fight over the GIL)")
    parser.add_argument("--cpus", default="0,1", help="CPUs gunicorn is pinned to with taskset (default 0,1; '' = no pinning)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the log folder (printed at the end) even on success")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scale = figures.QUICK if args.quick else figures.FULL
    groups = set(filter(None, args.only.split(","))) or {"callbacks", "router", "pages", "dashboard", "jobs", "pull", "money", "sms", "tunnel"}
    log_dir = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    started = time.monotonic()
    rows: list[Row] = []
    broken = figures.Findings()
    try:
        run_all(args, scale, groups, log_dir, rows, broken)
    except Exception as exc:  # the table still prints what was measured
        broken.append(f"bench crashed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        traceback.print_exc()
    missed = [r for r in rows if r.met is False]
    print()
    print(f"scripts/bench{' --quick' if args.quick else ''}: {os.cpu_count()} CPUs, "
          f"gunicorn gthread {args.workers}x{args.threads} on CPUs {args.cpus or 'any'}, {time.monotonic() - started:.0f} s")
    print(render(rows))
    for problem in broken:
        print(f"BROKEN: {problem}")
    print(f"logs: {log_dir}")
    if broken:
        return 2
    if missed and not args.quick:
        print(f"{len(missed)} bar(s) missed")
        return 1
    if missed:
        print(f"{len(missed)} bar(s) missed at --quick scale (not enforced)")
    return 0


def run_all(args: argparse.Namespace, scale: figures.Scale, groups: set[str], log_dir: Path, rows: list[Row], broken: figures.Findings) -> None:
    def gunicorn(app: str, env: dict[str, str], name: str) -> procs.Gunicorn:
        return procs.Gunicorn(app, env, log_dir / f"gunicorn-{name}.log", workers=args.workers, threads=args.threads, cpus=args.cpus)

    if groups & {"callbacks", "router", "pages", "pull"}:
        pg_url = procs.recreate_pg_database("bench_portal")
        app = seed.bench_app(pg_url)
        boxes = [TimedRouter(identity=f"Bench router {i}").start() for i in range(scale.router_count)]
        shop = seed.make_shop(app, boxes[:1], email="cafe@bench.example")
        fleet = seed.make_shop(app, boxes, email="fleet@bench.example")
        env = procs.portal_env(pg_url, production=True)
        portal = gunicorn("wsgi:app", env, "portal-pg").start()
        bare = None
        try:
            if groups & {"callbacks", "pull"}:  # the bare Flask app both compare with; idle in between
                bare = gunicorn("benchlib.bare_app:app", env, "bare").start()
            if "callbacks" in groups:
                rows.append(figures.callback_handling("PostgreSQL", portal.url, app, shop, scale, broken))
                rows.append(_sqlite_handling(gunicorn, scale, log_dir, broken))
                rows.extend(figures.callback_throughput(portal, bare, app, shop, scale, broken))
            if "router" in groups:
                rows.extend(figures.callback_to_router(portal, env, app, fleet, boxes, scale, log_dir, broken))
            if "pages" in groups:
                rows.append(figures.plans_ttfb(portal, fleet, scale, broken))
                rows.append(figures.page_weight(portal, app, fleet, broken))
            if "pull" in groups:
                rows.extend(pull.figures(portal, bare, app, pull.QUICK if args.quick else pull.FULL, broken))
        finally:
            if bare is not None:
                bare.stop()
            portal.stop()
            for box in boxes:
                box.stop()
        if "dashboard" in groups:
            rows.extend(figures.dashboard(app, scale, log_dir, broken))
    elif "dashboard" in groups:
        rows.extend(figures.dashboard(seed.bench_app(procs.recreate_pg_database("bench_portal")), scale, log_dir, broken))
    if "jobs" in groups:
        rows.extend(figures.jobs(scale, log_dir, broken))
    if "tunnel" in groups:  # issue 13: the WireGuard hub, in network namespaces of the bench's own
        rows.extend(tunnel.figures_for(tunnel.QUICK if args.quick else tunnel.FULL, log_dir, broken))
    if "money" in groups:  # issue 15: payout batch, Balance and statement pages
        rows.extend(money.figures(scale, log_dir, broken))
    if "sms" in groups:  # issue 17: receipts by SMS, and activation latency with them on
        rows.extend(sms.figures(gunicorn, sms.QUICK if args.quick else sms.FULL, log_dir, broken))


def _sqlite_handling(gunicorn, scale: figures.Scale, log_dir: Path, broken: figures.Findings) -> Row:  # type: ignore[no-untyped-def]
    folder = Path(tempfile.mkdtemp(prefix="sqlite-", dir=log_dir))
    url = seed.sqlite_url(folder)
    app = seed.bench_app(url)
    shop = seed.make_shop(app, [TimedRouter()], email="sqlite@bench.example")
    portal = gunicorn("wsgi:app", procs.portal_env(url, production=False), "portal-sqlite").start()
    try:
        return figures.callback_handling("SQLite", portal.url, app, shop, scale, broken)
    finally:
        portal.stop()


if __name__ == "__main__":
    sys.exit(main())

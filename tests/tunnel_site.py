"""Processes the tunnel tests start inside their network namespaces (`python -m tests.tunnel_site ...`).

``router``: the sandbox RouterOS API listening only on the router's tunnel address; it writes its
hotspot users to a JSON file every 0.2 s so the test (outside the namespace) can read them.
``probe``: from the hub's namespace, log in to a router's API over the tunnel and print its identity
(exit 1 when it cannot). ``connect``: a bare TCP connect; exit 0 when it connects, 1 when it cannot.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path


def _router(args: argparse.Namespace) -> int:
    from portal.sandbox.router import SandboxRouter

    box = SandboxRouter(host=args.host, port=args.port, username=args.username, password=args.password,
                        identity=args.identity).start()
    box.command_delay_s = args.delay
    out = Path(args.state)
    print("listening", flush=True)
    while True:
        with box.lock:
            users = {name: dict(row) for name, row in box.users.items()}
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(users))
        tmp.replace(out)
        time.sleep(0.2)


def _probe(args: argparse.Namespace) -> int:
    from portal.routeros import RouterConnection, RouterCredentials, RouterError
    from portal.routeros.hotspot import read_identity

    conn = RouterConnection(RouterCredentials(args.host, args.port, args.username, args.password, label="probe"),
                            connect_timeout=args.timeout, command_timeout=args.timeout)
    try:
        print(read_identity(conn))
    except RouterError as exc:
        print(f"unreachable: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return 0


def _connect(args: argparse.Namespace) -> int:
    try:
        socket.create_connection((args.host, args.port), timeout=args.timeout).close()
    except OSError as exc:
        print(f"no connection: {exc}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("router")
    for p in (r, sub.add_parser("probe"), sub.add_parser("connect")):
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, default=8728)
    for p in (r, sub.choices["probe"]):
        p.add_argument("--username", default="portal")
        p.add_argument("--password", default="sandbox-router-pass")
    r.add_argument("--identity", default="SiteRouter")
    r.add_argument("--delay", type=float, default=0.0, help="seconds per command")
    r.add_argument("--state", required=True)
    for name in ("probe", "connect"):
        sub.choices[name].add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    return {"router": _router, "probe": _probe, "connect": _connect}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())

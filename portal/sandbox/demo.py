"""Demo mode: the portal on SQLite with a sandbox Daraja, a sandbox MikroTik router and seeded data.

    python -m portal.sandbox.demo            # serve until Ctrl-C, print the URLs to open
    python -m portal.sandbox.demo --smoke    # buy one voucher end to end over HTTP, then exit

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from .. import create_app
from ..core.extensions import db
from ..models import Plan, User
from .daraja import SandboxDaraja
from .hotspot import SandboxHotspot
from .mail import ReceivedMail, SandboxMailbox
from .router import SandboxRouter

DEMO_OWNER = ("demo@example.com", "demo-password-123")
DEMO_ADMIN = ("admin@example.com", "admin-password-123")  # the Owners page: lock or delete an owner
DEMO_SLUG = "demo-cafe"
CONSUMER_KEY, CONSUMER_SECRET = "demo-consumer-key", "demo-consumer-secret"
SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
PLANS = [("1 Hour", 10, 3600, None, "2M/5M"), ("1 Day", 50, 86400, 2 << 30, "2M/5M"), ("1 Week", 250, 7 * 86400, 10 << 30, "3M/8M")]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    instance = Path(args.instance).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    database = instance / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)  # a fresh demo every run

    daraja = SandboxDaraja(port=args.daraja_port, callback_delay_s=2.0 if not args.smoke else 0.3)
    daraja.add_app(CONSUMER_KEY, CONSUMER_SECRET)
    daraja.start()
    router_box = SandboxRouter(port=args.router_port, identity="Demo Cafe hAP").start()
    port = args.port or _free_port()
    portal_url = f"http://127.0.0.1:{port}"
    hotspot = SandboxHotspot(router_box, portal_url=f"{portal_url}/r/{DEMO_SLUG}", port=args.hotspot_port).start()
    router_box.add_host(hotspot.device_mac, hotspot.device_ip)
    # Sign-up codes and password-reset links land in a local SMTP server and are printed here.
    mailbox = SandboxMailbox(on_message=_print_mail).start()

    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{database}",
            "DARAJA_BASE_URL": daraja.base_url,
            "PORTAL_BASE_URL": portal_url,
            "PORTAL_SCHEDULER": "inline",
            "PORTAL_OPEN_SIGNUP": True,
            "PORTAL_MAIL_SERVER": "127.0.0.1", "PORTAL_MAIL_PORT": mailbox.port, "PORTAL_MAIL_USE_TLS": False,
        }
    )
    with app.app_context():
        from flask_migrate import upgrade

        upgrade(directory=str(Path(__file__).resolve().parents[1] / "migrations"))
        _seed(router_box)
    server = make_server("127.0.0.1", port, app, threaded=True)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        if args.smoke:
            return _smoke(portal_url, hotspot, router_box)
        _announce(portal_url, hotspot, daraja, router_box)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.shutdown()
        hotspot.stop()
        router_box.stop()
        daraja.stop()
        mailbox.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the portal in demo mode.")
    parser.add_argument("--port", type=int, default=5000, help="portal port (default 5000; 0 = any free port)")
    parser.add_argument("--daraja-port", type=int, default=0, help="sandbox Daraja port (default: any free)")
    parser.add_argument("--router-port", type=int, default=0, help="sandbox RouterOS API port (default: any free)")
    parser.add_argument("--hotspot-port", type=int, default=0, help="sandbox hotspot login page port (default: any free)")
    parser.add_argument("--instance", default="instance/demo", help="folder for the demo database")
    parser.add_argument("--smoke", action="store_true", help="buy one voucher over HTTP, check it, exit")
    return parser.parse_args(argv)


def _seed(router_box: SandboxRouter) -> None:
    from ..hotspot.routers import create_router
    from ..owners.accounts import create_owner
    from ..owners.paybills import create_paybill

    owner: User = create_owner(*DEMO_OWNER)
    owner.business_name, owner.support_phone = "Demo Cafe", "0722 000 111"  # on printed vouchers
    create_owner(*DEMO_ADMIN, admin=True)
    db.session.flush()
    paybill = create_paybill(
        owner=owner, number=SANDBOX_SHORTCODE, kind="paybill", consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET, passkey=SANDBOX_PASSKEY, environment="sandbox", name="Demo paybill",
    )
    db.session.flush()
    owner.default_paybill_id = paybill.id
    router = create_router(
        owner=owner, name="Demo Cafe", host=router_box.host, port=router_box.port,
        username=router_box.username, password=router_box.password, slug=DEMO_SLUG,
    )
    router.wifi_name = "DemoCafe-WiFi"
    for order, (name, price, duration, data, rate) in enumerate(PLANS):
        db.session.add(Plan(owner_id=owner.id, name=name, price=price, duration_s=duration,
                            data_limit_bytes=data, rate_limit=rate, sort_order=order))
    db.session.commit()
    from ..hotspot.voucher_batches import generate_batch

    first_plan = db.session.scalars(sa.select(Plan).where(Plan.owner_id == owner.id).order_by(Plan.sort_order)).first()
    generate_batch(owner, plan_id=first_plan.id, router_id=router.id, count=12, note="for the counter, December")


def _print_mail(mail: ReceivedMail) -> None:
    print(f"  [mail to {', '.join(mail.recipients)}] {mail.subject}", flush=True)
    for line in mail.body.splitlines():
        if "http" in line or "code is" in line:
            print(f"      {line.strip()}", flush=True)


def _announce(portal_url: str, hotspot: SandboxHotspot, daraja: SandboxDaraja, router_box: SandboxRouter) -> None:
    print(
        "\nDemo portal is running (Ctrl-C stops it).\n\n"
        f"  Open the router's login page:  {hotspot.login_url}\n"
        f"  (or the portal directly:       {portal_url}/r/{DEMO_SLUG})\n\n"
        "  Pick \"1 Hour – KES 10\", type 0712 345 678, and watch the wait page.\n"
        "  Test numbers: 0700 001 032 cancels, 0700 001 037 times out, 0700 000 001 has no money,\n"
        "  0700 099 999 never answers (reconciliation and a manual C2B payment can settle it).\n\n"
        f"  Sandbox Daraja control page:   {daraja.base_url}/sandbox\n"
        f"  Sandbox router API:            {router_box.host}:{router_box.port} (user {router_box.username})\n"
        f"  Owner sign-in:                 {portal_url}/dashboard  ({DEMO_OWNER[0]} / {DEMO_OWNER[1]})\n"
        f"  Admin (Owners page):           {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}\n"
        f"  Owner sign-up:                 {portal_url}/dashboard/sign-up  (codes and reset links print here)\n",
        flush=True,
    )


def _smoke(portal_url: str, hotspot: SandboxHotspot, router_box: SandboxRouter) -> int:
    """The newcomer's path, automated: router login page → plans → buy → wait → online."""
    browser = requests.Session()
    landing = browser.get(hotspot.login_url, timeout=10)
    target = re.search(r'url=([^"]+)"', landing.text)
    plans_page = browser.get(target.group(1).replace("&amp;", "&"), timeout=10)
    fields = dict(re.findall(r'name="([^"]+)"[^>]*value="([^"]*)"', plans_page.text))
    plan_id = re.search(r'name="plan_id" value="(\d+)"', plans_page.text).group(1)
    fields.update(plan_id=plan_id, phone="0712 345 678")
    bought = browser.post(f"{portal_url}/r/{DEMO_SLUG}/buy", data=fields, allow_redirects=False, timeout=10)
    wait_url = portal_url + bought.headers["Location"].replace(portal_url, "")
    status: dict[str, Any] = {}
    for _ in range(100):
        status = browser.get(f"{wait_url}/status", timeout=10).json()
        if status["status"] in ("active", "failed", "expired"):
            break
        time.sleep(0.1)
    ok = status.get("status") == "active" and status.get("voucher") in router_box.users
    print(f"smoke: {'ok' if ok else 'FAILED'} {status}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

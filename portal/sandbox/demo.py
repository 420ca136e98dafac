"""Demo mode: the portal on SQLite with a sandbox Daraja, a sandbox MikroTik router and seeded data.

    python -m portal.sandbox.demo            # serve until Ctrl-C, print the URLs to open
    python -m portal.sandbox.demo --smoke    # buy vouchers end to end over HTTP (both routers), then exit

Everything listens on 127.0.0.1 only. Request and scheduler logs go to <instance>/demo.log; the
terminal shows the URLs and one line per purchase as it ends (online, failed or expired).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from .. import create_app
from ..core.extensions import db
from ..models import Payment, Plan, StkInitiation, User, Voucher, WebhookLog, utcnow
from .daraja import SandboxDaraja
from .hotspot import ROUTER_PAGES, SandboxHotspot
from .mail import ReceivedMail, SandboxMailbox
from .pulling_router import SandboxPullingRouter
from .router import SandboxRouter
from .sms import SANDBOX_API_KEY, SANDBOX_USERNAME, SandboxSmsGateway

DEMO_OWNER = ("demo@example.com", "demo-password-123")
DEMO_ADMIN = ("admin@example.com", "admin-password-123")  # the Owners page: lock or delete an owner
DEMO_SLUG = "demo-cafe"
PULL_SLUG = "demo-kiosk"  # a second router that syncs by pull, as a RouterOS 6 box behind NAT would
PULL_INTERVAL_S = 5
# A third router, reached over the WireGuard tunnel (issue 13). No router dials the demo's hub, so it
# shows "never connected"; its setup page shows the one script an owner pastes.
TUNNEL_SLUG = "demo-rooftop"
TUNNEL_ENDPOINT = "vpn.demo-portal.example:51820"
CONSUMER_KEY, CONSUMER_SECRET = "demo-consumer-key", "demo-consumer-secret"
SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
# The sandbox's test numbers (the last five digits are the M-Pesa result code), as the README lists
# them; tests/test_demo.py checks that the two agree.
TEST_NUMBERS = (
    ("0712 345 678", "paid (any other valid number too)"),
    ("0700 001 032", "cancelled by the customer (1032)"),
    ("0700 001 037", "phone unreachable (1037)"),
    ("0700 000 001", "insufficient funds (1)"),
    ("0700 002 001", "wrong PIN (2001)"),
    ("0700 099 999", "never answered: settle it by a C2B payment from the sandbox control page, or let it expire"),
)
NEVER_ANSWERS = "0700 099 999"
# Issue 15: an owner with no paybill of their own sells through the platform's paybill, which pays
# them out by B2C (the sandbox's own M-Pesa certificate, written to the instance folder).
FALLBACK_OWNER = ("fallback@example.com", "demo-password-123")
FALLBACK_SLUG = "demo-fallback"
PLATFORM_SHORTCODE = "600997"
PLATFORM_INITIATOR = ("testapi", "Safaricom999!*!")
FALLBACK_PAYOUT_PHONE = "0712 345 678"
# A second owner whose payout phone is the sandbox's LOST_ONCE number: M-Pesa acknowledges the
# phone-check payout and then loses it, so the admin's Payouts page shows it "sent", M-Pesa with no
# record of it, and after PORTAL_B2C_NOT_FOUND_AFTER_S (two minutes here) "Declare not sent".
LOST_PAYOUT_OWNER = ("lost-payout@example.com", "demo-password-123")
DEMO_NOT_FOUND_AFTER_S = 120
PLANS = [("1 Hour", 10, 3600, None, "2M/5M"), ("1 Day", 50, 86400, 2 << 30, "2M/5M"), ("1 Week", 250, 7 * 86400, 10 << 30, "3M/8M")]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    instance = Path(args.instance).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    (instance / "demo.log").unlink(missing_ok=True)
    log_file = _log_to_file(instance / "demo.log")
    database = instance / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)  # a fresh demo every run

    daraja = SandboxDaraja(port=args.daraja_port, callback_delay_s=2.0 if not args.smoke else 0.3)
    daraja.add_app(CONSUMER_KEY, CONSUMER_SECRET)
    daraja.add_shortcode(PLATFORM_SHORTCODE, SANDBOX_PASSKEY)
    daraja.b2c.add_initiator(PLATFORM_SHORTCODE, *PLATFORM_INITIATOR)
    certificate = instance / "sandbox-mpesa-cert.pem"
    certificate.write_bytes(daraja.b2c.certificate_pem)
    daraja.start()
    router_box = SandboxRouter(port=args.router_port, identity="Demo Cafe hAP").start()
    port = args.port or _free_port()
    portal_url = f"http://127.0.0.1:{port}"
    hotspot = SandboxHotspot(
        router_box,
        portal_url=f"{portal_url}/r/{DEMO_SLUG}",
        port=args.hotspot_port,
        pages_dir=ROUTER_PAGES,
        default_link_orig="/status",  # after login: the hotspot's "You are online" page, not a dead site
    ).start()
    router_box.add_host(hotspot.device_mac, hotspot.device_ip)
    kiosk_box = SandboxRouter(identity="Demo Kiosk hAP lite").start()
    kiosk_hotspot = SandboxHotspot(
        kiosk_box, portal_url=f"{portal_url}/r/{PULL_SLUG}", port=args.kiosk_hotspot_port, pages_dir=ROUTER_PAGES,
        default_link_orig="/status",
    ).start()
    kiosk_box.add_host(kiosk_hotspot.device_mac, kiosk_hotspot.device_ip)
    # Sign-up codes and password-reset links land in a local SMTP server and are printed here.
    mailbox = SandboxMailbox(on_message=_print_mail).start()
    # Issue 17: customer receipts and owner alerts go through the sandbox Africa's Talking gateway.
    sms_gateway = SandboxSmsGateway(report_delay_s=1.0).start()
    for page in (hotspot, kiosk_hotspot):  # the "You are online" page points at the SMS that was "sent"
        page.status_extra_html = (f'<p>Your code was also sent by SMS: see it on the <a href="{sms_gateway.base_url}/">'
                                  "sandbox SMS gateway</a>.</p>")

    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{database}",
            "DARAJA_BASE_URL": daraja.base_url,
            "PORTAL_BASE_URL": portal_url,
            "PORTAL_SCHEDULER": "inline",
            "PORTAL_OPEN_SIGNUP": True,
            "PORTAL_MAIL_SERVER": "127.0.0.1", "PORTAL_MAIL_PORT": mailbox.port, "PORTAL_MAIL_USE_TLS": False,
            "PORTAL_TUNNEL_ENDPOINT": TUNNEL_ENDPOINT,
            "PORTAL_B2C_CERT_SANDBOX": str(certificate), "PORTAL_PAYOUT_REQUIRES_APPROVAL": True,
            "PORTAL_B2C_RESULT_WAIT_S": 20, "PORTAL_B2C_NOT_FOUND_AFTER_S": DEMO_NOT_FOUND_AFTER_S,
            "PORTAL_SMS_USERNAME": SANDBOX_USERNAME, "PORTAL_SMS_API_KEY": SANDBOX_API_KEY,
            "PORTAL_SMS_BASE_URL": sms_gateway.base_url, "PORTAL_SMS_SENDER": "DEMOCAFE",
        }
    )
    with app.app_context():
        from flask_migrate import upgrade

        with contextlib.redirect_stderr(io.StringIO()):  # Alembic's env.py logs to the terminal
            upgrade(directory=str(Path(__file__).resolve().parents[1] / "migrations"))
        _log_to_file(log_file)  # and it has just reconfigured logging: send everything to the file again
        pull_token = _seed(router_box)
        _seed_platform_sales(router_box)
        from ..notify.delivery import report_url

        sms_gateway.report_url = report_url()  # as an owner pastes it into Africa's Talking's dashboard
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The kiosk runs the portal-sync protocol against its own sandbox router, every few seconds.
    kiosk = SandboxPullingRouter(kiosk_box, f"{portal_url}/routers/{PULL_SLUG}/sync", pull_token,
                                 interval_s=PULL_INTERVAL_S).start(first_delay_s=1.0)
    with app.app_context():
        _register_c2b()  # so "settle it by a C2B payment from the control page" works at once
        seeded = set(db.session.scalars(sa.select(Payment.id)))  # the seeded problem is not news
        payout_line = _demo_payout()  # needs the portal serving: B2C results come back over HTTP
    threading.Thread(target=_print_purchases, args=(app, seeded), daemon=True).start()
    try:
        if args.smoke:
            smoked = _smoke(portal_url, hotspot, router_box, daraja, kiosk_hotspot, kiosk_box, sms_gateway)
            print(f"smoke: payout {payout_line}", flush=True)
            return smoked if payout_line.startswith("completed") else 1
        _announce(portal_url, hotspot, daraja, router_box, log_file, kiosk_hotspot, sms_gateway)
        print(f"\n  Platform paybill {PLATFORM_SHORTCODE} collects for {FALLBACK_OWNER[0]} / {FALLBACK_OWNER[1]}:\n"
              f"    their Balance page shows the ledger; their first payout: {payout_line}\n"
              f"    admins approve payouts on {portal_url}/dashboard/payouts\n"
              f"    {LOST_PAYOUT_OWNER[0]}'s phone-check payout was lost by M-Pesa: it stays sent, M-Pesa has no record of it,\n"
              f"    and after {DEMO_NOT_FOUND_AFTER_S // 60} minutes an admin may declare it not sent there, then retry it", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        kiosk.stop()
        server.shutdown()
        hotspot.stop()
        kiosk_hotspot.stop()
        router_box.stop()
        kiosk_box.stop()
        daraja.stop()
        mailbox.stop()
        sms_gateway.stop()


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
    parser.add_argument("--kiosk-hotspot-port", type=int, default=0,
                        help="login page port of the kiosk, the demo router that syncs by pull (default: any free)")
    parser.add_argument("--instance", default="instance/demo", help="folder for the demo database")
    parser.add_argument("--smoke", action="store_true", help="buy one voucher over HTTP, check it, exit")
    return parser.parse_args(argv)


def _seed(router_box: SandboxRouter) -> str:
    """The demo owners, paybill, plans, cash vouchers and both routers; returns the kiosk's sync token."""
    from ..hotspot.pull_sync import create_pull_router
    from ..hotspot.routers import create_router
    from ..owners.accounts import create_owner
    from ..owners.paybills import create_paybill

    owner: User = create_owner(*DEMO_OWNER)
    owner.business_name, owner.support_phone = "Demo Cafe", "0722 000 111"  # on printed vouchers
    from ..notify.accounts import save_settings

    db.session.flush()
    save_settings(owner.id, alert_phone="254722000111")  # owner alerts by SMS go to the sandbox gateway too
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
    _kiosk, token = create_pull_router(owner=owner, name="Demo Kiosk", interval_s=PULL_INTERVAL_S, slug=PULL_SLUG)
    create_router(owner=owner, name="Demo Rooftop (behind CGNAT)", host="", port=8728, username="voucher-portal",
                  password="set-by-the-setup-script", slug=TUNNEL_SLUG, tunnel=True)
    for order, (name, price, duration, data, rate) in enumerate(PLANS):
        db.session.add(Plan(owner_id=owner.id, name=name, price=price, duration_s=duration,
                            data_limit_bytes=data, rate_limit=rate, sort_order=order,
                            devices=2 if name == "1 Week" else 1))  # the week is a two-device plan
    db.session.commit()
    from ..hotspot.voucher_batches import generate_batch

    first_plan = db.session.scalars(sa.select(Plan).where(Plan.owner_id == owner.id).order_by(Plan.sort_order)).first()
    generate_batch(owner, plan_id=first_plan.id, router_id=router.id, count=12, note="for the counter, December")
    _seed_expired_still_asking(owner, first_plan, router, paybill)
    _seed_given_up_notice(paybill)
    return token


def _seed_platform_sales(router_box: SandboxRouter) -> None:
    """The platform's paybill (with B2C credentials) and an owner selling through it, with a
    week of paid sales: the ledger sweep turns them into the owner's balance."""
    import secrets

    from ..hotspot.routers import create_router
    from ..money import b2c_transfers, ledger
    from ..owners.accounts import create_owner
    from ..owners.paybills import create_paybill

    owner = create_owner(*FALLBACK_OWNER)
    owner.business_name = "Demo Fallback Kibanda"
    platform = create_paybill(
        owner=None, number=PLATFORM_SHORTCODE, kind="paybill", consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET, passkey=SANDBOX_PASSKEY, environment="sandbox", name="Platform paybill",
    )
    db.session.flush()
    b2c_transfers.set_b2c_credentials(platform, initiator_name=PLATFORM_INITIATOR[0],
                                      initiator_password=PLATFORM_INITIATOR[1], actor="demo")
    router = create_router(owner=owner, name="Fallback Kibanda", host=router_box.host, port=router_box.port,
                           username=router_box.username, password=router_box.password, slug=FALLBACK_SLUG)
    plan = Plan(owner_id=owner.id, name="1 Day", price=50, duration_s=86400, rate_limit="2M/5M")
    db.session.add(plan)
    db.session.flush()
    for day in range(7):
        for n in range(4):
            sold = utcnow() - timedelta(days=day, hours=n)
            voucher = Voucher(code=f"DMF{day}{n}{secrets.token_hex(2).upper()}"[:12], owner_id=owner.id,
                              plan_id=plan.id, router_id=router.id, status="expired", created_at=sold)
            db.session.add(Payment(public_id=secrets.token_urlsafe(16), owner_id=owner.id, router_id=router.id,
                                   paybill_id=platform.id, voucher=voucher, amount_expected=50, amount=50,
                                   phone="254712345678", status="paid", receipt=f"DMF{day}{n}{secrets.token_hex(3).upper()}",
                                   created_at=sold, paid_at=sold))
    db.session.commit()
    ledger.post_sales()


def _demo_payout() -> str:
    """The fallback owner's payout phone (confirmed by a KES 10 test payout), then a payout of their
    balance, approved by the demo admin and sent by B2C through the sandbox. Returns how it ended."""
    from ..models import Payout
    from ..money import payouts

    owner = db.session.scalars(sa.select(User).where(User.email == FALLBACK_OWNER[0])).one()
    admin = db.session.scalars(sa.select(User).where(User.email == DEMO_ADMIN[0])).one()
    check = payouts.set_payout_phone(owner, FALLBACK_PAYOUT_PHONE, actor="demo")
    if not _wait_settled(Payout, check.id):
        return "not done: the phone check payout got no answer"
    try:
        payout = payouts.request_payout(owner, actor=owner)
    except payouts.PayoutError as exc:
        return f"not done: {exc}"
    payouts.approve_and_send(payout.id, admin=admin)
    done = _wait_settled(Payout, payout.id)
    _demo_lost_payout()
    return f"{done.state} KES {done.amount} receipt {done.receipt}" if done else "sent, no answer yet"


def _demo_lost_payout() -> None:
    """An owner whose phone-check payout M-Pesa loses (see LOST_PAYOUT_OWNER)."""
    from ..money import payouts
    from ..owners.accounts import create_owner
    from .daraja_b2c import LOST_ONCE

    owner = create_owner(*LOST_PAYOUT_OWNER)
    owner.business_name = "Demo Lost Payout Duka"
    db.session.commit()
    payouts.set_payout_phone(owner, "0" + LOST_ONCE[3:], actor="demo")


def _wait_settled(model: Any, row_id: int, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        row = db.session.get(model, row_id)
        state = row.state
        db.session.commit()  # SQLite: a read holds the write lock until the transaction ends
        if state in ("completed", "failed"):
            return row
        time.sleep(0.1)
    return None


def _seed_given_up_notice(paybill: Any) -> None:
    """A paybill payment whose recording failed every time (say, a bug since fixed): the Problems
    page lists it under "Payment notices we could not record", and "Try again now" records it."""
    import json

    from ..money import webhook_log

    body = {"TransactionType": "Pay Bill", "TransID": "DEMOGIVEUP1", "TransTime": "20261203101500",
            "TransAmount": "50.00", "BusinessShortCode": SANDBOX_SHORTCODE, "BillRefNumber": "NOSUCHCODE",
            "MSISDN": "2547 ***** 481", "FirstName": "Wanjiru"}
    stored = webhook_log.store_raw("c2b_confirmation", json.dumps(body).encode(), remote_addr="127.0.0.1",
                                   paybill_id=paybill.id)
    db.session.execute(sa.update(WebhookLog).where(WebhookLog.id == stored.id).values(
        status="failed", attempts=webhook_log.MAX_ATTEMPTS, next_try_at=None, trans_id="DEMOGIVEUP1",
        bill_ref_number="NOSUCHCODE", received_at=utcnow() - timedelta(hours=3),
        error=f"gave up after {webhook_log.MAX_ATTEMPTS} attempts; last: RuntimeError: a bug, since fixed"))
    db.session.commit()


def _seed_expired_still_asking(owner: User, plan: Plan, router: Any, paybill: Any) -> None:
    """A purchase whose callback was lost and which expired before anyone asked M-Pesa: the
    Problems page shows it still being asked about (the sandbox does not know its id, so the
    late queries never get a final answer and it is given up after a day)."""
    import secrets

    from ..hotspot.vouchers import new_voucher_code

    pushed = utcnow() - timedelta(minutes=7)
    code, phone = new_voucher_code(), "254712000111"
    voucher = Voucher(code=code, owner_id=owner.id, plan_id=plan.id, router_id=router.id, phone=phone,
                      status="expired", created_at=pushed)
    payment = Payment(public_id=secrets.token_urlsafe(16), owner_id=owner.id, router_id=router.id,
                      paybill_id=paybill.id, voucher=voucher, amount_expected=plan.price, phone=phone,
                      status="expired", created_at=pushed)
    db.session.add_all([voucher, payment, StkInitiation(
        checkout_request_id="ws_CO_DEMO_LOST_CALLBACK", account_reference=code, phone_number=phone,
        amount=plan.price, paybill_number=paybill.number, paybill_id=paybill.id, router_id=router.id,
        voucher=voucher, payment=payment, status="expired", created_at=pushed,
        completed_at=pushed + timedelta(minutes=5), last_query_at=pushed + timedelta(minutes=6),
        query_count=1, late_query_count=1, next_query_at=utcnow() + timedelta(minutes=5),
    )])
    db.session.commit()


def _print_mail(mail: ReceivedMail) -> None:
    print(f"  [mail to {', '.join(mail.recipients)}] {mail.subject}", flush=True)
    for line in mail.body.splitlines():
        if "http" in line or "code is" in line:
            print(f"      {line.strip()}", flush=True)


def _log_to_file(path: Path) -> Path:
    """Requests, jobs and the portal's own log lines go to a file; the terminal stays readable."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger) and logger.handlers:  # e.g. Alembic's own console handler
            logger.handlers.clear()
            logger.propagate = True
    root.setLevel(logging.INFO)
    return path


def _register_c2b() -> None:
    from ..models import Paybill
    from ..owners.paybills import register_c2b_urls

    for paybill in db.session.scalars(sa.select(Paybill)).all():
        register_c2b_urls(paybill)


def _announce(
    portal_url: str, hotspot: SandboxHotspot, daraja: SandboxDaraja, router_box: SandboxRouter, log_file: Path,
    kiosk_hotspot: SandboxHotspot, sms_gateway: SandboxSmsGateway,
) -> None:
    numbers = "".join(f"    {number}  {outcome}\n" for number, outcome in TEST_NUMBERS)
    print(
        "\nDemo portal is running (Ctrl-C stops it).\n\n"
        f"  Open the router's login page:  {hotspot.login_url}\n"
        f"  (or the portal directly:       {portal_url}/r/{DEMO_SLUG})\n"
        f"  A router that syncs by pull:   {kiosk_hotspot.login_url}\n"
        f"  (every {PULL_INTERVAL_S} s; the wait page says how long it can take)\n"
        f"  A router over the WireGuard tunnel: {portal_url}/dashboard/routers (Demo Rooftop; its setup page has the\n"
        "  one RouterOS 7 script; it stays \"never connected\" here, as no router dials the demo's hub)\n\n"
        "  Pick \"1 Hour – KES 10\", type 0712 345 678, and watch the wait page.\n"
        f"  Test numbers (the last five digits are the M-Pesa result code):\n{numbers}\n"
        f"  Sandbox Daraja control page:   {daraja.base_url}/sandbox  (C2B URLs registered for {SANDBOX_SHORTCODE})\n"
        f"  Sandbox SMS gateway (receipts, alerts): {sms_gateway.base_url}/  (…111 fails, …222 never reported)\n"
        f"  Sandbox router API:            {router_box.host}:{router_box.port} (user {router_box.username})\n"
        f"  Owner sign-in:                 {portal_url}/dashboard  ({DEMO_OWNER[0]} / {DEMO_OWNER[1]})\n"
        "  (its Problems page has a payment notice that gave up: \"Try again now\" records it)\n"
        f"  Admin (Owners page):           {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}\n"
        f"  Owner sign-up:                 {portal_url}/dashboard/sign-up  (codes and reset links print here)\n"
        f"  Request and job logs:          {log_file}\n\n"
        "  Purchases, one line each as they end:",
        flush=True,
    )


def _print_purchases(app: Any, seeded: set[int]) -> None:
    """One terminal line per purchase when it ends: online, failed or expired."""
    told: set[int] = set(seeded)
    while True:
        time.sleep(0.5)
        try:
            with app.app_context():
                for line in _ended_purchases(told):
                    print(f"  {line}", flush=True)
                db.session.remove()
        except Exception:  # the demo's printer must never stop the demo; the log has the details
            logging.getLogger(__name__).exception("purchase printer")


def _ended_purchases(told: set[int]) -> list[str]:
    from ..money.customer_status import purchase_status
    from ..mpesa.phones import mask_phone

    lines = []
    for payment in db.session.scalars(sa.select(Payment).order_by(Payment.id)).all():
        if payment.id in told:
            continue
        state = purchase_status(payment)
        if state.status not in ("active", "failed", "expired"):
            continue
        told.add(payment.id)
        voucher: Voucher | None = payment.voucher
        what = f"{voucher.plan.name} KES {payment.amount_expected}" if voucher else f"KES {payment.amount or 0}"
        if state.status == "active" and voucher is not None:
            took = _seconds_between(payment.paid_at, voucher.activated_at)
            outcome = f"online with {voucher.code}" + (f" ({took} from payment to router)" if took else "")
        else:
            outcome = f"{state.status}: {state.reason.replace('_', ' ')}" + (
                f" ({state.result_code})" if state.result_code else ""
            )
        phone = mask_phone(payment.phone) if payment.phone else "no phone"
        lines.append(f"{datetime.now():%H:%M:%S}  {phone}  {what}  {payment.source}  →  {outcome}")
    return lines


def _seconds_between(start: datetime | None, end: datetime | None) -> str | None:
    if start is None or end is None:
        return None
    return f"{max(0.0, (end - start).total_seconds()):.2f} s"


def _smoke(portal_url: str, hotspot: SandboxHotspot, router_box: SandboxRouter, daraja: SandboxDaraja,
           kiosk_hotspot: SandboxHotspot, kiosk_box: SandboxRouter, sms_gateway: SandboxSmsGateway) -> int:
    """The newcomer's paths, automated: router login page → plans → buy → wait → online, once
    approved on the phone, once settled by a C2B payment from the sandbox control page, and once
    on the kiosk, the router that syncs by pull (another phone: one prompt per phone per minute)."""
    approved = _smoke_purchase(portal_url, hotspot, router_box, "0712 345 678")
    by_c2b = _smoke_purchase(portal_url, hotspot, router_box, NEVER_ANSWERS, daraja=daraja)
    by_pull = _smoke_purchase(portal_url, kiosk_hotspot, kiosk_box, "0722 345 678", slug=PULL_SLUG)
    receipt = _smoke_sms(sms_gateway, "+254712345678")
    ok = approved and by_c2b and by_pull and receipt
    time.sleep(1.0)  # the purchase printer looks every 0.5 s: let it report the last one
    print(f"smoke: {'ok' if ok else 'FAILED'} (STK approved: {approved}, C2B from the control page: {by_c2b}, "
          f"pull router {PULL_SLUG}: {by_pull}, SMS receipt: {receipt})", flush=True)
    return 0 if ok else 1


def _smoke_sms(sms_gateway: SandboxSmsGateway, number: str) -> bool:
    """The approved purchase's receipt reaches the sandbox SMS gateway (the send_sms job runs every 2 s)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        sent = sms_gateway.sent_to(number)
        if sent:
            print(f"smoke: SMS to {number}: {sent[0].text}", flush=True)
            return True
        time.sleep(0.2)
    print(f"smoke: no SMS reached the sandbox gateway for {number}", flush=True)
    return False


def _smoke_purchase(
    portal_url: str, hotspot: SandboxHotspot, router_box: SandboxRouter, phone: str, daraja: SandboxDaraja | None = None,
    slug: str = DEMO_SLUG,
) -> bool:
    browser = requests.Session()
    landing = browser.get(hotspot.login_url, timeout=10)
    target = re.search(r'url=([^"]+)"', landing.text)
    plans_page = browser.get(target.group(1).replace("&amp;", "&"), timeout=10)
    fields = dict(re.findall(r'name="([^"]+)"[^>]*value="([^"]*)"', plans_page.text))
    plan_id = re.search(r'name="plan_id" value="(\d+)"', plans_page.text).group(1)
    fields.update(plan_id=plan_id, phone=phone)
    bought = browser.post(f"{portal_url}/r/{slug}/buy", data=fields, allow_redirects=False, timeout=10)
    wait_url = portal_url + bought.headers["Location"].replace(portal_url, "")
    if daraja is not None:  # the prompt is never answered: pay from the control page as a person would
        account = re.search(r"account (\w+), amount KES (\d+)", browser.get(wait_url, timeout=10).text)
        if account is None:
            print("smoke: the wait page does not show the Paybill account", flush=True)
            return False
        paid = requests.post(
            f"{daraja.base_url}/sandbox/c2b",
            data={"shortcode": SANDBOX_SHORTCODE, "amount": account.group(2), "account": account.group(1)},
            allow_redirects=False,
            timeout=10,
        )
        if paid.status_code != 303:
            print(f"smoke: the control page refused the C2B payment: {paid.status_code} {paid.text[:200]}", flush=True)
            return False
    status: dict[str, Any] = {}
    deadline = time.monotonic() + 15 + 2 * PULL_INTERVAL_S  # a pull router answers at its next sync
    while time.monotonic() < deadline:
        status = browser.get(f"{wait_url}/status", timeout=10).json()
        if status["status"] in ("active", "failed", "expired"):
            break
        time.sleep(0.1)
    ok = status.get("status") == "active" and status.get("voucher") in router_box.users
    print(f"smoke: {phone}: {status}", flush=True)
    return ok


if __name__ == "__main__":
    sys.exit(main())

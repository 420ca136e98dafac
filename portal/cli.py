"""flask commands: the same services the views call."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask, current_app

from .core import durations, sizes
from .core.extensions import db
from .hotspot import activations, pull_scripts, pull_sync, router_setup
from .hotspot.routers import create_router, set_connection_mode
from .jobs import run_worker_forever
from .models import Paybill, PaybillB2C, Payout, Plan, Refund, Router, User
from .money import b2c_transfers
from .money import ledger as money_ledger
from .money import payouts as money_payouts
from .money import refunds as money_refunds
from .mpesa.errors import DarajaError
from .owners import accounts, audit
from .owners.key_rotation import rotate_all_secrets
from .owners.paybills import create_paybill, register_c2b_urls, webhook_urls
from .owners.tokens import refresh_due_tokens
from .tunnel import hub as tunnel_hub
from .tunnel import peers as tunnel_peers
from .tunnel import pool as tunnel_pool
from .tunnel import wg as tunnel_wg


def parse_duration(text: str) -> int:
    """'3h', '3 hours', '90 min', '1 day', '1h30m' or plain seconds → seconds."""
    try:
        return durations.parse_duration(text)
    except durations.BadDuration as exc:
        raise click.BadParameter(str(exc)) from exc


def parse_bytes(text: str) -> int:
    try:
        return sizes.parse_bytes(text)
    except sizes.BadSize as exc:
        raise click.BadParameter(str(exc)) from exc


def _owner(email: str) -> User:
    user = accounts.find_owner(email)
    if user is None:
        raise click.BadParameter(f"no owner with email {email}; create one with `flask owner create`")
    return user


def register_commands(app: Flask) -> None:
    app.cli.add_command(owner)
    app.cli.add_command(router)
    app.cli.add_command(paybill)
    app.cli.add_command(plan)
    app.cli.add_command(tokens)
    app.cli.add_command(c2b)
    app.cli.add_command(worker)
    app.cli.add_command(keys)
    app.cli.add_command(tunnel)
    app.cli.add_command(ledger)
    app.cli.add_command(payouts)
    app.cli.add_command(refunds)
    app.cli.add_command(sms)  # issue 17
    app.cli.add_command(alerts_cli)


@click.group(help="Owner accounts.")
def owner() -> None:
    pass


@owner.command("create", help="Create an owner who signs in to the dashboard with this email and password.")
@click.option("--email", required=True)
@click.option("--password", required=True, help="At least 10 characters.")
@click.option("--admin", is_flag=True, help="An admin sees every owner's data.")
def owner_create(email: str, password: str, admin: bool) -> None:
    try:
        user = accounts.create_owner(email, password, admin=admin)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"created {'admin' if admin else 'owner'} {user.email}")


@click.group(help="MikroTik routers.")
def router() -> None:
    pass


@router.command(
    "add",
    help="Add a MikroTik router reachable over the RouterOS API, or (--transport pull) one that fetches its own "
    "work over HTTPS. Prints its slug last.",
)
@click.option("--owner", "owner_email", required=True, help="Owner's email.")
@click.option("--name", required=True, help="A name customers see, e.g. 'Mama Njeri Cafe'.")
@click.option("--host", default=None, help="Router address the portal can reach (public IP, VPN IP, DNS name). API only.")
@click.option("--port", default=8728, show_default=True, type=click.IntRange(1, 65535), help="8728 (api) or 8729 (api-ssl).")
@click.option("--username", default=None, help="RouterOS API user (policy api,read,write). API only.")
@click.option("--password", default=None, help="Stored encrypted. API only.")
@click.option("--tls", is_flag=True, help="Use api-ssl.")
@click.option("--hotspot-server", default=None, help="Hotspot server name on the router (default: all).")
@click.option("--transport", type=click.Choice(["api", "pull"]), default="api", show_default=True,
              help="api: the portal connects to the router. pull: the router syncs with the portal on a schedule "
              "(any RouterOS, behind any NAT); prints its sync token once.")
@click.option("--sync-interval", default=pull_sync.DEFAULT_INTERVAL_S, show_default=True,
              type=click.IntRange(pull_sync.MIN_INTERVAL_S, pull_sync.MAX_INTERVAL_S), help="Pull only: seconds between syncs.")
@click.option("--tunnel", is_flag=True, help="API over the portal's WireGuard hub (RouterOS 7, any NAT): no --host; "
              "`flask router setup-script` prints what to paste.")
def router_add(owner_email, name, host, port, username, password, tls, hotspot_server, transport, sync_interval, tunnel) -> None:  # type: ignore[no-untyped-def]
    owner_user = _owner(owner_email)
    if transport == "pull":
        new, token = pull_sync.create_pull_router(
            owner=owner_user, name=name, hotspot_server=hotspot_server, interval_s=sync_interval
        )
        db.session.commit()
        click.echo(f"sync token (shown once; `flask router pull-script --slug {new.slug}` makes a new one with the script): {token}")
        click.echo(f"router added (pull sync every {sync_interval}s); portal URL /r/{new.slug} ; slug {new.slug}")
        return
    if tunnel:
        username = username or "voucher-portal"
        password = password or router_setup.new_api_password()  # the setup script sets the real one
    missing = [flag for flag, value in (("--host", host or tunnel), ("--username", username), ("--password", password)) if not value]
    if missing:
        raise click.UsageError(f"an api router needs {', '.join(missing)} (or use --tunnel, or --transport pull)")
    try:
        new = create_router(
            owner=owner_user, name=name, host=host or "", port=port, username=username, password=password,
            use_tls=tls, hotspot_server=hotspot_server, tunnel=tunnel,
        )
    except (tunnel_pool.TunnelNotConfigured, tunnel_pool.PoolExhausted) as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    via = f" (tunnel address {new.tunnel_address}; print its script with `flask router setup-script --slug {new.slug}`)" if tunnel else ""
    click.echo(f"router added{via}; portal URL /r/{new.slug} ; slug {new.slug}")


def _router_by_slug(slug: str) -> Router:
    found = db.session.scalars(sa.select(Router).where(Router.slug == slug)).first()
    if found is None:
        raise click.BadParameter(f"no router with slug {slug}", param_hint="--slug")
    return found


@router.command("sync-token", help="Print a fresh sync token for a pull router; the old one stops working at once.")
@click.option("--slug", required=True)
def router_sync_token(slug: str) -> None:
    found = _router_by_slug(slug)
    token = pull_sync.issue_sync_token(found)
    audit.record("router_sync_token_rotated", actor="cli", owner_id=found.owner_id, object_type="router", object_id=found.id)
    db.session.commit()
    click.echo(token)


@router.command("pull-script", help="Print the RouterOS setup script for a pull router, with a fresh sync token "
                "(the old one stops working).")
@click.option("--slug", required=True)
@click.option("--form", type=click.Choice(pull_scripts.FORMS), default="json", show_default=True,
              help="json: RouterOS 7.13+. rsc: RouterOS 6 (6.43+) or 7 before 7.13.")
@click.option("--hotspot-profile", default="hsprof1", show_default=True)
@click.option("--html-directory", default="hotspot", show_default=True)
def router_pull_script(slug: str, form: str, hotspot_profile: str, html_directory: str) -> None:
    found = _router_by_slug(slug)
    if found.transport != "pull":
        raise click.ClickException(f"{slug} is reached over the API; switch it first: flask router transport --slug {slug} --to pull")
    token = pull_sync.issue_sync_token(found)
    options = pull_scripts.PullSetupOptions(
        form=form, interval_s=found.sync_interval_s, hotspot_profile=hotspot_profile, html_directory=html_directory,
        ca_pem=pull_scripts.read_ca_pem(current_app.config["PORTAL_ROUTER_CA_FILE"]),
    )
    script = pull_scripts.pull_setup_script(found, current_app.config["PORTAL_BASE_URL"], token, options)
    audit.record("router_sync_token_rotated", actor="cli", owner_id=found.owner_id, object_type="router", object_id=found.id,
                 detail="with a new pull setup script")
    db.session.commit()
    click.echo(script)


@router.command("transport", help="Switch how the portal reaches a router: api (it connects) or pull (the router syncs).")
@click.option("--slug", required=True)
@click.option("--to", "transport", type=click.Choice(["api", "pull"]), required=True)
def router_transport(slug: str, transport: str) -> None:
    found = _router_by_slug(slug)
    try:
        wake = pull_sync.set_transport(found, transport)
    except pull_sync.TransportError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record("router_transport_changed", actor="cli", owner_id=found.owner_id, object_type="router",
                 object_id=found.id, detail=f"now {transport}")
    db.session.commit()
    if wake:
        activations.wake_worker()
    click.echo(f"{slug} is now reached by {transport}")


@router.command("setup-script", help="Print the RouterOS setup script for an API router (for a tunnel router, RouterOS 7: "
                "WireGuard to the hub first). It holds a new API password, which the portal stores now.")
@click.option("--slug", required=True)
@click.option("--api-username", default="voucher-portal", show_default=True)
@click.option("--portal-address", default=None, help="Direct routers: the address the portal's API connections come from.")
@click.option("--hotspot-profile", default="hsprof1", show_default=True)
@click.option("--html-directory", default="hotspot", show_default=True)
def router_setup_script(slug, api_username, portal_address, hotspot_profile, html_directory) -> None:  # type: ignore[no-untyped-def]
    found = _router_by_slug(slug)
    if found.transport == "pull":
        raise click.ClickException(f"{slug} syncs by pull: use `flask router pull-script --slug {slug}`")
    try:
        tunnel_setup = tunnel_peers.setup_for(found) if found.connection_mode == "tunnel" else None
    except tunnel_pool.TunnelNotConfigured as exc:
        raise click.ClickException(str(exc)) from exc
    options = router_setup.SetupOptions(api_username=api_username, portal_address=portal_address,
                                        hotspot_profile=hotspot_profile, html_directory=html_directory, tunnel=tunnel_setup)
    password = router_setup.new_api_password()
    script = router_setup.setup_script(found, current_app.config["PORTAL_BASE_URL"], options, password)
    found.api_username, found.api_password, found.login_refused_at = api_username, password, None
    audit.record("router_api_user_set", actor="cli", owner_id=found.owner_id, object_type="router", object_id=found.id,
                 detail=f"API user {api_username} from `flask router setup-script`")
    db.session.commit()
    click.echo(script)


@router.command("connection", help="Reach an API router directly (--host) or over the WireGuard tunnel (its pool address).")
@click.option("--slug", required=True)
@click.option("--to", "mode", type=click.Choice(["direct", "tunnel"]), required=True)
@click.option("--host", default=None, help="direct: the router's address.")
def router_connection(slug: str, mode: str, host: str | None) -> None:
    found = _router_by_slug(slug)
    try:
        set_connection_mode(found, mode, host)
    except (ValueError, tunnel_pool.TunnelNotConfigured, tunnel_pool.PoolExhausted) as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record("router_connection_changed", actor="cli", owner_id=found.owner_id, object_type="router",
                 object_id=found.id, detail=f"now {mode} ({found.host})")
    db.session.commit()
    click.echo(f"{slug} is now reached {mode} at {found.host}")


@router.command("rotate-keys", help="A new WireGuard keypair for a tunnel router; prints nothing secret. The old key "
                "works until the new script is pasted and the new key has shaken hands.")
@click.option("--slug", required=True)
def router_rotate_keys(slug: str) -> None:
    found = _router_by_slug(slug)
    try:
        tunnel_peers.rotate_keys(found)
    except (ValueError, tunnel_pool.TunnelNotConfigured) as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record("router_tunnel_keys_rotated", actor="cli", owner_id=found.owner_id, object_type="router", object_id=found.id)
    db.session.commit()
    click.echo(f"new key for {slug}: {found.wg_public_key}; paste `flask router setup-script --slug {slug}` on the router")


@click.group(help="The WireGuard hub: the one process that needs CAP_NET_ADMIN.")
def tunnel() -> None:
    pass


@tunnel.command("apply", help="One pass: create the interface if missing, sync every peer, record handshakes.")
def tunnel_apply() -> None:
    try:
        report = tunnel_hub.apply_once()
    except (tunnel_pool.TunnelNotConfigured, tunnel_wg.WgError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report.line())


@tunnel.command("run", help="Keep the hub in sync with the database every PORTAL_TUNNEL_SYNC_INTERVAL_S (never brings it down).")
def tunnel_run() -> None:
    if not tunnel_pool.is_enabled():
        raise click.ClickException("PORTAL_TUNNEL_ENDPOINT is not set: there is no hub to run")
    tunnel_hub.run_forever(current_app._get_current_object())


@click.group(help="M-Pesa paybills and tills.")
def paybill() -> None:
    pass


@paybill.command("add", help="Add a paybill or till with its Daraja app credentials (stored encrypted).")
@click.option("--owner", "owner_email", default=None, help="Owner's email; leave out for the platform's own paybill (the fallback).")
@click.option("--type", "kind", type=click.Choice(["paybill", "till"]), required=True)
@click.option("--shortcode", required=True, help="Paybill number, or till number for a till.")
@click.option("--store", default=None, help="Till only: the HO/store number Daraja uses as BusinessShortCode.")
@click.option("--consumer-key", required=True)
@click.option("--consumer-secret", required=True)
@click.option("--passkey", required=True, help="M-Pesa Express passkey.")
@click.option("--environment", type=click.Choice(["sandbox", "production"]), default="sandbox", show_default=True)
@click.option("--name", default="")
def paybill_add(owner_email, kind, shortcode, store, consumer_key, consumer_secret, passkey, environment, name) -> None:  # type: ignore[no-untyped-def]
    if kind == "till" and not store:
        raise click.BadParameter("a till needs --store (the HO/store number)", param_hint="--store")
    user = _owner(owner_email) if owner_email else None
    new = create_paybill(
        owner=user, number=shortcode, kind=kind, consumer_key=consumer_key, consumer_secret=consumer_secret,
        passkey=passkey, environment=environment, store_number=store, name=name,
    )
    db.session.flush()
    if user is not None and user.default_paybill_id is None:
        user.default_paybill_id = new.id
    db.session.commit()
    click.echo(f"{kind} {shortcode} added (id {new.id}); STK callback URL: {webhook_urls(new)['stk']}")


@click.group(help="Wi-Fi packages.")
def plan() -> None:
    pass


@plan.command("add", help="Add a package sold on the owner's routers.")
@click.option("--owner", "owner_email", required=True)
@click.option("--name", required=True, help="e.g. '1 Hour'")
@click.option("--price", required=True, type=click.IntRange(1, 250000), help="Whole shillings.")
@click.option("--duration", required=True, help="30m, 1h, 1d, 7d …")
@click.option("--data-limit", default=None, help="e.g. 500MB, 500M, 2G (total, up + down).")
@click.option("--rate-limit", default=None, help="RouterOS rx/tx from the router's view, e.g. 2M/5M (5M download).")
@click.option("--validity", type=click.Choice(["wall_clock", "connected_time"]), default="wall_clock", show_default=True)
@click.option("--devices", type=click.IntRange(1, 50), default=1, show_default=True,
              help="Devices online at once on one voucher (RouterOS shared-users).")
@click.option("--lock-to-device", is_flag=True, default=False,
              help="Only the buying device (its MAC address) may log in with the code.")
def plan_add(owner_email, name, price, duration, data_limit, rate_limit, validity, devices, lock_to_device) -> None:  # type: ignore[no-untyped-def]
    new = Plan(
        owner_id=_owner(owner_email).id, name=name, price=price, duration_s=parse_duration(duration),
        data_limit_bytes=parse_bytes(data_limit) if data_limit else None, rate_limit=rate_limit,
        validity_mode=validity, devices=devices, lock_to_device=lock_to_device,
    )
    db.session.add(new)
    db.session.commit()
    click.echo(f"plan {new.name} – KES {new.price} added (id {new.id})")


@click.group(help="Daraja access tokens.")
def tokens() -> None:
    pass


@tokens.command("refresh", help="Refresh every active paybill's token that expires within 10 minutes.")
@click.option("--force", is_flag=True, help="Refresh even tokens that are still valid.")
def tokens_refresh(force: bool) -> None:
    results = refresh_due_tokens(force=force)
    for result in results:
        click.echo(result.line())
    if not results:
        click.echo("no active paybills")
    if any(r.outcome == "failed" for r in results):
        raise SystemExit(1)


@click.group(help="C2B (paybill/till) payment notifications.")
def c2b() -> None:
    pass


@c2b.command("register", help="Register this portal's confirmation and validation URLs for a shortcode.")
@click.option("--shortcode", required=True)
def c2b_register(shortcode: str) -> None:
    found = db.session.scalars(sa.select(Paybill).where(Paybill.number == shortcode)).first()
    if found is None:
        raise click.ClickException(f"no paybill or till {shortcode}")
    try:
        register_c2b_urls(found)
    except DarajaError as exc:
        raise click.ClickException(f"Daraja refused: {exc}") from exc
    click.echo(f"registered C2B URLs for {shortcode}")


@click.command(help="Run the scheduled jobs and the activation worker in the foreground.")
def worker() -> None:
    run_worker_forever(current_app._get_current_object())


@click.group(help="Encryption keys.")
def keys() -> None:
    pass


@keys.command("rotate", help="Re-encrypt every secret under the newest key in PORTAL_ENCRYPTION_KEYS.")
def keys_rotate() -> None:
    count = rotate_all_secrets()
    click.echo(f"re-encrypted {count} secrets under the newest key")


# --- issue 15: the owner ledger, commission, payouts and refunds -------------------------------


@owner.command("commission", help="Set an owner's commission (percent of each platform-paybill sale, fixed when the "
               "sale is posted); the default is PORTAL_COMMISSION_PERCENT.")
@click.option("--email", required=True)
@click.option("--percent", required=True, type=click.FloatRange(0, 100))
def owner_commission(email: str, percent: float) -> None:
    user = _owner(email)
    bp = money_ledger.set_commission(user, percent, actor="cli")
    db.session.commit()
    click.echo(f"{user.email} pays {bp / 100:g} % commission on sales posted from now on")


@click.group(help="The owner ledger: what the platform owes each owner.")
def ledger() -> None:
    pass


@ledger.command("balance", help="Post any sales not yet in the ledger, then print the owner's balance in whole "
                "shillings (its last word).")
@click.option("--owner", "owner_email", required=True)
def ledger_balance(owner_email: str) -> None:
    user = _owner(owner_email)
    money_ledger.post_sales()
    totals = money_ledger.totals(user.id)
    click.echo(f"sales {totals.sales} commission {totals.commission} payouts {totals.payouts} "
               f"refunds {totals.refunds} adjustments {totals.adjustments} owed-to-platform {totals.owed}")
    click.echo(f"{user.email} balance KES {totals.balance}")


@paybill.command("b2c", help="Give a paybill B2C credentials (the API operator; both stored encrypted) so it can "
                 "send payouts and refunds. The certificate defaults to PORTAL_B2C_CERT_SANDBOX or _PRODUCTION.")
@click.option("--shortcode", required=True)
@click.option("--initiator-name", required=True)
@click.option("--initiator-password", required=True)
@click.option("--certificate", "certificate_path", default=None, help="Safaricom's M-Pesa certificate (PEM or DER).")
def paybill_b2c(shortcode: str, initiator_name: str, initiator_password: str, certificate_path: str | None) -> None:
    found = db.session.scalars(sa.select(Paybill).where(Paybill.number == shortcode).order_by(Paybill.id)).first()
    if found is None:
        raise click.ClickException(f"no paybill or till {shortcode}")
    try:
        b2c_transfers.set_b2c_credentials(found, initiator_name=initiator_name, initiator_password=initiator_password,
                                          certificate_path=certificate_path, actor="cli")
        certificate = b2c_transfers.certificate_path_for(found, db.session.get(PaybillB2C, found.id))
    except (ValueError, b2c_transfers.B2CNotConfigured) as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"{shortcode} can send B2C payments (certificate {certificate}); "
               f"result URL {b2c_transfers.b2c_urls(found)['result']}")


@ledger.command("checkpoint", help="Append balance checkpoints for owners with many new entries (the "
                "checkpoint_ledger job does this every 10 minutes); balances stay sums of entries.")
def ledger_checkpoint() -> None:
    click.echo(f"{money_ledger.checkpoint_balances()['checkpoints']} owners checkpointed")


@owner.command("payout-phone", help="Set the phone an owner's payouts go to; a KES 10 test payout confirms it.")
@click.option("--email", required=True)
@click.option("--phone", required=True, help="07… or 2547…")
def owner_payout_phone(email: str, phone: str) -> None:
    user = _owner(email)
    try:
        check = money_payouts.set_payout_phone(user, phone, actor="cli")
    except money_payouts.PayoutError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.refresh(check)
    click.echo(f"{user.email} payout phone set; test payout {check.id} of KES {check.amount}: {check.state}")


@click.group(help="Payouts to owners (B2C from the platform's paybill).")
def payouts() -> None:
    pass


@payouts.command("run", help="Pay every owner due a payout now (balance at least PORTAL_PAYOUT_MINIMUM, confirmed "
                 "payout phone); prints one line per owner.")
def payouts_run() -> None:
    lines = money_payouts.run_payouts()
    for line in lines:
        click.echo(line.line())
    if not lines:
        click.echo("no owner has a balance or a payout phone")


def _declare_not_sent(model: type, transfer_id: int, note: str) -> None:
    refusal = b2c_transfers.declare_not_sent(model, transfer_id, actor="cli", note=note)
    if refusal:
        raise click.ClickException(f"not declared: {refusal}")
    click.echo(f"{model.__tablename__[:-1]} {transfer_id} declared not sent; it can be retried under a new ID")


@payouts.command("declare-not-sent", help="A sent payout M-Pesa has had no record of (Transaction Status 2032) "
                 "for PORTAL_B2C_NOT_FOUND_AFTER_S: mark it failed, so it can be retried under a new ID.")
@click.argument("payout_id", type=int)
@click.option("--note", default="", help="Why, for the audit log.")
def payouts_declare_not_sent(payout_id: int, note: str) -> None:
    _declare_not_sent(Payout, payout_id, note)


@click.group(help="Refunds to customers.")
def refunds() -> None:
    pass


@refunds.command("declare-not-sent", help="Like `payouts declare-not-sent`, for a refund.")
@click.argument("refund_id", type=int)
@click.option("--note", default="", help="Why, for the audit log.")
def refunds_declare_not_sent(refund_id: int, note: str) -> None:
    _declare_not_sent(Refund, refund_id, note)


@refunds.command("send", help="Refund one payment (a second payment, money for a cancelled voucher or removed "
                 "router, an underpaid payment): by B2C when its paybill can, else recorded as by hand.")
@click.option("--payment", "receipt", required=True, help="The payment's M-Pesa receipt.")
@click.option("--reason", default="refunded by the operator", show_default=True)
@click.option("--phone", default=None, help="The customer's phone, when M-Pesa did not give it (C2B).")
@click.option("--note", default=None, help="For a refund by hand: how the money went back.")
def refunds_send(receipt: str, reason: str, phone: str | None, note: str | None) -> None:
    try:
        refund = money_refunds.refund_by_receipt(receipt, reason=reason, phone=phone, note=note)
    except money_refunds.RefundRefused as exc:
        raise click.ClickException(str(exc)) from exc
    words = refund.failure_reason or ("by hand" if refund.method == "by_hand" else "")
    click.echo(f"refund {refund.id} of KES {refund.amount} for {receipt}: {refund.state} {words}".rstrip())
# --- Issue 17: SMS and owner alerts ----------------------------------------------------------------


@click.group(help="SMS to customers and owners (Africa's Talking).")
def sms() -> None:
    pass


@sms.command("status", help="Say whether this owner's SMS go out, through whose account, and this month's use.")
@click.option("--owner", "owner_email", required=True)
def sms_status(owner_email: str) -> None:
    from .notify import accounts as sms_accounts
    from .notify import delivery, reports

    user = _owner(owner_email)
    status = sms_accounts.sms_status(user.id)
    use = reports.month_use(user.id)
    if not status.sending:
        click.echo("No SMS is sent: PORTAL_SMS_USERNAME is not set and the owner has no own account.")
    else:
        click.echo(f"SMS is on, through the {'owner' if status.account == 'owner' else 'platform'}'s account.")
    click.echo(f"this month: {use.sent} of {use.cap} customer SMS, {use.alerts} alerts, KES {use.cost_kes:.2f}")
    click.echo(f"delivery reports URL: {delivery.report_url()}")


@sms.command("send", help="Send the SMS that are due now (the send_sms job does this every few seconds).")
def sms_send() -> None:
    from .notify import outbox

    counts = outbox.send_due_sms(time_budget_s=60.0)
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing due")


@click.group("alerts", help="Owner alerts (router down, Daraja credentials, problems, payouts).")
def alerts_cli() -> None:
    pass


@alerts_cli.command(
    "check", help="Open, send and clear owner alerts for what is wrong now (a job does this every minute)."
)
def alerts_check() -> None:
    from .notify import alerts

    counts = alerts.check_alerts()
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()) or "no change")

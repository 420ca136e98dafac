"""Routers: list, add, edit, disable, test connection, live sessions, setup (login.html and .rsc)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import joinedload

from ..core.extensions import db
from ..hotspot import pull_sync, router_setup, routers
from ..models import Activation, Paybill, Router
from ..owners import audit
from ..routeros.errors import RouterError
from ..tunnel import peers as tunnel_peers
from ..tunnel import pool as tunnel_pool
from ..tunnel import status as tunnel_status
from . import bp
from .access import client_ip, get_owned_or_404, owner_scope, signed_in_user
from .forms import ActionForm, DisconnectForm, RouterForm, SetupConfirmForm, SetupScriptForm
from .forms_pull import PullSetupForm, TransportForm

DEFAULT_PAYBILL_CHOICE = (0, "Owner's default (else the platform's)")


def _audit(action: str, router: Router, detail: str | None = None) -> None:
    audit.record(
        action,
        actor=signed_in_user(),
        owner_id=router.owner_id,
        object_type="router",
        object_id=router.id,
        detail=detail,
        source_ip=client_ip(),
    )


def _paybill_choices(owner_id: int) -> list[tuple[int, str]]:
    rows = db.session.execute(
        sa.select(Paybill.id, Paybill.type, Paybill.number, Paybill.name)
        .where(Paybill.owner_id == owner_id, Paybill.status == "active")
        .order_by(Paybill.id)
    ).all()
    return [DEFAULT_PAYBILL_CHOICE, *((r.id, f"{r.name} ({r.type} {r.number})") for r in rows)]


@bp.get("/routers", endpoint="routers")
def routers_list():  # type: ignore[no-untyped-def]
    unfinished = (
        sa.select(Activation.router_id, sa.func.count().label("n"))
        .where(Activation.status != "done")
        .group_by(Activation.router_id)
        .subquery()
    )
    rows = db.session.execute(
        owner_scope(sa.select(Router, sa.func.coalesce(unfinished.c.n, 0)), Router)
        .outerjoin(unfinished, unfinished.c.router_id == Router.id)
        .options(joinedload(Router.paybill), joinedload(Router.owner))
        .order_by(Router.status, Router.name, Router.id)
    ).all()
    return render_template("dashboard/routers/list.html", rows=rows, is_offline=pull_sync.is_offline,
                           tunnel_state=tunnel_status.tunnel_state)


@bp.route("/routers/new", methods=["GET", "POST"])
def router_new():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    form = RouterForm(is_new=True)
    form.paybill_id.choices = _paybill_choices(user.id)
    _offer_tunnel(form)
    if form.validate_on_submit():
        try:
            router = routers.create_router(
                owner=user,
                name=form.name.data.strip(),
                host="" if form.is_tunnel else form.host.data.strip(),
                port=form.port.data,
                username=form.api_username.data.strip(),
                # a tunnel router's real password comes with its setup script
                password=form.api_password.data or router_setup.new_api_password(),
                use_tls=form.use_tls.data,
                hotspot_server=(form.hotspot_server.data or "").strip() or None,
                tunnel=form.is_tunnel,
            )
        except (tunnel_pool.TunnelNotConfigured, tunnel_pool.PoolExhausted) as exc:
            db.session.rollback()
            form.connection_mode.errors.append(str(exc))
            return render_template("dashboard/routers/form.html", form=form, router=None), 400
        router.paybill_id = form.paybill_id.data or None
        router.wifi_name = (form.wifi_name.data or "").strip() or None
        router.hotspot_dns_name = form.hotspot_dns_name.data or None
        db.session.flush()
        _audit("router_added", router, f"{router.host}:{router.port}" + (" over the tunnel" if form.is_tunnel else ""))
        db.session.commit()
        if form.is_tunnel:
            flash(f"Router {router.name} added with tunnel address {router.tunnel_address}. "
                  "Paste its setup script on the router next.", "ok")
            return redirect(url_for("dashboard.router_setup_page", router_id=router.id))
        flash(f"Router {router.name} added. Test the connection, then set the router up.", "ok")
        return redirect(url_for("dashboard.router_detail", router_id=router.id))
    return render_template(
        "dashboard/routers/form.html", form=form, router=None
    ), 400 if request.method == "POST" else 200


def _offer_tunnel(form: RouterForm) -> None:
    """Without a hub the choice is not shown, and every router is reached directly."""
    form.offers_tunnel = current_app.config["TUNNEL_ENABLED"]
    if not form.offers_tunnel:
        form.connection_mode.data = "direct"


@bp.get("/routers/<int:router_id>")
def router_detail(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    return render_template(
        "dashboard/routers/detail.html",
        router=router,
        action=ActionForm(),
        activations=routers.unfinished_activations(router),
        portal_url=router_setup.portal_url_for(router, current_app.config["PORTAL_BASE_URL"]),
        is_offline=pull_sync.is_offline,
        transport_form=TransportForm(formdata=None, transport="api" if router.transport == "pull" else "pull"),
        sync_url=pull_sync.sync_url(router, current_app.config["PORTAL_BASE_URL"]),
        tunnel=tunnel_status.tunnel_state(router),
    )


@bp.route("/routers/<int:router_id>/edit", methods=["GET", "POST"])
def router_edit(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    if router.transport == "pull":  # no API address or credentials to edit
        return redirect(url_for("dashboard.router_pull_settings", router_id=router.id))
    # The API password is never loaded into the form: it cannot be sent back, even by mistake.
    shown = ("name", "host", "port", "use_tls", "api_username", "hotspot_server", "hotspot_dns_name", "wifi_name",
             "connection_mode")
    form = RouterForm(data={name: getattr(router, name) for name in shown}, is_new=False)
    form.paybill_id.choices = _paybill_choices(router.owner_id)
    _offer_tunnel(form)
    if not form.offers_tunnel and router.connection_mode == "tunnel":
        form.connection_mode.data = "tunnel"  # keep it: no hub to switch to or from
    if request.method == "GET":
        form.paybill_id.data = router.paybill_id or 0
    if form.validate_on_submit():
        routers.update_router(
            router,
            name=form.name.data.strip(),
            host=form.host.data.strip() or router.host,
            port=form.port.data,
            username=form.api_username.data.strip(),
            use_tls=form.use_tls.data,
            hotspot_server=(form.hotspot_server.data or "").strip() or None,
            paybill_id=form.paybill_id.data or None,
            password=form.api_password.data or None,
        )
        router.wifi_name = (form.wifi_name.data or "").strip() or None
        router.hotspot_dns_name = form.hotspot_dns_name.data or None
        switched = form.offers_tunnel and form.connection_mode.data != router.connection_mode
        if form.offers_tunnel and (switched or form.is_tunnel):
            try:
                routers.set_connection_mode(router, form.connection_mode.data, form.host.data.strip())
            except (tunnel_pool.TunnelNotConfigured, tunnel_pool.PoolExhausted) as exc:
                db.session.rollback()
                form.connection_mode.errors.append(str(exc))
                return render_template("dashboard/routers/form.html", form=form, router=router), 400
        if switched:
            _audit("router_connection_changed", router, f"now {router.connection_mode} ({router.host})")
        _audit("router_changed", router, "API password changed" if form.api_password.data else None)
        db.session.commit()
        flash("Router saved.", "ok")
        return redirect(url_for("dashboard.router_detail", router_id=router.id))
    return render_template(
        "dashboard/routers/form.html", form=form, router=router
    ), 400 if request.method == "POST" else 200


@bp.post("/routers/<int:router_id>/test")
def router_test(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    ActionForm().validate_on_submit()  # CSRFProtect has already refused a POST without a token
    try:
        report = routers.check_connection(router)
    except RouterError as exc:
        flash(f"Connection failed: {exc.reason}", "error")
    else:
        servers = ", ".join(report.hotspot_servers) or "none (set up a hotspot on the router first)"
        flash(f"Connected to {report.identity or 'the router'}. Hotspot servers: {servers}.", "ok")
        if report.learned_dns_name:
            flash(f"The router's hotspot DNS name {report.learned_dns_name} is now accepted as its login "
                  "address (change it under Edit).", "ok")
    return redirect(url_for("dashboard.router_detail", router_id=router.id))


@bp.post("/routers/<int:router_id>/disable")
def router_disable(router_id: int):  # type: ignore[no-untyped-def]
    return _set_status(router_id, "disabled", "Router disabled: its customer page is closed.")


@bp.post("/routers/<int:router_id>/enable")
def router_enable(router_id: int):  # type: ignore[no-untyped-def]
    return _set_status(router_id, "active", "Router enabled: its customer page is open again.")


def _set_status(router_id: int, status: str, message: str):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    routers.set_router_status(router, status)
    _audit(f"router_{'disabled' if status == 'disabled' else 'enabled'}", router)
    db.session.commit()
    flash(message, "ok")
    return redirect(url_for("dashboard.router_detail", router_id=router.id))


@bp.get("/routers/<int:router_id>/sessions")
def router_sessions(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    sessions, error = [], None
    try:
        sessions = routers.active_sessions(router)
    except RouterError as exc:
        error = exc.reason
    return render_template(
        "dashboard/routers/sessions.html", router=router, sessions=sessions, error=error, form=DisconnectForm()
    )


@bp.post("/routers/<int:router_id>/sessions/disconnect")
def router_disconnect(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    form = DisconnectForm()
    if not form.validate_on_submit():
        flash("That is not a session of this router.", "error")
    else:
        try:
            routers.disconnect_session(router, form.session_id.data)
        except RouterError as exc:
            flash(f"Could not disconnect: {exc.reason}", "error")
        else:
            _audit("session_disconnected", router, form.session_id.data)
            db.session.commit()
            flash("Session disconnected.", "ok")
    return redirect(url_for("dashboard.router_sessions", router_id=router.id))


# --- setup ---------------------------------------------------------------------------------


def _base_url() -> str:
    return current_app.config["PORTAL_BASE_URL"]


@bp.get("/routers/<int:router_id>/setup")
def router_setup_page(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    form = SetupScriptForm(formdata=None, portal_address=router_setup.default_portal_address(_base_url()))
    return _render_setup(router, form)


def _render_setup(router: Router, form: SetupScriptForm, status: int = 200, **extra: object):  # type: ignore[no-untyped-def]
    base = _base_url()
    return render_template(
        "dashboard/routers/setup.html",
        router=router,
        form=form,
        portal_host=router_setup.portal_host(base),
        portal_url=router_setup.portal_url_for(router, base),
        login_html=router_setup.login_html(router, base),
        pull_form=extra.pop("pull_form", None) or PullSetupForm(formdata=None),
        tunnel=tunnel_status.tunnel_state(router),
        **extra,
    ), status


@bp.get("/routers/<int:router_id>/setup/login.html")
def router_login_html(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    return Response(
        router_setup.login_html(router, _base_url()),
        mimetype="text/html",
        headers={"Content-Disposition": "attachment; filename=login.html"},
    )


@bp.post("/routers/<int:router_id>/setup/script")
def router_setup_script(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    form = SetupScriptForm()
    if not form.validate_on_submit():
        return _render_setup(router, form, 400)
    options = router_setup.SetupOptions(
        api_username=form.api_username.data,
        portal_address=form.portal_address.data or None,
        hotspot_profile=form.hotspot_profile.data,
        html_directory=form.html_directory.data,
        tunnel=_tunnel_setup(router),
    )
    password = router_setup.new_api_password()
    script = router_setup.setup_script(router, _base_url(), options, password)
    db.session.commit()  # the hub's keypair, if this is the first script that needs it
    confirm = SetupConfirmForm(
        formdata=None, sealed=router_setup.seal_credentials(router, options.api_username, password)
    )
    return _render_setup(router, form, script=script, confirm=confirm, api_username=options.api_username)


@bp.post("/routers/<int:router_id>/setup/confirm")
def router_setup_confirm(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    form = SetupConfirmForm()
    try:
        if not form.validate_on_submit():
            raise router_setup.SealBroken("nothing to confirm; generate the script first")
        username, password = router_setup.unseal_credentials(router, form.sealed.data)
    except router_setup.SealBroken as exc:
        flash(f"Not saved: {exc}.", "error")
        return redirect(url_for("dashboard.router_setup_page", router_id=router.id))
    routers.update_router(
        router,
        name=router.name,
        host=router.host,
        port=router.port,
        username=username,
        use_tls=router.use_tls,
        hotspot_server=router.hotspot_server,
        paybill_id=router.paybill_id,
        password=password,
    )
    _audit("router_api_user_set", router, f"API user {username} from the setup script")
    db.session.commit()
    flash(f"Saved: the portal now logs in as {username}. Test the connection to check the script ran.", "ok")
    return redirect(url_for("dashboard.router_detail", router_id=router.id))


# --- the WireGuard tunnel (issue 13) -----------------------------------------------------------


def _tunnel_setup(router: Router) -> tunnel_peers.TunnelSetup | None:
    if router.connection_mode != "tunnel" or not current_app.config["TUNNEL_ENABLED"]:
        return None
    return tunnel_peers.setup_for(router)


@bp.post("/routers/<int:router_id>/tunnel/rotate")
def router_rotate_keys(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    ActionForm().validate_on_submit()
    try:
        tunnel_peers.rotate_keys(router)
    except (ValueError, tunnel_pool.TunnelNotConfigured) as exc:
        flash(f"Keys not rotated: {exc}.", "error")
        return redirect(url_for("dashboard.router_detail", router_id=router.id))
    _audit("router_tunnel_keys_rotated", router)
    db.session.commit()
    flash("New tunnel keys made. The old key keeps working until you paste the new script on the router "
          "and its new key connects; then the portal drops the old key.", "ok")
    return redirect(url_for("dashboard.router_setup_page", router_id=router.id))

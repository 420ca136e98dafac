"""Routers that sync by pull: add one, edit its settings, switch transport, generate its sync script."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from ..core.extensions import db
from ..hotspot import activations, pull_scripts, pull_sync
from ..models import Router
from . import bp
from .access import get_owned_or_404, signed_in_user
from .forms import SetupScriptForm
from .forms_pull import PullRouterForm, PullSetupForm, TransportForm
from .views_routers import _audit, _paybill_choices, _render_setup


@bp.route("/routers/new-pull", methods=["GET", "POST"])
def router_new_pull():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    form = PullRouterForm()
    form.paybill_id.choices = _paybill_choices(user.id)
    if form.validate_on_submit():
        router, _token = pull_sync.create_pull_router(
            owner=user, name=form.name.data.strip(), hotspot_server=(form.hotspot_server.data or "").strip() or None,
            interval_s=form.sync_interval_s.data,
        )
        router.paybill_id = form.paybill_id.data or None
        router.hotspot_dns_name = form.hotspot_dns_name.data or None
        db.session.flush()
        _audit("router_added", router, f"pull sync every {router.sync_interval_s}s")
        db.session.commit()
        flash(f"Router {router.name} added. Generate its sync script and paste it into the router.", "ok")
        return redirect(url_for("dashboard.router_setup_page", router_id=router.id))
    return render_template("dashboard/routers/pull_form.html", form=form, router=None), 400 if request.method == "POST" else 200


@bp.route("/routers/<int:router_id>/pull-settings", methods=["GET", "POST"])
def router_pull_settings(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    shown = ("name", "sync_interval_s", "hotspot_server", "hotspot_dns_name")
    form = PullRouterForm(data={name: getattr(router, name) for name in shown})
    form.paybill_id.choices = _paybill_choices(router.owner_id)
    if request.method == "GET":
        form.paybill_id.data = router.paybill_id or 0
    if form.validate_on_submit():
        router.name = form.name.data.strip()
        router.hotspot_server = (form.hotspot_server.data or "").strip() or None
        router.hotspot_dns_name = form.hotspot_dns_name.data or None
        router.paybill_id = form.paybill_id.data or None
        pull_sync.set_sync_interval(router, form.sync_interval_s.data)  # the router picks it up at its next sync
        _audit("router_changed", router, f"pull sync every {router.sync_interval_s}s")
        db.session.commit()
        flash("Router saved.", "ok")
        return redirect(url_for("dashboard.router_detail", router_id=router.id))
    return render_template("dashboard/routers/pull_form.html", form=form, router=router), 400 if request.method == "POST" else 200


@bp.post("/routers/<int:router_id>/transport")
def router_transport(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    form = TransportForm()
    if not form.validate_on_submit():
        flash("Choose API or pull sync.", "error")
        return redirect(url_for("dashboard.router_detail", router_id=router.id))
    try:
        wake = pull_sync.set_transport(router, form.transport.data)
    except pull_sync.TransportError as exc:
        flash(str(exc), "error")
        return redirect(url_for("dashboard.router_detail", router_id=router.id))
    _audit("router_transport_changed", router, f"now {router.transport}")
    db.session.commit()
    if wake:
        activations.wake_worker()
    if router.transport == "pull":
        flash("The router now fetches its own work. Generate its sync script on the setup page.", "ok")
        return redirect(url_for("dashboard.router_setup_page", router_id=router.id))
    flash("The portal now connects to the router over its API. Test the connection.", "ok")
    return redirect(url_for("dashboard.router_detail", router_id=router.id))


@bp.post("/routers/<int:router_id>/setup/pull-script")
def router_pull_script(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    api_form = SetupScriptForm(formdata=None)
    pull_form = PullSetupForm()
    if router.transport != "pull" or not pull_form.validate_on_submit():
        return _render_setup(router, api_form, 400, pull_form=pull_form)
    token = pull_sync.issue_sync_token(router)
    options = pull_scripts.PullSetupOptions(
        form=pull_form.form.data, interval_s=router.sync_interval_s, hotspot_profile=pull_form.hotspot_profile.data,
        html_directory=pull_form.html_directory.data,
        ca_pem=pull_scripts.read_ca_pem(current_app.config["PORTAL_ROUTER_CA_FILE"]),
    )
    script = pull_scripts.pull_setup_script(router, current_app.config["PORTAL_BASE_URL"], token, options)
    _audit("router_sync_token_rotated", router, f"new {options.form} sync script")
    db.session.commit()
    return _render_setup(router, api_form, pull_form=pull_form, pull_script=script)

"""Logs: the webhook log (raw payloads, masked) and the audit log."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from ..money import webhook_log
from ..owners import log_search
from ..owners.scope import NotFound
from . import bp
from .access import signed_in_user
from .forms import ActionForm
from .forms_money import AuditFilterForm, WebhookFilterForm


@bp.get("/logs", endpoint="logs")
def logs_page():  # type: ignore[no-untyped-def]
    form = WebhookFilterForm(formdata=request.args)
    if request.args and not form.validate():
        return render_template("dashboard/logs/webhooks.html", form=form, page=None), 400
    flt = log_search.WebhookFilter(
        kind=form.kind.data or None, status=form.status.data or None, date_from=form.date_from.data,
        date_to=form.date_to.data, text=form.text.data or None,
    )
    try:
        page = log_search.search_webhook_logs(signed_in_user(), flt, after=request.args.get("after"))
    except log_search.BadCursor:
        abort(400)
    next_args = {k: v for k, v in request.args.items() if k != "after"}
    return render_template("dashboard/logs/webhooks.html", form=form, page=page, next_args=next_args)


@bp.get("/logs/webhooks/<int:log_id>", endpoint="log_detail")
def log_detail(log_id: int):  # type: ignore[no-untyped-def]
    entry = _visible_entry_or_404(log_id)
    return render_template("dashboard/logs/webhook_detail.html", entry=entry,
                           payload=log_search.pretty_payload(entry.payload),
                           given_up=webhook_log.is_given_up(entry), action=ActionForm(formdata=None))


@bp.post("/logs/webhooks/<int:log_id>/try-again", endpoint="log_try_again")
def log_try_again(log_id: int):  # type: ignore[no-untyped-def]
    entry = _visible_entry_or_404(log_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    outcome = webhook_log.try_given_up_again(entry.id, actor=signed_in_user())
    flash(f"Webhook {log_id} tried again: {outcome}.", "ok")
    back = url_for("dashboard.problems") if request.form.get("from") == "problems" else url_for(
        "dashboard.log_detail", log_id=log_id)
    return redirect(back, code=303)


def _visible_entry_or_404(log_id: int):  # type: ignore[no-untyped-def]
    try:
        return log_search.webhook_entry(signed_in_user(), log_id)
    except NotFound:
        abort(404)


@bp.get("/logs/audit", endpoint="audit_log")
def audit_log():  # type: ignore[no-untyped-def]
    form = AuditFilterForm(formdata=request.args)
    action = form.action.data if form.validate() else None
    try:
        page = log_search.search_audit_log(signed_in_user(), action=action, after=request.args.get("after"))
    except log_search.BadCursor:
        abort(400)
    next_args = {k: v for k, v in request.args.items() if k != "after"}
    return render_template("dashboard/logs/audit.html", form=form, page=page, next_args=next_args)

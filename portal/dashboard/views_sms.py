"""SMS and alerts: whether SMS is on and through whose account, this month's use against the cap,
the latest messages with their outcome and cost, and the owner's choices (issue 17). Every
dashboard page shows the owner's open alerts as a banner."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..core.extensions import db
from ..models import User
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import mask_phone, normalise_phone
from ..notify import accounts, alerts, delivery, reports
from ..owners import audit
from . import bp
from .access import client_ip, signed_in_user
from .forms_sms import SmsSettingsForm

CHOICES = (
    "customer_sms",
    "monthly_cap",
    "alert_router_down",
    "alert_paybill_failing",
    "alert_problem_waiting",
    "alert_payout_failed",
    "at_username",
    "at_sender",
)


@bp.context_processor
def _owner_alert_banner() -> dict[str, Any]:
    user = current_user._get_current_object() if current_user else None
    if not isinstance(user, User) or not user.is_authenticated:
        return {}
    return {"owner_alerts": alerts.open_alerts_for(user.id)}


@bp.route("/sms", methods=["GET", "POST"])
def sms():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    settings = accounts.settings_for(user.id)
    form = SmsSettingsForm(
        data={name: getattr(settings, name) for name in CHOICES} | {"alert_phone": settings.alert_phone or ""}
    )
    if form.validate_on_submit():
        saved = _save(user, form)
        if saved:
            return redirect(url_for("dashboard.sms"))
    status = 400 if request.method == "POST" else 200
    return render_template(
        "dashboard/sms.html",
        form=form,
        settings=settings,
        status=accounts.sms_status(user.id),
        use=reports.month_use(user.id),
        messages=reports.recent_messages(user),
        mask_phone=mask_phone,
        report_url=delivery.report_url(),
        alert_phone=accounts.alert_phone(settings, user),
        open_alerts=alerts.open_alerts_for(user.id),
    ), status


def _save(user: User, form: SmsSettingsForm) -> bool:
    phone = None
    if form.alert_phone.data and form.alert_phone.data.strip():
        try:
            phone = normalise_phone(form.alert_phone.data)
        except InvalidPhoneNumber:
            form.alert_phone.errors = [*form.alert_phone.errors, "Enter a Kenyan mobile number like 0712 345 678."]
            return False
    values: dict[str, Any] = {name: getattr(form, name).data for name in CHOICES}
    values["at_username"] = (values["at_username"] or "").strip() or None
    values["at_sender"] = (values["at_sender"] or "").strip() or None
    values["alert_phone"] = phone
    if form.remove_own_account.data:
        values.update(at_username=None, at_api_key="")
    elif form.at_api_key.data:
        values["at_api_key"] = form.at_api_key.data.strip()
    if values["at_username"] and not (values.get("at_api_key") or accounts.settings_for(user.id).at_api_key_encrypted):
        form.at_api_key.errors = [*form.at_api_key.errors, "Give the API key of this account."]
        return False
    accounts.save_settings(user.id, **values)
    # The audit line names what changed, never the key itself.
    audit.record(
        "sms_settings_changed",
        actor=user,
        owner_id=user.id,
        object_type="owner",
        object_id=user.id,
        detail="own Africa's Talking key replaced" if form.at_api_key.data else None,
        source_ip=client_ip(),
    )
    db.session.commit()
    flash("SMS and alert settings saved.", "ok")
    return True

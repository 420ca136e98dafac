"""Paybills and tills: list, add, edit, test credentials, register C2B URLs, rotate the webhook token."""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for

from ..core.extensions import db
from ..models import Paybill, User
from ..mpesa.errors import DarajaError
from ..owners import audit, paybills, tokens
from . import bp
from .access import client_ip, get_owned_or_404, owner_scope, signed_in_user
from .forms import ActionForm, PaybillForm

PLATFORM_CHOICE = (0, "The platform (fallback for every owner)")


def _audit(action: str, paybill: Paybill, detail: str | None = None) -> None:
    audit.record(
        action,
        actor=signed_in_user(),
        owner_id=paybill.owner_id,
        object_type="paybill",
        object_id=paybill.id,
        detail=detail,
        source_ip=client_ip(),
    )


def _owner_choices() -> list[tuple[int, str]]:
    rows = db.session.execute(sa.select(User.id, User.email).order_by(User.email)).all()
    return [PLATFORM_CHOICE, *((r.id, r.email) for r in rows)]


def _form(user: User, *, is_new: bool, paybill: Paybill | None = None) -> PaybillForm:
    # Secrets are never loaded into the form: it cannot send them back, even by mistake.
    shown = ("name", "type", "number", "store_number", "environment", "status")
    form = PaybillForm(data={name: getattr(paybill, name) for name in shown} if paybill else None, is_new=is_new)
    if is_new and user.is_admin:
        form.owner_id.choices = _owner_choices()
    else:
        del form.owner_id
    return form


def _secret_fields(form: PaybillForm) -> dict[str, str | None]:
    return {name: (form[name].data or "").strip() or None for name in PaybillForm.SECRET_FIELDS}


@bp.get("/paybills", endpoint="paybills")
def paybills_list():  # type: ignore[no-untyped-def]
    rows = db.session.execute(
        owner_scope(sa.select(Paybill, User.email), Paybill)
        .outerjoin(User, User.id == Paybill.owner_id)
        .order_by(Paybill.owner_id.is_not(None), Paybill.status, Paybill.id)
    ).all()
    return render_template("dashboard/paybills/list.html", rows=rows)


@bp.route("/paybills/new", methods=["GET", "POST"])
def paybill_new():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    form = _form(user, is_new=True)
    if form.validate_on_submit():
        owner = user
        if user.is_admin:
            owner = db.session.get(User, form.owner_id.data) if form.owner_id.data else None
        secrets = _secret_fields(form)
        paybill = paybills.create_paybill(
            owner=owner,
            number=form.number.data.strip(),
            kind=form.type.data,
            environment=form.environment.data,
            store_number=(form.store_number.data or "").strip() or None,
            name=(form.name.data or "").strip(),
            consumer_key=secrets["consumer_key"],
            consumer_secret=secrets["consumer_secret"],
            passkey=secrets["passkey"],
        )
        paybill.status = form.status.data
        db.session.flush()
        if owner is not None and owner.default_paybill_id is None:
            owner.default_paybill_id = paybill.id
        _audit("paybill_added", paybill, f"{paybill.type} {paybill.number} ({paybill.environment})")
        db.session.commit()
        flash(f"{paybill.name} added. Test the credentials, then register the C2B URLs.", "ok")
        return redirect(url_for("dashboard.paybill_detail", paybill_id=paybill.id))
    return render_template(
        "dashboard/paybills/form.html", form=form, paybill=None
    ), 400 if request.method == "POST" else 200


@bp.get("/paybills/<int:paybill_id>")
def paybill_detail(paybill_id: int):  # type: ignore[no-untyped-def]
    paybill = get_owned_or_404(Paybill, paybill_id)
    masked = {
        "Consumer key": paybills.mask_secret(paybill.consumer_key),
        "Consumer secret": paybills.mask_secret(paybill.consumer_secret),
        "Passkey": paybills.mask_secret(paybill.passkey),
        "Webhook token": paybills.mask_secret(paybill.webhook_token),
    }
    return render_template("dashboard/paybills/detail.html", paybill=paybill, masked=masked, action=ActionForm())


@bp.route("/paybills/<int:paybill_id>/edit", methods=["GET", "POST"])
def paybill_edit(paybill_id: int):  # type: ignore[no-untyped-def]
    paybill = get_owned_or_404(Paybill, paybill_id)
    form = _form(signed_in_user(), is_new=False, paybill=paybill)
    if form.validate_on_submit():
        secrets = _secret_fields(form)
        paybills.update_paybill(
            paybill,
            name=(form.name.data or "").strip(),
            number=form.number.data.strip(),
            kind=form.type.data,
            store_number=(form.store_number.data or "").strip() or None,
            environment=form.environment.data,
            status=form.status.data,
            **secrets,
        )
        changed = [name.replace("_", " ") for name, value in secrets.items() if value]
        _audit("paybill_changed", paybill, f"new {', '.join(changed)}" if changed else None)
        db.session.commit()
        flash("Paybill saved.", "ok")
        return redirect(url_for("dashboard.paybill_detail", paybill_id=paybill.id))
    return render_template(
        "dashboard/paybills/form.html", form=form, paybill=paybill
    ), 400 if request.method == "POST" else 200


@bp.post("/paybills/<int:paybill_id>/test")
def paybill_test(paybill_id: int):  # type: ignore[no-untyped-def]
    paybill = get_owned_or_404(Paybill, paybill_id)
    result = tokens.refresh_paybill_token(paybill.id, force=True)
    if result.outcome == "failed":
        flash(f"Daraja refused the credentials: {result.detail}", "error")
    elif result.outcome == "refreshed":
        flash(f"Credentials work: Daraja issued a token ({result.detail}).", "ok")
    else:
        flash(f"Not tested now: {result.detail}. Try again in a minute.", "warning")
    return redirect(url_for("dashboard.paybill_detail", paybill_id=paybill_id))


@bp.post("/paybills/<int:paybill_id>/register-c2b")
def paybill_register_c2b(paybill_id: int):  # type: ignore[no-untyped-def]
    paybill = get_owned_or_404(Paybill, paybill_id)
    try:
        paybills.register_c2b_urls(paybill)
    except DarajaError as exc:
        db.session.rollback()
        flash(f"Daraja did not register the C2B URLs: {exc}", "error")
    else:
        _audit("c2b_urls_registered", paybill)
        db.session.commit()
        flash("C2B URLs registered: payments made straight to the number now reach the portal.", "ok")
    return redirect(url_for("dashboard.paybill_detail", paybill_id=paybill_id))


@bp.post("/paybills/<int:paybill_id>/rotate-webhook-token")
def paybill_rotate_token(paybill_id: int):  # type: ignore[no-untyped-def]
    paybill = get_owned_or_404(Paybill, paybill_id)
    old_until = paybills.rotate_webhook_token(paybill)
    _audit("webhook_token_rotated", paybill, f"previous token valid until {old_until.isoformat(timespec='minutes')}")
    db.session.commit()
    flash(
        "New webhook address made. The old one keeps working for 24 hours. "
        "Register the C2B URLs again so direct payments use the new one.",
        "ok",
    )
    return redirect(url_for("dashboard.paybill_detail", paybill_id=paybill_id))

"""Sign in, sign out, and the account page (password change)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user

from ..core.extensions import db, login_manager
from ..owners import accounts, audit
from . import bp
from .access import client_ip, is_safe_next, signed_in_user
from .forms import PasswordChangeForm, SignInForm
from .forms_accounts import PrintDetailsForm


@bp.record_once
def _point_flask_login_at_sign_in(state) -> None:  # type: ignore[no-untyped-def]
    # Set when the blueprint is registered, not at import: only for @login_required elsewhere,
    # since the dashboard's own before_request already redirects signed-out visitors.
    login_manager.login_view = "dashboard.sign_in"
    login_manager.login_message = "Sign in to continue."


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():  # type: ignore[no-untyped-def]
    form = SignInForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        return render_template("dashboard/auth/sign_in.html", form=form), 400 if request.method == "POST" else 200
    try:
        user = accounts.sign_in(form.email.data, form.password.data, source_ip=client_ip())
    except accounts.SignInRefused as exc:
        form.password.errors = [str(exc)]
        return render_template("dashboard/auth/sign_in.html", form=form), 429 if isinstance(
            exc, accounts.SignInLocked
        ) else 401
    session.clear()  # a fresh session (and CSRF token) for the signed-in user
    login_user(user)
    target = form.next.data
    return redirect(target if is_safe_next(target) else url_for("dashboard.index"))


@bp.post("/sign-out")
def sign_out():  # type: ignore[no-untyped-def]
    # The base layout's sign-out button posts the CSRF token; CSRFProtect checks it before this runs.
    user = signed_in_user()
    audit.record("sign_out", actor=user, owner_id=user.id, source_ip=client_ip())
    db.session.commit()
    logout_user()
    session.clear()
    flash("Signed out.", "ok")
    return redirect(url_for("dashboard.sign_in"))


@bp.route("/account", methods=["GET", "POST"])
def account():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    form = PasswordChangeForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(user, form.current_password.data, form.new_password.data, source_ip=client_ip())
        except accounts.AccountError as exc:
            form.current_password.errors = [str(exc)]
        else:
            db.session.commit()
            login_user(user)  # this session carries the new version; every other one has ended
            flash("Password changed. Every other session of this account has been signed out.", "ok")
            return redirect(url_for("dashboard.account"))
    status = 400 if request.method == "POST" else 200
    return render_template("dashboard/auth/account.html", form=form, user=user, print_form=_print_form(user)), status


def _print_form(user, *, submitted: bool = False) -> PrintDetailsForm:  # type: ignore[no-untyped-def]
    return PrintDetailsForm() if submitted else PrintDetailsForm(formdata=None, obj=user)


@bp.post("/account/print-details", endpoint="account_print_details")
def account_print_details():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    form = _print_form(user, submitted=True)
    if not form.validate_on_submit():
        return render_template("dashboard/auth/account.html", form=PasswordChangeForm(formdata=None), user=user,
                               print_form=form), 400
    accounts.update_print_details(user, business_name=form.business_name.data or "",
                                  support_phone=form.support_phone.data or "", source_ip=client_ip())
    db.session.commit()
    flash("Saved: new printed vouchers carry these details.", "ok")
    return redirect(url_for("dashboard.account"), code=303)

"""Owners managing themselves: sign-up (when PORTAL_OPEN_SIGNUP allows), the phone code, and
password reset by e-mail. The services are portal/owners/signup.py and password_reset.py."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import login_user

from ..owners import accounts, mailer, password_reset, signup
from . import bp
from .access import client_ip, signed_in_user
from .forms_accounts import ConfirmCodeForm, ForgotPasswordForm, ResetPasswordForm, SignUpForm


@bp.app_context_processor
def _signup_flags() -> dict[str, object]:
    return {"signup_open": signup.signup_open, "mail_enabled": mailer.mail_enabled}


@bp.route("/sign-up", methods=["GET", "POST"], endpoint="sign_up")
def sign_up():  # type: ignore[no-untyped-def]
    if not signup.signup_open():
        abort(404)
    form = SignUpForm()
    if form.validate_on_submit():
        try:
            user = signup.sign_up(form.email.data, form.password.data, form.phone.data, form.business_name.data or "",
                                  source_ip=client_ip())
        except (accounts.AccountError, mailer.MailNotSent) as exc:
            form.email.errors = [str(exc)]
        else:
            session.clear()
            login_user(user)
            flash(f"Account made. We sent a code to {user.email}: type it below to confirm your phone.", "ok")
            return redirect(url_for("dashboard.confirm_phone"))
    return render_template("dashboard/auth/sign_up.html", form=form), 400 if request.method == "POST" else 200


@bp.route("/confirm-phone", methods=["GET", "POST"], endpoint="confirm_phone")
def confirm_phone():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    if user.is_confirmed:
        return redirect(url_for("dashboard.index"))
    form = ConfirmCodeForm()
    if form.validate_on_submit():
        try:
            signup.confirm_phone(user, form.code.data, source_ip=client_ip())
        except accounts.AccountError as exc:
            form.code.errors = [str(exc)]
        else:
            flash("Phone confirmed. Add your router, paybill and plans to start selling.", "ok")
            return redirect(url_for("dashboard.index"))
    return render_template("dashboard/auth/confirm_phone.html", form=form, user=user), \
        400 if request.method == "POST" else 200


@bp.post("/confirm-phone/resend", endpoint="resend_code")
def resend_code():  # type: ignore[no-untyped-def]
    try:
        signup.resend_code(signed_in_user(), source_ip=client_ip())
    except (accounts.AccountError, mailer.MailNotSent) as exc:
        flash(str(exc), "warning")
    else:
        flash("A new code is on its way; the old one no longer works.", "ok")
    return redirect(url_for("dashboard.confirm_phone"), code=303)


@bp.route("/forgot-password", methods=["GET", "POST"], endpoint="forgot_password")
def forgot_password():  # type: ignore[no-untyped-def]
    form = ForgotPasswordForm()
    if mailer.mail_enabled() and form.validate_on_submit():
        try:
            password_reset.request_reset(
                form.email.data, source_ip=client_ip(),
                reset_url_for=lambda token: url_for("dashboard.reset_password", token=token, _external=True),
            )
        except (accounts.AccountError, mailer.MailNotSent) as exc:
            form.email.errors = [str(exc)]
        else:
            flash("If that e-mail has an account, a reset link is on its way. It works for an hour.", "ok")
            return redirect(url_for("dashboard.sign_in"), code=303)
    return render_template("dashboard/auth/forgot_password.html", form=form), 400 if request.method == "POST" else 200


@bp.route("/reset-password", methods=["GET", "POST"], endpoint="reset_password")
def reset_password():  # type: ignore[no-untyped-def]
    # The token rides in the query string (GET, from the e-mail) and then in the form (POST).
    form = ResetPasswordForm(token=request.args.get("token", ""))
    token = form.token.data or ""
    try:
        password_reset.user_for_token(token)
    except password_reset.BadResetLink as exc:
        return render_template("dashboard/auth/reset_password.html", form=None, problem=str(exc)), 400
    if form.validate_on_submit():
        try:
            password_reset.reset_password(token, form.password.data, source_ip=client_ip())
        except accounts.AccountError as exc:
            form.password.errors = [str(exc)]
        else:
            flash("Password changed. Sign in with the new one; every other session has ended.", "ok")
            return redirect(url_for("dashboard.sign_in"), code=303)
    return render_template("dashboard/auth/reset_password.html", form=form, problem=None), \
        400 if request.method == "POST" else 200

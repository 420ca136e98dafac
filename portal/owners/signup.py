"""Owners who sign themselves up (when ``PORTAL_OPEN_SIGNUP`` allows it), their phone confirmed
by a six-digit code.

The code goes by e-mail for now; TODO(issue 17): send it by SMS to the phone once the SMS outbox
lands, which is what confirms the phone. Until the code is entered the account can sign in but
sees only the confirmation page. Codes are stored hashed, last 30 minutes, allow five tries, and a
new one can be asked for once a minute; sign-ups are limited per network address.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from ..core.extensions import db
from ..models import RateLimitHit, User, utcnow
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import normalise_phone
from . import audit, mailer
from .accounts import AccountError, create_owner

CODE_VALID = timedelta(minutes=30)
CODE_TRIES = 5
RESEND_AFTER = timedelta(minutes=1)
SIGNUPS_PER_ADDRESS = 5
SIGNUP_WINDOW = timedelta(hours=1)


class SignUpClosed(AccountError):
    """This portal does not take sign-ups (PORTAL_OPEN_SIGNUP is off)."""


def signup_open() -> bool:
    return bool(current_app.config["PORTAL_OPEN_SIGNUP"]) and mailer.mail_enabled()


def sign_up(email: str, password: str, phone: str, business_name: str, *, source_ip: str | None) -> User:
    """A new owner with an unconfirmed phone, and the code sent. Commits once the mail is out.

    Raises ``SignUpClosed``, ``AccountError`` (bad or taken email, short password, bad phone, too
    many sign-ups from this address) or ``mailer.MailNotSent`` (nothing is kept then).
    """
    if not signup_open():
        raise SignUpClosed("Sign-up is closed on this portal; ask the platform admin for an account.")
    now = utcnow()
    _count_signup(source_ip, now)
    try:
        normalised = normalise_phone(phone)
    except InvalidPhoneNumber as exc:
        raise AccountError("Enter a Kenyan mobile number, e.g. 0712 345 678.") from exc
    user = create_owner(email, password)
    user.phone, user.business_name = normalised, (business_name or "").strip()[:120] or None
    db.session.flush()
    code = _new_code(user, now)
    audit.record("owner.sign_up", actor=user, owner_id=user.id, detail=f"phone {normalised[:6]}…", source_ip=source_ip)
    try:
        _send_code(user, code)
    except mailer.MailNotSent:
        db.session.rollback()
        raise
    db.session.commit()
    return user


def _count_signup(source_ip: str | None, now: datetime) -> None:
    key = f"sign-up:{source_ip or 'unknown'}"
    recent = db.session.scalar(sa.select(sa.func.count()).select_from(RateLimitHit)
                               .where(RateLimitHit.key == key, RateLimitHit.created_at > now - SIGNUP_WINDOW)) or 0
    if recent >= SIGNUPS_PER_ADDRESS:
        raise AccountError("Too many sign-ups from this network; try again in an hour.")
    db.session.add(RateLimitHit(key=key[:120], created_at=now))
    db.session.commit()  # counted even when the sign-up then fails


def _new_code(user: User, now: datetime) -> str:
    code = f"{secrets.randbelow(1_000_000):06d}"
    user.confirm_code_hash = generate_password_hash(code)
    user.confirm_code_sent_at = now
    user.confirm_code_attempts = 0
    return code


def _send_code(user: User, code: str) -> None:
    mailer.send_mail(
        user.email,
        f"Your Wi-Fi portal code: {code}",
        f"Your confirmation code is {code}.\n\nType it on the portal's confirmation page to confirm your phone "
        f"{user.phone} and start using your account. It works for {int(CODE_VALID.total_seconds() // 60)} minutes.\n\n"
        "If you did not sign up, ignore this message.",
    )


def resend_code(user: User, *, source_ip: str | None, now: datetime | None = None) -> None:
    """A fresh code (the old one stops working). Raises AccountError when asked again too soon."""
    now = now or utcnow()
    if user.is_confirmed:
        raise AccountError("Your phone is already confirmed.")
    if user.confirm_code_sent_at and now - user.confirm_code_sent_at < RESEND_AFTER:
        raise AccountError("A code was sent less than a minute ago; check your e-mail, or ask again in a minute.")
    code = _new_code(user, now)
    audit.record("owner.confirm_code_sent", actor=user, owner_id=user.id, source_ip=source_ip)
    _send_code(user, code)
    db.session.commit()


def confirm_phone(user: User, code: str, *, source_ip: str | None, now: datetime | None = None) -> None:
    """Mark the phone confirmed when ``code`` is the latest one sent. Commits. Raises AccountError."""
    now = now or utcnow()
    if user.is_confirmed:
        return
    if user.confirm_code_hash is None or user.confirm_code_sent_at is None or now - user.confirm_code_sent_at > CODE_VALID:
        raise AccountError("This code has expired; ask for a new one.")
    if user.confirm_code_attempts >= CODE_TRIES:
        raise AccountError("Too many wrong codes; ask for a new one.")
    # Counted in SQL so two guesses at once both count.
    db.session.execute(sa.update(User).where(User.id == user.id)
                       .values(confirm_code_attempts=User.confirm_code_attempts + 1))
    db.session.refresh(user)
    if not check_password_hash(user.confirm_code_hash, "".join(ch for ch in code if ch.isdigit())):
        db.session.commit()
        raise AccountError("That is not the code we sent.")
    user.phone_confirmed_at = now
    user.confirm_code_hash = None
    audit.record("owner.phone_confirmed", actor=user, owner_id=user.id, source_ip=source_ip)
    db.session.commit()

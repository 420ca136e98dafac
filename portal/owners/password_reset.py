"""Password reset by e-mail: a signed link that works once, for an hour.

The token (itsdangerous, signed with SECRET_KEY) names the user and their session version;
setting the new password bumps that version, so the link cannot be used twice and every old
session ends. Asking never tells whether an account exists.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.security import generate_password_hash

from ..core.extensions import db
from ..models import RateLimitHit, User, utcnow
from . import audit, mailer
from .accounts import MIN_PASSWORD_LENGTH, AccountError, find_owner

LINK_VALID = timedelta(hours=1)
REQUESTS_PER_ADDRESS = 10
REQUEST_WINDOW = timedelta(hours=1)


class BadResetLink(AccountError):
    """Expired, already used, or not ours."""


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="owner-password-reset")


def request_reset(email: str, *, reset_url_for, source_ip: str | None) -> None:  # type: ignore[no-untyped-def]
    """E-mail a reset link to ``email`` if it is an account (and not locked by the admin).

    ``reset_url_for(token)`` builds the absolute link. Raises ``mailer.MailNotSent`` and
    AccountError (too many requests from this address); says nothing about unknown addresses.
    """
    now = utcnow()
    key = f"password-reset:{source_ip or 'unknown'}"
    recent = db.session.scalar(sa.select(sa.func.count()).select_from(RateLimitHit)
                               .where(RateLimitHit.key == key, RateLimitHit.created_at > now - REQUEST_WINDOW)) or 0
    if recent >= REQUESTS_PER_ADDRESS:
        raise AccountError("Too many reset requests from this network; try again in an hour.")
    db.session.add(RateLimitHit(key=key[:120], created_at=now))
    user = find_owner(email)
    if user is None or user.locked_by_admin_at is not None:
        audit.record("password_reset_unknown", actor=email.strip().lower()[:254] or "unknown", source_ip=source_ip)
        db.session.commit()
        return
    token = _signer().dumps({"id": user.id, "v": user.session_version})
    audit.record("password_reset_requested", actor=user, owner_id=user.id, source_ip=source_ip)
    db.session.commit()
    mailer.send_mail(
        user.email,
        "Reset your Wi-Fi portal password",
        f"Someone (we hope you) asked to reset the password of {user.email}.\n\n"
        f"Open this link within an hour to choose a new password:\n{reset_url_for(token)}\n\n"
        "If it was not you, ignore this message: your password stays as it is.",
    )


def user_for_token(token: str) -> User:
    """The account a reset link is for. Raises ``BadResetLink``."""
    try:
        data = _signer().loads(token, max_age=int(LINK_VALID.total_seconds()))
    except SignatureExpired as exc:
        raise BadResetLink("This link has expired; ask for a new one.") from exc
    except BadSignature as exc:
        raise BadResetLink("This link is not valid; ask for a new one.") from exc
    user = db.session.get(User, data.get("id")) if isinstance(data, dict) else None
    if user is None or user.session_version != data.get("v") or user.locked_by_admin_at is not None:
        raise BadResetLink("This link was already used or is no longer valid; ask for a new one.")
    return user


def reset_password(token: str, new_password: str, *, source_ip: str | None) -> User:
    """Set the new password, end every session, lift a failed-sign-in lockout. Commits."""
    user = user_for_token(token)
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The new password must have at least {MIN_PASSWORD_LENGTH} characters.")
    won = db.session.execute(
        sa.update(User).where(User.id == user.id, User.session_version == user.session_version)
        .values(password_hash=generate_password_hash(new_password), session_version=User.session_version + 1,
                failed_logins=0, locked_until=None)
    ).rowcount == 1
    if not won:  # the same link opened twice, submitted at once
        db.session.rollback()
        raise BadResetLink("This link was already used; ask for a new one.")
    audit.record("password_reset", actor=user, owner_id=user.id, source_ip=source_ip)
    db.session.commit()
    db.session.refresh(user)
    return user

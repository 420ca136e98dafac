"""Owner accounts: creation, password hashing, sign-in with lockout, password change, the session's user loader."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from ..core.extensions import db, login_manager
from ..models import RateLimitHit, User, utcnow
from . import audit
from .scope import NAIROBI

MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    pass


def create_owner(email: str, password: str, *, admin: bool = False) -> User:
    """A new owner (or admin); the caller commits. Passwords are hashed with scrypt."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise AccountError("Enter a valid email address.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if db.session.scalar(sa.select(User.id).where(User.email == email)):
        raise AccountError(f"An account for {email} already exists.")
    user = User(email=email, password_hash=generate_password_hash(password), role="admin" if admin else "owner")
    db.session.add(user)
    return user


def find_owner(email: str) -> User | None:
    return db.session.scalars(sa.select(User).where(User.email == email.strip().lower())).first()


def password_matches(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    # The id carries the session version: after a password change, old sessions stop loading.
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version) or user.locked_by_admin_at is not None:
        return None
    return user


# --- signing in ------------------------------------------------------------------------------

MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)
# Per source address, across every email: slows guessing at many accounts from one place.
MAX_FAILURES_PER_ADDRESS = 30
ADDRESS_WINDOW = timedelta(minutes=15)
# Checked against when the email is unknown, so a wrong email costs as much time as a wrong password.
_DUMMY_HASH = generate_password_hash("not a real password, only for timing")


class SignInRefused(AccountError):
    """Wrong email or password; the message does not say which."""


class SignInLocked(SignInRefused):
    """Too many failures: refused until ``until`` even with the right password."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


def _nairobi_clock(moment: datetime) -> str:
    return moment.astimezone(NAIROBI).strftime("%H:%M")


def sign_in(email: str, password: str, *, source_ip: str | None, now: datetime | None = None) -> User:
    """Check the credentials, count failures, lock after five, audit every attempt.

    Commits (a failure must be counted even though the caller gets an exception). Raises
    SignInLocked while the account or the source address is locked, SignInRefused otherwise.
    """
    now = now or utcnow()
    address_key = f"sign-in:{source_ip or 'unknown'}"
    if _recent_failures(address_key, now) >= MAX_FAILURES_PER_ADDRESS:
        until = now + ADDRESS_WINDOW
        raise SignInLocked(
            f"Too many failed sign-ins from this network. Try again at {_nairobi_clock(until)} (Nairobi time).", until
        )
    user = find_owner(email)
    if user is not None and user.locked_until is not None and user.locked_until > now:
        audit.record("sign_in_locked", actor=user, owner_id=user.id, source_ip=source_ip)
        db.session.commit()
        raise SignInLocked(_locked_message(user.locked_until), user.locked_until)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
    if user is None or not password_matches(user, password):
        _count_failure(user, email, address_key, source_ip, now)
        raise SignInRefused("Wrong email or password.")
    if user.locked_by_admin_at is not None:  # told only to someone who knows the password
        audit.record("sign_in_locked_by_admin", actor=user, owner_id=user.id, source_ip=source_ip)
        db.session.commit()
        raise SignInRefused("This account is locked by the platform admin. Contact them to open it again.")
    user.failed_logins = 0
    user.locked_until = None
    audit.record("sign_in", actor=user, owner_id=user.id, source_ip=source_ip)
    db.session.commit()
    return user


def _locked_message(until: datetime) -> str:
    return f"Too many failed sign-ins: this account is locked. Try again at {_nairobi_clock(until)} (Nairobi time)."


def _recent_failures(key: str, now: datetime) -> int:
    return (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(RateLimitHit)
            .where(RateLimitHit.key == key, RateLimitHit.created_at > now - ADDRESS_WINDOW)
        )
        or 0
    )


def _count_failure(user: User | None, email: str, address_key: str, source_ip: str | None, now: datetime) -> None:
    db.session.add(RateLimitHit(key=address_key[:120], created_at=now))
    if user is None:
        audit.record(
            "sign_in_failed",
            actor=email.strip().lower()[:254] or "unknown",
            detail="no such account",
            source_ip=source_ip,
        )
        db.session.commit()
        return
    # Counted in SQL so two concurrent wrong guesses both count.
    db.session.execute(sa.update(User).where(User.id == user.id).values(failed_logins=User.failed_logins + 1))
    db.session.refresh(user)
    detail = f"failure {user.failed_logins} of {MAX_FAILED_SIGN_INS}"
    if user.failed_logins >= MAX_FAILED_SIGN_INS:
        user.locked_until = now + LOCKOUT
        user.failed_logins = 0
        detail += f"; locked until {user.locked_until.isoformat(timespec='minutes')}"
    audit.record("sign_in_failed", actor=user, owner_id=user.id, detail=detail, source_ip=source_ip)
    db.session.commit()
    if user.locked_until is not None and user.locked_until > now:
        raise SignInLocked(_locked_message(user.locked_until), user.locked_until)


def change_password(user: User, current_password: str, new_password: str, *, source_ip: str | None) -> None:
    """New password hash and a new session version, so every other session of this user ends.

    The caller commits and signs the current session in again (its id carries the old version).
    """
    if not password_matches(user, current_password):
        raise AccountError("The current password is wrong.")
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The new password must have at least {MIN_PASSWORD_LENGTH} characters.")
    user.password_hash = generate_password_hash(new_password)
    user.session_version = (user.session_version or 1) + 1
    audit.record("password_changed", actor=user, owner_id=user.id, source_ip=source_ip)


def update_print_details(user: User, *, business_name: str, support_phone: str, source_ip: str | None) -> None:
    """What printed vouchers carry for this owner: the business name and a support phone. Caller commits."""
    user.business_name = business_name.strip()[:120] or None
    user.support_phone = support_phone.strip()[:20] or None
    audit.record("account.print_details", actor=user, owner_id=user.id,
                 detail=f"business {user.business_name!r}, support phone {user.support_phone!r}", source_ip=source_ip)

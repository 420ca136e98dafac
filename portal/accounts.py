"""Owner accounts: creation, password hashing, the session's user loader."""

from __future__ import annotations

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db, login_manager
from .models import User

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
    return user if user and user.session_version == int(version) else None

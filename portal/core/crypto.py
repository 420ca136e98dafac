"""Secrets at rest: MultiFernet over the keys in PORTAL_ENCRYPTION_KEYS (newest first)."""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app


class SecretUnreadable(RuntimeError):
    """A stored secret was encrypted under a key that is no longer configured."""


def _fernet() -> MultiFernet:
    fernet = current_app.extensions.get("portal_fernet")
    if fernet is None:
        fernet = MultiFernet([Fernet(k) for k in current_app.config["ENCRYPTION_KEYS"]])
        current_app.extensions["portal_fernet"] = fernet
    return fernet


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("a stored secret cannot be decrypted with PORTAL_ENCRYPTION_KEYS") from exc


def rotate_secret(token: str) -> str:
    """Re-encrypt under the newest key (old keys keep decrypting until everything is rotated)."""
    return _fernet().rotate(token.encode()).decode()


def fingerprint(value: str) -> str:
    """Stable lookup hash for a high-entropy secret (webhook path tokens); not for passwords."""
    return hashlib.sha256(value.encode()).hexdigest()

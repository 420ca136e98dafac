"""WireGuard keys: X25519 from `cryptography`, written as WireGuard writes them (base64 of 32 bytes)."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

KEY_BYTES = 32


class BadKey(ValueError):
    """Not a WireGuard key (base64 of exactly 32 bytes)."""


def new_keypair() -> tuple[str, str]:
    """(private, public), both base64; the same public key `wg pubkey` derives."""
    key = X25519PrivateKey.generate()
    raw = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    return base64.b64encode(raw).decode(), public_key_of(base64.b64encode(raw).decode())


def public_key_of(private_key: str) -> str:
    key = X25519PrivateKey.from_private_bytes(decode_key(private_key))
    return base64.b64encode(key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)).decode()


def decode_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadKey("a WireGuard key is base64") from exc
    if len(raw) != KEY_BYTES:
        raise BadKey("a WireGuard key is 32 bytes")
    return raw


def is_key(value: str) -> bool:
    try:
        decode_key(value)
    except BadKey:
        return False
    return True

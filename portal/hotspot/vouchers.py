"""Voucher codes and voucher state changes."""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa

# No 0/O, 1/I/L: codes are read off phone screens and printed sheets, and typed back in.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10  # 31**10 ≈ 8.2e14 (49.5 bits); at most 12 (STK AccountReference limit)


def new_voucher_code() -> str:
    """A random code; always holds a letter, because RouterOS clients turn all-digit names into ints."""
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if not code.isdigit():
            return code


def normalise_code(raw: object) -> str:
    """What a customer typed → the canonical form (spaces and dashes dropped, uppercase).

    Anything that is not text (a webhook may send a number, null or true) is no code at all.
    """
    if not isinstance(raw, str):
        return ""
    return "".join(ch for ch in raw.upper() if ch.isascii() and ch.isalnum())[:20]


def awaiting_payment(columns: Any) -> sa.ColumnElement[bool]:
    """A voucher still waiting for its money: ``pending_payment``, or expired with its unanswered
    prompt but never paid. Money that arrives late (a late callback, a C2B payment with the code,
    an owner's assignment) still pays it. ``columns`` is the table's ``.c`` or the model."""
    return sa.or_(
        columns.status == "pending_payment",
        sa.and_(columns.status == "expired", columns.paid_at.is_(None)),
    )


def is_awaiting_payment(voucher: Any) -> bool:
    return voucher.status == "pending_payment" or (voucher.status == "expired" and voucher.paid_at is None)

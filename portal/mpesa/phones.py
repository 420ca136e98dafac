"""Kenyan mobile numbers: what customers type → the 12-digit MSISDN Daraja wants."""

from __future__ import annotations

import re

from .errors import InvalidPhoneNumber

# Separators people type inside a number; anything else (letters, other symbols) is refused.
_SEPARATORS = re.compile(r"[\s\-.()]")
_NATIONAL = re.compile(r"[17][0-9]{8}")  # 7XXXXXXXX or 1XXXXXXXX after the country code
_MSISDN = re.compile(r"254[17][0-9]{8}")


def normalise_phone(raw: str) -> str:
    """Return ``2547XXXXXXXX``/``2541XXXXXXXX`` or raise ``InvalidPhoneNumber``.

    Accepts 07…/01…, 7…/1…, 254…, +254… and +254 0… with spaces, dashes, dots or brackets.
    Operator prefixes are deliberately not checked (numbers get ported); Daraja refuses
    numbers that are not on M-Pesa.
    """
    if not isinstance(raw, str):
        raise InvalidPhoneNumber(f"phone must be text, got {type(raw).__name__}")
    digits = _SEPARATORS.sub("", raw.strip())
    if digits.startswith("+"):
        if not digits.startswith("+254"):
            raise InvalidPhoneNumber("only Kenyan (+254) numbers are accepted")
        digits = digits[1:]
    national = _national_part(digits)
    if national is None or not _NATIONAL.fullmatch(national):
        raise InvalidPhoneNumber("not a Kenyan mobile number")
    return "254" + national


def _national_part(digits: str) -> str | None:
    if not digits.isascii() or not digits.isdigit():
        return None
    if len(digits) == 13 and digits.startswith("2540"):  # "+254 0712 …": a stray trunk zero
        return digits[4:]
    if len(digits) == 12 and digits.startswith("254"):
        return digits[3:]
    if len(digits) == 10 and digits.startswith("0"):
        return digits[1:]
    if len(digits) == 9:
        return digits
    return None


def is_msisdn(value: str) -> bool:
    """True for an already-normalised ``254[17]XXXXXXXX``."""
    return isinstance(value, str) and _MSISDN.fullmatch(value) is not None


def mask_phone(msisdn: str) -> str:
    """``254712345678`` → ``0712 *** 678``: enough to recognise, not enough to call. Never raises."""
    text = msisdn if isinstance(msisdn, str) else str(msisdn)
    try:
        canonical = normalise_phone(text)
    except InvalidPhoneNumber:
        digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
        return f"*** {digits[-3:]}" if len(digits) >= 6 else "***"
    return f"0{canonical[3:6]} *** {canonical[-3:]}"

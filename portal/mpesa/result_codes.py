"""Daraja result codes → our payment status and a reason key; why a push was refused.

Facts only: the captive blueprint turns a code or a refusal reason into the customer's words.
Match on the code only: Daraja's ResultDesc wording and punctuation vary.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import (
    DarajaAuthFailed,
    DarajaCircuitOpen,
    DarajaError,
    DarajaUnavailable,
)


@dataclass(frozen=True)
class ResultMeaning:
    code: str
    status: str  # "paid" | "failed" | "pending"
    reason: str  # short key for pages and metrics, e.g. "cancelled", "config", "unknown"
    can_retry: bool  # may the customer start a new push straight away (or after the wait the code implies)


def _meaning(code: str, status: str, reason: str, can_retry: bool) -> ResultMeaning:
    return ResultMeaning(code, status, reason, can_retry)


_MEANINGS: dict[str, ResultMeaning] = {
    m.code: m
    for m in (
        _meaning("0", "paid", "paid", False),
        _meaning("1", "failed", "insufficient_funds", True),
        _meaning("2", "failed", "limit", False),  # below M-Pesa's minimum
        _meaning("3", "failed", "limit", False),  # above the customer's per-payment limit
        _meaning("4", "failed", "limit", True),  # daily limit reached
        _meaning("8", "failed", "config", False),  # the paybill cannot receive more
        _meaning("17", "failed", "limit", True),  # a repeat of the same amount within 2 minutes
        _meaning("1001", "failed", "busy", True),  # another prompt is open on the phone
        _meaning("1019", "failed", "expired", True),
        _meaning("1025", "failed", "not_delivered", True),
        _meaning("9999", "failed", "not_delivered", True),
        _meaning("1032", "failed", "cancelled", True),
        _meaning("1037", "failed", "timeout", True),
        _meaning("2001", "failed", "wrong_pin", True),
        _meaning("2028", "failed", "config", False),
        _meaning("SFC_IC0003", "failed", "config", False),
        _meaning("8006", "failed", "wrong_pin", False),  # PIN locked: only Safaricom can unlock it
        # Query answers meaning "ask again later"; never a failure.
        _meaning("4999", "pending", "pending", False),
        _meaning("500.001.1001", "pending", "pending", False),
    )
}


def meaning_of(result_code: int | str | None) -> ResultMeaning:
    """What a callback/query ResultCode means; unknown codes are a retryable failure, never "paid"."""
    code = _code_text(result_code)
    known = _MEANINGS.get(code)
    if known is not None:
        return known
    return ResultMeaning(code, "failed", "unknown", True)


def known_result_codes() -> tuple[str, ...]:
    return tuple(_MEANINGS)


def _code_text(result_code: int | str | float | None) -> str:
    if result_code is None or isinstance(result_code, bool):
        return ""
    if isinstance(result_code, float) and result_code.is_integer():
        return str(int(result_code))
    return str(result_code).strip()


# --- the push itself was refused or could not be sent -------------------------------------------

# Why a push was refused, as ``refusal_reason`` names it; the captive pages word each one.
REFUSAL_REASONS = ("circuit_open", "unreachable", "outcome_unknown", "config", "phone", "locked", "busy", "amount", "other")

# Daraja errorMessage fragments (lower case) that only the hotspot owner or we can fix.
_CONFIG_MARKERS = (
    "wrong credentials",
    "merchant does not exist",
    "invalid access token",
    "businessshortcode",
    "callbackurl",
    "apiproduct",
    "timestamp",
    "transactiontype",
    "partyb",
    "accountreference",
    "remarks",
    "invalid request payload",
    "authentication",
    "grant type",
)


def refusal_reason(exc: DarajaError) -> str:
    """A short key for why a push was refused; also accepts an error rebuilt from stored fields."""
    # error_code may hold our class name when a caller stored type(exc).__name__ for a
    # network failure and later rebuilds a DarajaRejected from the stored columns.
    code = exc.error_code or ""
    message = (exc.error_message or str(exc)).lower()
    if isinstance(exc, DarajaCircuitOpen) or code == "DarajaCircuitOpen":
        return "circuit_open"
    if isinstance(exc, DarajaAuthFailed) or code == "DarajaAuthFailed":
        return "config"
    if isinstance(exc, DarajaUnavailable) or code == "DarajaUnavailable":
        return "outcome_unknown" if getattr(exc, "outcome_unknown", False) else "unreachable"
    return _rejected_reason(code, message)


def _rejected_reason(code: str, message: str) -> str:
    if "lock subscriber" in message:
        return "locked"
    if "phonenumber" in message or "partya" in message:
        return "phone"
    if "invalid amount" in message:
        return "amount"
    if code.startswith(("500.003.02", "500.003.03")) or any(w in message for w in ("busy", "spike", "quota")):
        return "busy"
    if code.startswith(("404.", "400.008")) or any(marker in message for marker in _CONFIG_MARKERS):
        return "config"
    return "other"

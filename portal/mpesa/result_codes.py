"""Daraja result codes → our payment status and the customer's words (English and Kiswahili).

Every text says what happened and what to do next, in words a customer on a phone understands.
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
    text_en: str
    text_sw: str
    can_retry: bool  # may the customer start a new push straight away (or after the wait the text names)


def _meaning(code: str, status: str, reason: str, text_en: str, text_sw: str, can_retry: bool) -> ResultMeaning:
    return ResultMeaning(code, status, reason, text_en, text_sw, can_retry)


_OWNER_SETUP_EN = (
    "This hotspot's M-Pesa account is not set up correctly. No money was taken. Please tell the hotspot owner."
)
_OWNER_SETUP_SW = (
    "Akaunti ya M-Pesa ya hotspot hii haijawekwa sawa. Hakuna pesa iliyokatwa. Tafadhali mjulishe mwenye hotspot."
)
_NOT_DELIVERED_EN = "M-Pesa could not send the payment request to your phone. Try again in a minute."
_NOT_DELIVERED_SW = "M-Pesa haikuweza kutuma ombi la malipo kwenye simu yako. Jaribu tena baada ya dakika moja."
_PENDING_EN = "Waiting for M-Pesa to confirm your payment. Check your phone and enter your M-Pesa PIN."
_PENDING_SW = "Tunasubiri M-Pesa kuthibitisha malipo yako. Angalia simu yako na uweke PIN yako ya M-Pesa."

_MEANINGS: dict[str, ResultMeaning] = {
    m.code: m
    for m in (
        _meaning(
            "0",
            "paid",
            "paid",
            "Payment received. Your internet access is being switched on.",
            "Malipo yamepokelewa. Huduma yako ya intaneti inawashwa sasa.",
            False,
        ),
        _meaning(
            "1",
            "failed",
            "insufficient_funds",
            "Your M-Pesa balance is too low for this package. Top up or choose a cheaper package, then try again.",
            "Salio lako la M-Pesa halitoshi kwa kifurushi hiki. Ongeza salio au chagua kifurushi cha bei nafuu, "
            "kisha jaribu tena.",
            True,
        ),
        _meaning(
            "2",
            "failed",
            "limit",
            "M-Pesa did not accept this amount because it is below the minimum. Choose another package.",
            "M-Pesa haikukubali kiasi hiki kwa sababu ni chini ya kiwango cha chini. Chagua kifurushi kingine.",
            False,
        ),
        _meaning(
            "3",
            "failed",
            "limit",
            "This amount is above your M-Pesa limit for one payment. Choose a smaller package.",
            "Kiasi hiki kinazidi kikomo chako cha M-Pesa kwa malipo moja. Chagua kifurushi kidogo.",
            False,
        ),
        _meaning(
            "4",
            "failed",
            "limit",
            "You have reached your M-Pesa daily limit. Try again tomorrow or pay with another number.",
            "Umefikia kikomo chako cha siku cha M-Pesa. Jaribu tena kesho au lipa kwa namba nyingine.",
            True,
        ),
        _meaning(
            "8",
            "failed",
            "config",
            "This hotspot cannot receive more M-Pesa payments right now. No money was taken. "
            "Please tell the hotspot owner.",
            "Hotspot hii haiwezi kupokea malipo zaidi ya M-Pesa kwa sasa. Hakuna pesa iliyokatwa. "
            "Tafadhali mjulishe mwenye hotspot.",
            False,
        ),
        _meaning(
            "17",
            "failed",
            "limit",
            "M-Pesa blocked a repeat payment of the same amount. Wait 2 minutes, then try again.",
            "M-Pesa imezuia malipo ya kiasi kilekile yaliyorudiwa. Subiri dakika 2, kisha jaribu tena.",
            True,
        ),
        _meaning(
            "1001",
            "failed",
            "busy",
            "Another M-Pesa request is open on your phone. Close it, wait a minute, then try again.",
            "Kuna ombi lingine la M-Pesa kwenye simu yako. Lifunge, subiri dakika moja, kisha jaribu tena.",
            True,
        ),
        _meaning(
            "1019",
            "failed",
            "expired",
            "The payment request expired before it was completed. Try again and enter your PIN when asked.",
            "Ombi la malipo limepitwa na muda kabla ya kukamilika. Jaribu tena na uweke PIN yako unapoombwa.",
            True,
        ),
        _meaning("1025", "failed", "not_delivered", _NOT_DELIVERED_EN, _NOT_DELIVERED_SW, True),
        _meaning("9999", "failed", "not_delivered", _NOT_DELIVERED_EN, _NOT_DELIVERED_SW, True),
        _meaning(
            "1032",
            "failed",
            "cancelled",
            "You cancelled the payment. No money was taken. Try again when you are ready.",
            "Umeghairi malipo. Hakuna pesa iliyokatwa. Jaribu tena ukiwa tayari.",
            True,
        ),
        _meaning(
            "1037",
            "failed",
            "timeout",
            "Your phone did not answer the M-Pesa request. Keep your phone on and unlocked, then try again.",
            "Simu yako haikujibu ombi la M-Pesa. Iwashe na uifungue, kisha jaribu tena.",
            True,
        ),
        _meaning(
            "2001",
            "failed",
            "wrong_pin",
            "The M-Pesa PIN was wrong. No money was taken. Try again with the correct PIN.",
            "PIN ya M-Pesa haikuwa sahihi. Hakuna pesa iliyokatwa. Jaribu tena kwa PIN sahihi.",
            True,
        ),
        _meaning("2028", "failed", "config", _OWNER_SETUP_EN, _OWNER_SETUP_SW, False),
        _meaning("SFC_IC0003", "failed", "config", _OWNER_SETUP_EN, _OWNER_SETUP_SW, False),
        _meaning(
            "8006",
            "failed",
            "wrong_pin",
            "Your M-Pesa PIN is locked. Call Safaricom on 100 to unlock it, then try again.",
            "PIN yako ya M-Pesa imefungwa. Piga Safaricom kwa 100 ili kuifungua, kisha jaribu tena.",
            False,
        ),
        # Query answers meaning "ask again later"; never a failure.
        _meaning("4999", "pending", "pending", _PENDING_EN, _PENDING_SW, False),
        _meaning("500.001.1001", "pending", "pending", _PENDING_EN, _PENDING_SW, False),
    )
}

_UNKNOWN_EN = (
    "M-Pesa could not complete the payment. Try again in a minute. "
    "If money left your account, keep the M-Pesa SMS and show it to the hotspot owner."
)
_UNKNOWN_SW = (
    "M-Pesa haikuweza kukamilisha malipo. Jaribu tena baada ya dakika moja. "
    "Kama pesa imekatwa, hifadhi SMS ya M-Pesa na umwonyeshe mwenye hotspot."
)


def meaning_of(result_code: int | str | None) -> ResultMeaning:
    """What a callback/query ResultCode means; unknown codes are a retryable failure, never "paid"."""
    code = _code_text(result_code)
    known = _MEANINGS.get(code)
    if known is not None:
        return known
    return ResultMeaning(code, "failed", "unknown", _UNKNOWN_EN, _UNKNOWN_SW, True)


def known_result_codes() -> tuple[str, ...]:
    return tuple(_MEANINGS)


def _code_text(result_code: int | str | float | None) -> str:
    if result_code is None or isinstance(result_code, bool):
        return ""
    if isinstance(result_code, float) and result_code.is_integer():
        return str(int(result_code))
    return str(result_code).strip()


# --- the push itself was refused or could not be sent -------------------------------------------

_REFUSALS: dict[str, tuple[str, str]] = {
    "circuit_open": (
        "M-Pesa is not responding right now. Try again in a minute.",
        "M-Pesa haijibu kwa sasa. Jaribu tena baada ya dakika moja.",
    ),
    "unreachable": (
        "We could not reach M-Pesa. Try again in a minute.",
        "Hatukuweza kufikia M-Pesa. Jaribu tena baada ya dakika moja.",
    ),
    "outcome_unknown": (
        "M-Pesa is slow to answer. If a payment request appears on your phone, enter your PIN; "
        "otherwise wait a minute, then try again.",
        "M-Pesa inachelewa kujibu. Ombi la malipo likitokea kwenye simu yako, weka PIN yako; "
        "la sivyo subiri dakika moja, kisha jaribu tena.",
    ),
    "config": (
        "This hotspot cannot take M-Pesa payments right now. Please tell the hotspot owner.",
        "Hotspot hii haiwezi kupokea malipo ya M-Pesa kwa sasa. Tafadhali mjulishe mwenye hotspot.",
    ),
    "phone": (
        "M-Pesa did not accept this number. Enter a Safaricom number like 0712 345 678.",
        "M-Pesa haikukubali namba hii. Weka namba ya Safaricom kama 0712 345 678.",
    ),
    "locked": (
        "You already have an M-Pesa request open on your phone. Wait a minute, then try again.",
        "Tayari una ombi la M-Pesa lililo wazi kwenye simu yako. Subiri dakika moja, kisha jaribu tena.",
    ),
    "busy": (
        "M-Pesa is busy right now. Try again in a minute.",
        "M-Pesa ina shughuli nyingi kwa sasa. Jaribu tena baada ya dakika moja.",
    ),
    "amount": (
        "M-Pesa did not accept this amount. Choose another package.",
        "M-Pesa haikukubali kiasi hiki. Chagua kifurushi kingine.",
    ),
    "other": (
        "M-Pesa could not start the payment. Try again in a minute.",
        "M-Pesa haikuweza kuanzisha malipo. Jaribu tena baada ya dakika moja.",
    ),
}

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


def rejection_message(exc: DarajaError) -> tuple[str, str]:
    """Customer words (English, Kiswahili) for a push that Daraja refused or that could not be sent."""
    return _REFUSALS[refusal_reason(exc)]


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

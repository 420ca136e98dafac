"""The only code that talks to Safaricom's Daraja (M-Pesa) API. No Flask here: callers hand in
credentials (``DarajaAccount``) and a ``TokenStore``."""

from .breaker import CircuitBreaker
from .client import (
    CachedToken,
    DarajaAccount,
    DarajaClient,
    MemoryTokenStore,
    StkPushAccepted,
    StkQueryAnswer,
    TokenStore,
)
from .errors import (
    DarajaAuthFailed,
    DarajaCircuitOpen,
    DarajaError,
    DarajaRejected,
    DarajaUnavailable,
    InvalidPhoneNumber,
)
from .phones import mask_phone, normalise_phone
from .result_codes import ResultMeaning, meaning_of, refusal_reason

__all__ = [
    "CachedToken",
    "CircuitBreaker",
    "DarajaAccount",
    "DarajaAuthFailed",
    "DarajaCircuitOpen",
    "DarajaClient",
    "DarajaError",
    "DarajaRejected",
    "DarajaUnavailable",
    "InvalidPhoneNumber",
    "MemoryTokenStore",
    "ResultMeaning",
    "StkPushAccepted",
    "StkQueryAnswer",
    "TokenStore",
    "mask_phone",
    "meaning_of",
    "normalise_phone",
    "refusal_reason",
]

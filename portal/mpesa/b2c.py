"""B2C (BusinessPayment, v3) and Transaction Status: money out of a shortcode to a phone.

Notes: /work/shared/reference/daraja-b2c.md. The rules that keep money safe:

* ``OriginatorConversationID`` is the caller's idempotency key. A B2C request is never repeated by
  this module (``may_repeat=False``), except once after an invalid-token refusal (it proves the
  request was not taken). Daraja refuses a seen ID with ``500.002.1001`` (``B2CDuplicate``): the
  first one is in, ask Transaction Status.
* A timeout, a dropped connection or an unexplained 5xx is ``DarajaUnavailable(outcome_unknown=True)``:
  not a failure. The caller keeps the transfer "sent" and asks Transaction Status.
* ``DarajaRejected`` means Daraja refused the request: nothing was sent.
* A Result callback with ResultCode 0 is paid; any other code is a definitive failure (a retry needs
  a new ID). Transaction Status moves no money, so it is repeated freely.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .client import DarajaAccount, DarajaClient, TokenStore, _Answer, _error_from, _text_or_none
from .errors import DarajaError, DarajaRejected, DarajaUnavailable
from .phones import mask_phone, normalise_phone

log = logging.getLogger("portal.mpesa")

B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
TRANSACTION_STATUS_PATH = "/mpesa/transactionstatus/v1/query"
DUPLICATE_ID_CODE = "500.002.1001"
# Daraja refused before doing anything: spike arrest and quota (back off, the same ID may be resent).
REFUSED_5XX_CODES = frozenset({"500.003.02", "500.003.03"})
MIN_AMOUNT, MAX_AMOUNT = 10, 250_000


class B2CDuplicate(DarajaRejected):
    """Daraja already has a request with this OriginatorConversationID: never resend, query it."""


class CertificateError(ValueError):
    """The M-Pesa certificate file is missing or is not a PEM/DER X.509 certificate."""


def security_credential(password: str, cert_bytes: bytes) -> str:
    """The initiator password RSA-encrypted (PKCS#1 v1.5, not OAEP) with the certificate's public
    key, base64: 344 characters for a 2048-bit key, different every time (random padding)."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in cert_bytes:
            certificate = x509.load_pem_x509_certificate(cert_bytes)
        else:
            certificate = x509.load_der_x509_certificate(cert_bytes)
    except ValueError as exc:
        raise CertificateError("not an X.509 certificate (PEM or DER); Safaricom's portal serves it") from exc
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateError("the certificate's key is not RSA")
    return base64.b64encode(key.encrypt(password.encode(), padding.PKCS1v15())).decode("ascii")


@dataclass(frozen=True)
class B2CInitiator:
    """The API operator of a B2C shortcode. Secrets stay out of ``repr``."""

    shortcode: str
    name: str = field(repr=False)
    security_credential: str = field(repr=False)


@dataclass(frozen=True)
class B2CAccepted:
    """Daraja queued the request (not paid: the Result callback says that)."""

    conversation_id: str
    originator_conversation_id: str
    description: str


def b2c_payment(
    client: DarajaClient,
    account: DarajaAccount,
    store: TokenStore,
    initiator: B2CInitiator,
    *,
    originator_conversation_id: str,
    phone: str,
    amount: int,
    remarks: str,
    result_url: str,
    timeout_url: str,
    occasion: str = "",
) -> B2CAccepted:
    """One BusinessPayment. Raises ``B2CDuplicate``, ``DarajaRejected`` (not sent),
    ``DarajaUnavailable`` (``outcome_unknown``: may be in; query, never resend with a new ID)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise ValueError(f"a B2C amount is whole shillings {MIN_AMOUNT}..{MAX_AMOUNT}, not {amount!r}")
    msisdn = normalise_phone(phone)
    body = {
        "OriginatorConversationID": originator_conversation_id,
        "InitiatorName": initiator.name,
        "SecurityCredential": initiator.security_credential,
        "CommandID": "BusinessPayment",
        "Amount": amount,
        "PartyA": initiator.shortcode,
        "PartyB": msisdn,
        "Remarks": _remarks(remarks),
        "QueueTimeOutURL": timeout_url,
        "ResultURL": result_url,
        "Occassion": (occasion or remarks)[:100],  # sic: Daraja's spelling
    }
    context = f"id={originator_conversation_id} shortcode={initiator.shortcode} phone={mask_phone(msisdn)} amount={amount}"
    try:
        answer = client._authorized_post(account, store, B2C_PATH, body, may_repeat=False)
        accepted = _accepted_b2c(answer, originator_conversation_id)
    except DarajaError as exc:
        log.warning("b2c payment not accepted %s: %s %s", context, type(exc).__name__, exc)
        raise
    log.info("b2c payment accepted %s conversation=%s", context, accepted.conversation_id)
    return accepted


def transaction_status(
    client: DarajaClient,
    account: DarajaAccount,
    store: TokenStore,
    initiator: B2CInitiator,
    *,
    originator_conversation_id: str | None = None,
    transaction_id: str | None = None,
    result_url: str,
    timeout_url: str,
    remarks: str = "status of a payment",
) -> B2CAccepted:
    """Ask what became of a B2C request (by our ID, or its receipt). The answer comes to
    ``result_url``; the return value carries the *query's* ConversationID. Safe to repeat."""
    if not (originator_conversation_id or transaction_id):
        raise ValueError("give the OriginatorConversationID or the TransactionID")
    body = {
        "Initiator": initiator.name,
        "SecurityCredential": initiator.security_credential,
        "CommandID": "TransactionStatusQuery",
        "PartyA": initiator.shortcode,
        "IdentifierType": "4",
        "ResultURL": result_url,
        "QueueTimeOutURL": timeout_url,
        "Remarks": _remarks(remarks),
        "Occasion": (originator_conversation_id or transaction_id or "")[:100],
    }
    if transaction_id:
        body["TransactionID"] = transaction_id
    if originator_conversation_id:
        body["OriginalConversationID"] = originator_conversation_id
    answer = client._authorized_post(account, store, TRANSACTION_STATUS_PATH, body, may_repeat=True)
    return _accepted_b2c(answer, "", status_query=True)


def _remarks(text: str) -> str:
    cleaned = " ".join((text or "").split())[:100]
    return cleaned if len(cleaned) >= 2 else "payment"


def _accepted_b2c(answer: _Answer, originator_id: str, *, status_query: bool = False) -> B2CAccepted:
    body = answer.body or {}
    code = str(body.get("errorCode") or "")
    if code == DUPLICATE_ID_CODE and not status_query:
        raise B2CDuplicate(f"{code} {body.get('errorMessage', '')}".strip(), error_code=code,
                           error_message=str(body.get("errorMessage", "")), http_status=answer.status)
    if code and answer.status >= 500 and code not in REFUSED_5XX_CODES:
        # e.g. 500.003.1001: Daraja failed somewhere inside; the request may be in.
        raise DarajaUnavailable(f"{code} {body.get('errorMessage', '')}".strip(), outcome_unknown=not status_query,
                                error_code=code, http_status=answer.status)
    if code or answer.status >= 400:
        raise _error_from(answer, TRANSACTION_STATUS_PATH if status_query else B2C_PATH)
    response_code = _text_or_none(body.get("ResponseCode"))
    conversation_id = _text_or_none(body.get("ConversationID"))
    if response_code not in (None, "0"):
        message = str(body.get("ResponseDescription", ""))
        raise DarajaRejected(f"{response_code} {message}", error_code=response_code, error_message=message)
    if answer.status != 200 or conversation_id is None:
        raise DarajaUnavailable("B2C answer without a ConversationID", outcome_unknown=not status_query,
                                http_status=answer.status)
    return B2CAccepted(conversation_id, _text_or_none(body.get("OriginatorConversationID")) or originator_id,
                       str(body.get("ResponseDescription", "")))


# --- callbacks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class B2CResult:
    """A Result callback (B2C or Transaction Status), read loosely: keys vary between samples."""

    result_code: str
    result_desc: str
    originator_conversation_id: str | None
    conversation_id: str | None
    transaction_id: str | None
    parameters: dict[str, Any]

    @property
    def is_success(self) -> bool:
        return self.result_code == "0"

    def parameter(self, *names: str) -> Any:
        """A ResultParameter by any of its spellings ("ReceiptNo", "Receipt No", "receiptno")."""
        wanted = {_loose(n) for n in names}
        for key, value in self.parameters.items():
            if _loose(key) in wanted:
                return value
        return None


class B2CPayloadError(ValueError):
    """Not the shape of a Result callback."""


def parse_result(payload: Any) -> B2CResult:
    try:
        result = payload["Result"]
        code = result["ResultCode"]
    except (KeyError, TypeError) as exc:
        raise B2CPayloadError("not a Result callback: Result.ResultCode missing") from exc
    if isinstance(code, bool) or not isinstance(code, (int, str)) or len(str(code)) > 32:
        raise B2CPayloadError("ResultCode is not a code")
    params: dict[str, Any] = {}
    raw = (result.get("ResultParameters") or {}) if isinstance(result.get("ResultParameters"), dict) else {}
    items = raw.get("ResultParameter")
    for item in items if isinstance(items, list) else [items] if isinstance(items, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("Key"), str):
            params[item["Key"]] = _without_nul(item.get("Value"))
    return B2CResult(
        result_code=str(code).strip(),
        result_desc=_without_nul(str(result.get("ResultDesc") or ""))[:300],
        originator_conversation_id=_short(result.get("OriginatorConversationID")),
        conversation_id=_short(result.get("ConversationID")),
        transaction_id=_short(result.get("TransactionID")),
        parameters=params,
    )


def parse_timeout(payload: Any) -> tuple[str | None, str | None]:
    """A QueueTimeOut body has no official shape: take the IDs from wherever they are."""
    if not isinstance(payload, dict):
        return None, None
    inner = payload.get("Result") if isinstance(payload.get("Result"), dict) else payload
    return _short(inner.get("OriginatorConversationID")), _short(inner.get("ConversationID"))


def _short(value: Any) -> str | None:
    text = _without_nul(_text_or_none(value))
    return text[:64] if text else None


def _without_nul(value: Any) -> Any:
    # An ID of ours never holds a NUL, and PostgreSQL refuses one in a lookup or a write: the
    # replacement character keeps the text (it then matches nothing) without failing the row.
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def _loose(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


# --- result codes (B2C's, not STK's: 2001 here is our initiator, not the customer's PIN) -------

# code: (words for owners and admins, whether a retry with a new ID can help)
B2C_RESULT_MEANINGS: dict[str, tuple[str, bool]] = {
    "1": ("The B2C account has too little money; the platform must top it up first", True),
    "2": ("The amount is below the M-Pesa minimum for a payment to a phone", False),
    "3": ("The amount is above the M-Pesa maximum for a payment to a phone", False),
    "4": ("The recipient reached their daily M-Pesa limit; try again tomorrow", True),
    "8": ("The recipient's M-Pesa account would go over its maximum balance", False),
    "11": ("The B2C account is not active", True),
    "2006": ("The B2C account is not active", True),
    "15": ("M-Pesa saw this request twice and refused the copy", False),
    "17": ("M-Pesa had an internal failure", True),
    "18": ("M-Pesa could not check the initiator credentials", True),
    "20": ("M-Pesa does not know this initiator", True),
    "21": ("The initiator has no B2C role on this shortcode", True),
    "26": ("M-Pesa was too busy", True),
    "2001": ("The initiator name, password or certificate is wrong", True),
    "8006": ("The initiator password is locked; the business administrator must unlock it", True),
    "2028": ("This shortcode is not allowed to make B2C payments", True),
    "2040": ("The recipient is not registered on M-Pesa", False),
    "SFC_IC0003": ("The number is not an M-Pesa number", False),
}


def b2c_failure(code: str, desc: str = "") -> tuple[str, bool]:
    """Words and retryability for a failed Result."""
    words, retryable = B2C_RESULT_MEANINGS.get(code, (desc or f"M-Pesa refused the payment (code {code})", True))
    return words, retryable

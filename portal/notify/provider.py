"""The only code that talks to Africa's Talking's SMS API (reference/sms.md). It knows no tables.

Its documented REST API through ``requests`` rather than the official ``africastalking`` SDK: the
SDK hard-codes its hosts (a stand-in is reachable only by patching a private attribute after every
``initialize``), keeps credentials in module globals shared by every owner's account, and lets
``requests`` exceptions escape untyped. The HTTP shape is the SDK's: a form POST to
``/version1/messaging`` with ``username``, ``to``, ``message``, ``from``, ``bulkSMSMode`` and the
``apiKey`` header.

Retry policy: nothing is retried here. A send whose answer never came may have gone out, so it
raises ``SmsUnavailable(outcome_unknown=True)`` and the outbox does not send it again; a send that
provably did not go out (connection refused, a 5xx, a retryable status code) is retried by the
outbox with backoff. Errors carry the provider's words and codes, never the API key.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

SEND_PATH = "/version1/messaging"
TAKEN_CODES = frozenset({100, 101, 102})  # Processed, Sent, Queued
# Refusals that another try will not change: the number, the sender id, the subscriber's choice.
PERMANENT_CODES = frozenset({401, 402, 403, 404, 406, 407, 409})


class SmsError(Exception):
    """Any failure to hand a message to the provider."""

    def __init__(self, message: str, *, status_code: int | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code  # the recipient's statusCode, when the provider gave one
        self.http_status = http_status


class SmsUnavailable(SmsError):
    """No usable answer (network, timeout, 5xx). ``outcome_unknown``: the message may have gone out."""

    def __init__(self, message: str, *, outcome_unknown: bool = False, http_status: int | None = None) -> None:
        super().__init__(message, http_status=http_status)
        self.outcome_unknown = outcome_unknown


class SmsRejected(SmsError):
    """The provider answered and did not take the message. ``is_permanent``: do not try again."""

    @property
    def is_permanent(self) -> bool:
        return self.status_code in PERMANENT_CODES


class SmsAuthFailed(SmsRejected):
    """The username and API key were refused (HTTP 401)."""


@dataclass(frozen=True)
class SmsAccount:
    username: str
    api_key: str = field(repr=False)
    sender: str | None
    base_url: str


@dataclass(frozen=True)
class SmsSent:
    message_id: str
    status_code: int
    status: str
    cost: str  # as written, "KES 0.8000"
    cost_kes_micro: int | None


_lock = threading.Lock()
_sessions: dict[str, requests.Session] = {}


def _session(base_url: str) -> requests.Session:
    parts = urlsplit(base_url)
    key = f"{parts.scheme}://{parts.netloc}".lower()
    with _lock:
        session = _sessions.get(key)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=16, max_retries=0)  # never re-sent by urllib3
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[key] = session
        return session


def send_sms(account: SmsAccount, phone_e164: str, text: str, *, timeout_s: float = 10.0) -> SmsSent:
    """Send one message to one ``+254…`` number. Raises ``SmsUnavailable``, ``SmsAuthFailed`` or ``SmsRejected``."""
    form: dict[str, Any] = {"username": account.username, "to": phone_e164, "message": text, "bulkSMSMode": 1}
    if account.sender:
        form["from"] = account.sender
    headers = {"apiKey": account.api_key, "Accept": "application/json"}
    try:
        answer = _session(account.base_url).post(
            account.base_url + SEND_PATH, data=form, headers=headers, timeout=(min(5.0, timeout_s), timeout_s)
        )
    except requests.ConnectTimeout as exc:
        raise SmsUnavailable("no connection to the SMS provider (timed out)") from exc
    except requests.ConnectionError as exc:
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            raise SmsUnavailable("no connection to the SMS provider") from exc
        raise SmsUnavailable("the connection to the SMS provider dropped", outcome_unknown=True) from exc
    except requests.Timeout as exc:
        raise SmsUnavailable("no answer from the SMS provider", outcome_unknown=True) from exc
    except requests.RequestException as exc:
        raise SmsUnavailable(f"the SMS request failed: {type(exc).__name__}", outcome_unknown=True) from exc
    return _read_answer(answer)


def _read_answer(answer: requests.Response) -> SmsSent:
    if answer.status_code == 401:
        raise SmsAuthFailed("the SMS provider refused the username or API key", http_status=401)
    if answer.status_code >= 500:
        raise SmsUnavailable(f"the SMS provider answered HTTP {answer.status_code}", http_status=answer.status_code)
    if not 200 <= answer.status_code < 300:
        raise SmsRejected(
            f"the SMS provider answered HTTP {answer.status_code}: {answer.text[:120]}", http_status=answer.status_code
        )
    try:
        data = answer.json()
        recipient = data["SMSMessageData"]["Recipients"][0]
        code = int(recipient["statusCode"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        message = _summary(answer)
        raise SmsRejected(f"the SMS provider took no recipient: {message}", http_status=answer.status_code) from exc
    status = str(recipient.get("status") or "")
    if code not in TAKEN_CODES:
        raise SmsRejected(
            f"the SMS provider refused the message: {code} {status}"[:200],
            status_code=code,
            http_status=answer.status_code,
        )
    cost = str(recipient.get("cost") or "")
    return SmsSent(str(recipient.get("messageId") or ""), code, status, cost, parse_cost_micro(cost))


def _summary(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("SMSMessageData", {}).get("Message", ""))[:120]
    except (ValueError, AttributeError):
        return answer.text[:120]


def parse_cost_micro(cost: str) -> int | None:
    """ "KES 0.8000" → 800000 (millionths of a shilling); None for another currency or no figure."""
    currency, _, amount = cost.strip().partition(" ")
    if currency != "KES":
        return None
    try:
        return int(Decimal(amount) * 1_000_000)
    except (InvalidOperation, ValueError):
        return None


def to_e164(msisdn: str) -> str:
    """2547… / 2541… (as the portal stores numbers) → +2547…, the form the provider wants."""
    return msisdn if msisdn.startswith("+") else "+" + msisdn

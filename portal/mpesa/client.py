"""DarajaClient: the only code that sends HTTP requests to Safaricom's Daraja API.

Shared per host (module-level, thread-safe): one ``requests.Session`` and one ``CircuitBreaker``.
Shared per consumer key: the OAuth token, through the caller's ``TokenStore`` (Daraja invalidates
the previous token whenever a new one is issued, so every process must use the same one).

What is retried: token requests, STK queries and C2B URL registration, with capped exponential
backoff and jitter, on ``DarajaUnavailable`` only. An STK push is never re-sent after it may have
reached Daraja; the single exception is ``404.001.03 Invalid Access Token``, a refusal that
proves the push was not taken.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from .breaker import CircuitBreaker
from .errors import (
    DarajaAuthFailed,
    DarajaCircuitOpen,
    DarajaError,
    DarajaRejected,
    DarajaUnavailable,
    InvalidPhoneNumber,
)
from .phones import mask_phone, normalise_phone

log = logging.getLogger("portal.mpesa")

NAIROBI = timezone(timedelta(hours=3), "EAT")  # Kenya keeps no daylight saving time
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)
DEFAULT_TOKEN_LIFETIME_S = 3599
MAX_ACCOUNT_REFERENCE = 12
MAX_TRANSACTION_DESC = 13

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
C2B_REGISTER_PATH = "/mpesa/c2b/v2/registerurl"

# 404.001.03 on M-Pesa Express; the C2B pages list 400.003.01 for the same condition.
INVALID_TOKEN_CODES = frozenset({"404.001.03", "400.003.01"})
# Messages Daraja's STK query uses for "still waiting for the customer" (under error code 500.001.1001).
_STILL_PROCESSING = ("being processed", "under processing", "still processing")

T = TypeVar("T")


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DarajaAccount:
    """One paybill or till with its Daraja app credentials. Secrets are kept out of ``repr``."""

    shortcode: str  # the paybill number, or the till number for kind="till"
    kind: str  # "paybill" | "till"
    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    passkey: str = field(repr=False)
    store_number: str | None = None  # till only: the HO/store number Daraja knows as BusinessShortCode
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("paybill", "till"):
            raise ValueError(f"kind must be 'paybill' or 'till', not {self.kind!r}")
        if self.kind == "till" and not self.store_number:
            raise ValueError("a till needs its store (HO) number: Daraja wants it as BusinessShortCode")

    @property
    def business_shortcode(self) -> str:
        return str(self.store_number) if self.kind == "till" else str(self.shortcode)

    @property
    def party_b(self) -> str:
        return str(self.shortcode)

    @property
    def transaction_type(self) -> str:
        return "CustomerBuyGoodsOnline" if self.kind == "till" else "CustomerPayBillOnline"


@dataclass(frozen=True)
class CachedToken:
    access_token: str = field(repr=False)
    expires_at: datetime  # timezone-aware UTC

    def is_fresh(self, now: datetime) -> bool:
        """Still worth using: more than the refresh margin away from expiry."""
        return now < self.expires_at - TOKEN_REFRESH_MARGIN


class TokenStore(Protocol):
    def load(self) -> CachedToken | None: ...

    def save(self, token: CachedToken) -> None: ...


def _load_fresh(store: TokenStore) -> CachedToken | None:
    """The store's current token, past any cache it keeps (stores may offer ``load_fresh``)."""
    load_fresh = getattr(store, "load_fresh", None)
    return load_fresh() if load_fresh is not None else store.load()


class MemoryTokenStore:
    """A process-local TokenStore for tests and scripts (the app keeps its token in the database)."""

    def __init__(self, token: CachedToken | None = None) -> None:
        self._token = token
        self._lock = threading.Lock()
        self.saves = 0

    def load(self) -> CachedToken | None:
        with self._lock:
            return self._token

    def save(self, token: CachedToken) -> None:
        with self._lock:
            self._token = token
            self.saves += 1


@dataclass(frozen=True)
class StkPushAccepted:
    merchant_request_id: str
    checkout_request_id: str
    response_code: str
    customer_message: str


@dataclass(frozen=True)
class StkQueryAnswer:
    result_code: str | None  # None when Daraja answered with its "being processed" error shape
    result_desc: str
    is_pending: bool


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any] | None  # None when the body was empty or not a JSON object


# --- password and timestamp ---------------------------------------------------------------------


def nairobi_timestamp(now: datetime) -> str:
    """``YYYYMMDDHHmmss`` in Kenyan time; Daraja refuses timestamps from other zones."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(business_shortcode: str, passkey: str, timestamp: str) -> str:
    return base64.b64encode(f"{business_shortcode}{passkey}{timestamp}".encode()).decode("ascii")


# --- shared per-host state ----------------------------------------------------------------------

_registry_lock = threading.Lock()
_sessions: dict[str, requests.Session] = {}
_breakers: dict[str, CircuitBreaker] = {}
POOL_MAXSIZE = 128
_token_locks: dict[str, threading.Lock] = {}


def _host_key(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def shared_session(base_url: str) -> requests.Session:
    """The one Session (connection pool) for this host in this process."""
    key = _host_key(base_url)
    with _registry_lock:
        session = _sessions.get(key)
        if session is None:
            session = requests.Session()
            # max_retries=0: urllib3 must never re-send a request on its own (an STK push!).
            # pool_maxsize: as many kept connections as reconciliation runs queries at once, or
            # every extra one is opened and thrown away per request.
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=POOL_MAXSIZE, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[key] = session
        return session


def shared_breaker(base_url: str) -> CircuitBreaker:
    """The one CircuitBreaker for this host in this process (defaults: 5 failures, 30 s cool-off)."""
    key = _host_key(base_url)
    with _registry_lock:
        return _breakers.setdefault(key, CircuitBreaker())


def configure_breaker(base_url: str, *, failure_threshold: int = 5, cool_off_s: float = 30.0) -> CircuitBreaker:
    """Replace this host's shared breaker; clients created afterwards use the new one."""
    breaker = CircuitBreaker(failure_threshold=failure_threshold, cool_off_s=cool_off_s)
    with _registry_lock:
        _breakers[_host_key(base_url)] = breaker
    return breaker


def _token_lock(consumer_key: str) -> threading.Lock:
    with _registry_lock:
        return _token_locks.setdefault(consumer_key, threading.Lock())


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- the client ---------------------------------------------------------------------------------


class DarajaClient:
    """Calls Daraja for one host. Cheap to create: sessions and breakers are shared per host."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        retries: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries  # extra attempts after the first, for the calls that are safe to repeat
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.breaker = breaker or shared_breaker(self.base_url)
        self._session = shared_session(self.base_url)
        self._clock = clock or _utc_now
        self._sleep = sleep

    # -- tokens --

    def fetch_token(self, account: DarajaAccount) -> CachedToken:
        """A brand-new token (which invalidates the previous one for this consumer key)."""
        return self._with_retries(lambda: self._fetch_token_once(account))

    def access_token(self, account: DarajaAccount, store: TokenStore, *, force: bool = False) -> str:
        """The stored token while it is fresh, else a new one that is saved to ``store``."""
        if not force:
            cached = store.load()
            if cached is not None and cached.is_fresh(self._clock()):
                return cached.access_token
        with _token_lock(account.consumer_key):
            if not force:
                cached = _load_fresh(store)  # another thread may have refreshed while we waited
                if cached is not None and cached.is_fresh(self._clock()):
                    return cached.access_token
            return self._fetch_and_save(account, store)

    def _replace_rejected_token(self, account: DarajaAccount, store: TokenStore, rejected: str) -> str:
        # Another process may already have replaced the token (which is why ours was refused);
        # fetching yet another one would knock theirs out in turn.
        with _token_lock(account.consumer_key):
            cached = _load_fresh(store)  # another process may have saved a newer token: use it, fetch none
            if cached is not None and cached.access_token != rejected and cached.is_fresh(self._clock()):
                return cached.access_token
            return self._fetch_and_save(account, store)

    def _fetch_and_save(self, account: DarajaAccount, store: TokenStore) -> str:
        token = self.fetch_token(account)
        store.save(token)
        log.info(
            "daraja token refreshed account=%s shortcode=%s expires_at=%s",
            account.label,
            account.business_shortcode,
            token.expires_at.isoformat(timespec="seconds"),
        )
        return token.access_token

    def _fetch_token_once(self, account: DarajaAccount) -> CachedToken:
        answer = self._send(
            "GET",
            OAUTH_PATH,
            params={"grant_type": "client_credentials"},
            auth=(account.consumer_key, account.consumer_secret),
        )
        if answer.status != 200 or answer.body is None:
            raise _error_from(answer, OAUTH_PATH, oauth=True)
        access_token = answer.body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise DarajaUnavailable("Daraja OAuth answer had no access_token", http_status=answer.status)
        lifetime = _seconds(answer.body.get("expires_in"))
        return CachedToken(access_token=access_token, expires_at=self._clock() + timedelta(seconds=lifetime))

    # -- M-Pesa Express --

    def stk_push(
        self,
        account: DarajaAccount,
        store: TokenStore,
        *,
        phone: str,
        amount: int,
        account_reference: str,
        description: str,
        callback_url: str,
    ) -> StkPushAccepted:
        """Ask Daraja to show the PIN prompt. Accepted means "prompt queued", never "paid".

        Raises ValueError for arguments Daraja would refuse, ``DarajaRejected`` when Daraja refuses,
        ``DarajaUnavailable`` otherwise (``outcome_unknown`` True: do not push again, query later).
        """
        _check_push_arguments(amount, account_reference)
        msisdn = _msisdn_for_daraja(phone)
        body = self._push_body(account, msisdn, amount, account_reference, description, callback_url)
        context = f"shortcode={account.business_shortcode} phone={mask_phone(msisdn)} ref={account_reference}"
        try:
            answer = self._authorized_post(account, store, STK_PUSH_PATH, body, may_repeat=False)
            accepted = _accepted_push(answer)
        except DarajaError as exc:
            _log_failure("stk push", context, exc)
            raise
        log.info(
            "stk push accepted checkout=%s merchant_request=%s %s amount=%s",
            accepted.checkout_request_id,
            accepted.merchant_request_id,
            context,
            amount,
        )
        return accepted

    def _push_body(
        self,
        account: DarajaAccount,
        msisdn: str,
        amount: int,
        account_reference: str,
        description: str,
        callback_url: str,
    ) -> dict[str, Any]:
        timestamp, password = self._password(account)
        return {
            "BusinessShortCode": account.business_shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "TransactionType": account.transaction_type,
            "Amount": amount,
            "PartyA": msisdn,
            "PartyB": account.party_b,
            "PhoneNumber": msisdn,
            "CallBackURL": callback_url,
            "AccountReference": account_reference,
            # A sandbox probe got "Invalid Remarks" without it, although the docs call it optional.
            "TransactionDesc": (description.strip() or account_reference)[:MAX_TRANSACTION_DESC],
        }

    def stk_query(self, account: DarajaAccount, store: TokenStore, checkout_request_id: str) -> StkQueryAnswer:
        """Daraja's view of a push. "Still processing" answers come back as ``is_pending``, not errors."""
        timestamp, password = self._password(account)
        body = {
            "BusinessShortCode": account.business_shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        context = f"checkout={checkout_request_id} shortcode={account.business_shortcode}"
        try:
            answer = self._authorized_post(account, store, STK_QUERY_PATH, body, may_repeat=True)
            result = _query_answer(answer)
        except DarajaError as exc:
            _log_failure("stk query", context, exc)
            raise
        log.info("stk query %s result=%s pending=%s", context, result.result_code, result.is_pending)
        return result

    # -- C2B --

    def register_c2b_urls(
        self,
        account: DarajaAccount,
        store: TokenStore,
        *,
        confirmation_url: str,
        validation_url: str,
        response_type: str = "Completed",
    ) -> dict[str, Any]:
        """Register (v2, masked MSISDN) confirmation/validation URLs; returns Daraja's answer."""
        if response_type not in ("Completed", "Cancelled"):
            raise ValueError("response_type must be exactly 'Completed' or 'Cancelled'")
        body = {
            "ShortCode": account.business_shortcode,
            "ResponseType": response_type,
            "ConfirmationURL": confirmation_url,
            "ValidationURL": validation_url,
        }
        context = f"shortcode={account.business_shortcode}"
        try:
            answer = self._authorized_post(account, store, C2B_REGISTER_PATH, body, may_repeat=True)
            registered = _accepted_registration(answer)
        except DarajaError as exc:
            _log_failure("c2b register", context, exc)
            raise
        log.info("c2b urls registered %s", context)
        return registered

    # -- plumbing --

    def _password(self, account: DarajaAccount) -> tuple[str, str]:
        timestamp = nairobi_timestamp(self._clock())
        return timestamp, stk_password(account.business_shortcode, account.passkey, timestamp)

    def _authorized_post(
        self, account: DarajaAccount, store: TokenStore, path: str, body: dict[str, Any], *, may_repeat: bool
    ) -> _Answer:
        token = self.access_token(account, store)
        answer = self._post(path, body, token, may_repeat=may_repeat)
        if _is_invalid_token(answer):
            # A refused token proves the request was not acted on, so one re-send is safe even for a push.
            log.warning("daraja refused the access token; refreshing once shortcode=%s", account.business_shortcode)
            token = self._replace_rejected_token(account, store, token)
            answer = self._post(path, body, token, may_repeat=may_repeat)
        return answer

    def _post(self, path: str, body: dict[str, Any], token: str, *, may_repeat: bool) -> _Answer:
        def send() -> _Answer:
            return self._send("POST", path, json=body, token=token, is_push=not may_repeat)

        return self._with_retries(send) if may_repeat else send()

    def _with_retries(self, call: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except DarajaCircuitOpen:
                raise
            except DarajaUnavailable:
                if attempt >= self.retries:
                    raise
                self._sleep(self._backoff_delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff_delay(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        token: str | None = None,
        is_push: bool = False,
    ) -> _Answer:
        """One HTTP request through the breaker. Raises DarajaUnavailable for transport failures and
        bare 5xx answers; every other answer is returned for the caller to interpret."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.breaker.before_request()
        try:
            response = self._session.request(
                method, self.base_url + path, json=json, params=params, auth=auth, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            self.breaker.record_failure()
            raise _transport_error(exc, path) from exc
        except BaseException:
            self.breaker.release()
            raise
        answer = _Answer(response.status_code, _json_object(response))
        if answer.status >= 500 and not _has_error_code(answer):
            self.breaker.record_failure()
            raise _bare_server_error(answer, path, is_push=is_push)
        self.breaker.record_success()
        return answer


# --- interpreting answers -----------------------------------------------------------------------


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:  # empty or non-JSON body (HTML error pages, production's empty OAuth 400)
        return None
    return body if isinstance(body, dict) else None


def _has_error_code(answer: _Answer) -> bool:
    return answer.body is not None and bool(answer.body.get("errorCode"))


def _is_invalid_token(answer: _Answer) -> bool:
    return answer.body is not None and str(answer.body.get("errorCode", "")) in INVALID_TOKEN_CODES


def _error_from(answer: _Answer, path: str, *, oauth: bool = False) -> DarajaError:
    """The typed error for an answer that is not the success shape the caller expected."""
    body = answer.body or {}
    if body.get("errorCode"):
        cls = DarajaAuthFailed if oauth else DarajaRejected
        code, message = str(body["errorCode"]), str(body.get("errorMessage", ""))
        return cls(
            f"{code} {message}".strip(),
            error_code=code,
            error_message=message,
            http_status=answer.status,
            request_id=_text_or_none(body.get("requestId")),
        )
    if oauth and answer.status in (400, 401, 403):
        return DarajaAuthFailed(
            f"Daraja OAuth refused the consumer key/secret (HTTP {answer.status})", http_status=answer.status
        )
    if answer.status >= 400:
        return DarajaRejected(
            f"HTTP {answer.status} from {path} without a Daraja error body", http_status=answer.status
        )
    return DarajaUnavailable(f"unreadable HTTP {answer.status} answer from {path}", http_status=answer.status)


def _bare_server_error(answer: _Answer, path: str, *, is_push: bool) -> DarajaUnavailable:
    # Only 502/503 say "the service behind did not take it"; a bare 500 or 504 on a push may
    # come after Daraja acted on it, so the push must be treated as possibly sent.
    may_have_landed = is_push and answer.status not in (502, 503)
    return DarajaUnavailable(
        f"HTTP {answer.status} from {path} without a Daraja error code",
        outcome_unknown=may_have_landed,
        http_status=answer.status,
    )


def _transport_error(exc: requests.RequestException, path: str) -> DarajaUnavailable:
    nothing_sent = _failed_before_sending(exc)
    what = "could not connect to Daraja" if nothing_sent else "no answer from Daraja"
    return DarajaUnavailable(f"{what} ({type(exc).__name__}) calling {path}", outcome_unknown=not nothing_sent)


def _failed_before_sending(exc: requests.RequestException) -> bool:
    """True only when the request provably never left: connect refused/timed out, DNS, TLS."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _accepted_push(answer: _Answer) -> StkPushAccepted:
    body = answer.body
    if answer.status != 200 or body is None or body.get("errorCode"):
        raise _error_from(answer, STK_PUSH_PATH)
    response_code = _text_or_none(body.get("ResponseCode"))
    checkout_id = _text_or_none(body.get("CheckoutRequestID"))
    if response_code is not None and response_code != "0":
        message = str(body.get("ResponseDescription") or body.get("CustomerMessage") or "")
        raise DarajaRejected(f"{response_code} {message}", error_code=response_code, error_message=message)
    if response_code is None or checkout_id is None:
        # HTTP 200 without the success shape: Daraja may well have queued the prompt.
        raise DarajaUnavailable("STK push answer had no CheckoutRequestID", outcome_unknown=True, http_status=200)
    return StkPushAccepted(
        merchant_request_id=str(body.get("MerchantRequestID", "")),
        checkout_request_id=checkout_id,
        response_code=response_code,
        customer_message=str(body.get("CustomerMessage") or body.get("ResponseDescription") or ""),
    )


def _query_answer(answer: _Answer) -> StkQueryAnswer:
    body = answer.body or {}
    if body.get("errorCode"):
        message = str(body.get("errorMessage", ""))
        if str(body["errorCode"]) == "500.001.1001" and _is_still_processing(message):
            return StkQueryAnswer(result_code=None, result_desc=message, is_pending=True)
        raise _error_from(answer, STK_QUERY_PATH)
    if answer.status != 200 or answer.body is None:
        raise _error_from(answer, STK_QUERY_PATH)
    result_code = _text_or_none(body.get("ResultCode"))
    desc = str(body.get("ResultDesc") or body.get("ResponseDescription") or "")
    if result_code is None:
        # Accepted but no result yet: never read that as a failure.
        return StkQueryAnswer(result_code=None, result_desc=desc, is_pending=True)
    return StkQueryAnswer(result_code=result_code, result_desc=desc, is_pending=result_code == "4999")


def _is_still_processing(message: str) -> bool:
    lowered = message.lower()
    return any(phrase in lowered for phrase in _STILL_PROCESSING)


def _accepted_registration(answer: _Answer) -> dict[str, Any]:
    body = answer.body
    if answer.status != 200 or body is None or body.get("errorCode"):
        raise _error_from(answer, C2B_REGISTER_PATH)
    response_code = _text_or_none(body.get("ResponseCode"))
    if response_code not in (None, "0"):
        message = str(body.get("ResponseDescription", ""))
        raise DarajaRejected(f"{response_code} {message}", error_code=response_code, error_message=message)
    return body


# --- small helpers ------------------------------------------------------------------------------


def _check_push_arguments(amount: int, account_reference: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise ValueError(f"amount must be a whole number of shillings >= 1, got {amount!r}")
    if not account_reference or len(account_reference) > MAX_ACCOUNT_REFERENCE:
        raise ValueError(f"account_reference must be 1..{MAX_ACCOUNT_REFERENCE} characters, got {account_reference!r}")


def _msisdn_for_daraja(phone: str) -> str:
    # Callers should normalise first. A number we cannot normalise is sent as typed so that
    # Daraja's own refusal (400.002.02 Invalid PhoneNumber) is the authority, not our guess.
    try:
        return normalise_phone(phone)
    except InvalidPhoneNumber:
        return str(phone).strip()


def _seconds(value: object) -> int:
    """``expires_in`` arrives as "3599" or 3599."""
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        log.warning("daraja token answer had no usable expires_in; assuming %s s", DEFAULT_TOKEN_LIFETIME_S)
        return DEFAULT_TOKEN_LIFETIME_S


def _text_or_none(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _log_failure(what: str, context: str, exc: DarajaError) -> None:
    if isinstance(exc, DarajaUnavailable):
        log.warning(
            "%s unavailable %s outcome_unknown=%s: %s", what, context, getattr(exc, "outcome_unknown", False), exc
        )
    else:
        log.warning("%s refused %s code=%s message=%s", what, context, exc.error_code, exc.error_message)

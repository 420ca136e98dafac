"""A local stand-in for Safaricom Daraja, served over real HTTP on 127.0.0.1.

It speaks Daraja's paths and payload shapes (docs: /work/shared/reference/daraja.md): OAuth, STK
push, STK query, C2B URL registration and simulation, and it POSTs STK callbacks and C2B
validation/confirmation calls back to the URLs it was given, like the real thing.

Test numbers (PhoneNumber/PartyA):
  * any valid number is approved (ResultCode 0) after ``callback_delay_s``;
  * ``2547000XXXXX``: the last five digits are the ResultCode, e.g. 254700001032 cancelled,
    254700001037 timeout, 254700000001 insufficient funds, 254700002001 wrong PIN;
  * ``254700099999`` never calls back; its query answers "4999 still under processing" forever;
  * ``set_outcome(checkout_id_or_phone, code, ...)`` overrides both rules.

Traps it reproduces: each new token invalidates the previous one for that consumer key; a second
push to a phone with an unanswered prompt (< 60 s) gets "Unable to lock subscriber" — turn that off
with ``enforce_subscriber_lock = False`` when tests push to one phone repeatedly; callback URLs
containing "mpesa"/"safaricom" are refused; till pushes need the store number as
BusinessShortCode and the till as PartyB, or the callback says 2028.

Other knobs: ``reject_phones`` (well-formed numbers refused with "Invalid PhoneNumber"),
``query_pending_shape`` ("error" = HTTP 500 500.001.1001, or "4999"), ``fail_mode`` ("500" or
"hang": every API call answers a bare HTTP 500, or stalls until the mode is cleared, ``stop()`` or
30 s, then carries on normally), ``token_ttl_s``, ``invalidate_token()``, ``c2b_on_stk``.
``simulate_c2b`` needs URLs registered first (through the API or ``register_c2b_urls``).

B2C payouts and refunds, their Result/QueueTimeOut callbacks and Transaction Status: see
``daraja_b2c.py`` (``sandbox.b2c``; outcomes chosen by the recipient number).

A human control page lives at ``GET /sandbox`` (approve/cancel/timeout buttons, a C2B form).
Nothing happens at import time; ``start()`` opens the socket and threads.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from flask import Flask, Response, jsonify, redirect, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import normalise_phone
from .daraja_b2c import SandboxB2C, add_b2c_routes

log = logging.getLogger("portal.sandbox.daraja")

SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
SANDBOX_TEST_MSISDN = "254708374149"
NEVER_ANSWERS = 99999  # result code meaning "the customer never answers; no callback, ever"
TEST_PHONE_PREFIX = "2547000"
SUBSCRIBER_LOCK_S = 60.0
HANG_S = 30.0
MAX_TRANSACTION_AMOUNT = 250_000

NAIROBI = timezone(timedelta(hours=3), "EAT")
_MSISDN = re.compile(r"^254[17]\d{8}$")
_SHORTCODE = re.compile(r"^\d{5,7}$")
_TIMESTAMP = re.compile(r"^\d{14}$")
_STK_URL_BANNED = ("mpesa", "m-pesa", "m_pesa", "safaricom")
_C2B_URL_BANNED = (*_STK_URL_BANNED, "exe", "cmd", "sql", "query", "ngrok", "mockbin", "requestbin")

RESULT_DESCS = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule: less than the minimum transaction amount.",
    3: "Declined due to limit rule: greater than the maximum transaction amount.",
    4: "Declined due to limit rule: would exceed daily transfer limit.",
    8: "Declined due to limit rule: would exceed the maximum balance.",
    17: "Rule limited.",
    1001: "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    1019: "Transaction has expired.",
    1025: "An error occurred while sending a push request.",
    1032: "Request cancelled by user",
    1037: "DS timeout user cannot be reached",
    2001: "The initiator information is invalid.",
    2028: "The request is not permitted according to product assignment.",
    8006: "The security credential is locked",
    9999: "An error occurred while sending a push request.",
}
PUSH_ACCEPTED = "Success. Request accepted for processing"
QUERY_ACCEPTED = "The service request has been accepted successsfully"  # sic: Daraja's live spelling


@dataclass
class _Shortcode:
    number: str
    passkey: str
    tills: tuple[str, ...] = ()  # non-empty: this is a store (HO) number for Buy Goods


@dataclass
class _Outcome:
    result_code: int
    amount: int | None = None
    delay_s: float | None = None
    receipt: str | None = None
    pending_queries: int = 0
    send_callback: bool = True


@dataclass
class _Push:
    checkout_id: str
    merchant_id: str
    body: dict[str, Any]
    phone: str
    amount: int
    outcome: _Outcome
    pushed_at: float
    is_completed: bool = False
    timer: threading.Timer | None = field(default=None, repr=False)
    receipt: str = ""

    @property
    def result_code(self) -> int:
        return self.outcome.result_code


@dataclass
class _Token:
    value: str
    issued_at: float
    ttl_s: int


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request drowns test output; errors are still logged


class SandboxDaraja:
    """Daraja on a free local port. Use as a context manager or ``start()``/``stop()``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, callback_delay_s: float = 0.5) -> None:
        self.host = host
        self.port = port
        self.callback_delay_s = callback_delay_s
        self.token_ttl_s = 3599
        self.token_delay_s = 0.0  # how long a token request takes (Daraja's OAuth is often the slow call)
        self.enforce_subscriber_lock = True
        self.query_pending_shape = "error"  # "error" (HTTP 500, 500.001.1001) or "4999" (HTTP 200)
        self.validate_c2b = True  # POST to a registered ValidationURL before confirming
        self.c2b_on_stk = False  # also send a C2B confirmation for a paid STK push (see reference §7)
        self.callback_timeout_s = 3.0
        self.reject_phones: set[str] = set()  # well-formed MSISDNs refused with "Invalid PhoneNumber"
        self.pushes: list[dict[str, Any]] = []
        self.oauth_calls = 0
        self.query_calls: dict[str, int] = {}
        self.query_arrivals: list[tuple[float, str]] = []  # (time.monotonic(), BusinessShortCode) of each STK query
        self.callbacks_sent: list[tuple[str, dict[str, Any], int | None]] = []
        self.received: list[tuple[str, str]] = []  # (method, path) of every API request, faults included
        self._lock = threading.RLock()
        self._sent = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._fail_mode: str | None = None
        self._apps: dict[str, str] = {}
        self._tokens: dict[str, _Token] = {}  # consumer key -> its one valid token
        self._shortcodes: dict[str, _Shortcode] = {}
        self._store_of_till: dict[str, str] = {}
        self._c2b_urls: dict[str, dict[str, Any]] = {}  # shortcode (paybill, store or till) -> registration
        self._balances: dict[str, int] = {}
        self._push_by_id: dict[str, _Push] = {}
        self._outcome_by_phone: dict[str, _Outcome] = {}
        self._used_ids: set[str] = set()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.add_shortcode(SANDBOX_SHORTCODE, SANDBOX_PASSKEY)
        self.b2c = SandboxB2C(self)  # B2C and Transaction Status (daraja_b2c.py)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SandboxDaraja:
        self._stopping.clear()
        self._server = make_server(self.host, self.port, _build_app(self), threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-daraja", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases "hang" handlers and silences timers that already fired
        self.b2c.stop()
        with self._lock:
            for push in self._push_by_id.values():
                if push.timer is not None:
                    push.timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxDaraja:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- configuration -------------------------------------------------------------------------

    def add_app(self, consumer_key: str, consumer_secret: str) -> None:
        with self._lock:
            self._apps[consumer_key] = consumer_secret

    def add_shortcode(self, shortcode: str, passkey: str, *, till_numbers: tuple[str, ...] = ()) -> None:
        """A paybill, or (with ``till_numbers``) a store/HO number and the tills under it."""
        with self._lock:
            self._shortcodes[str(shortcode)] = _Shortcode(str(shortcode), passkey, tuple(map(str, till_numbers)))
            for till in till_numbers:
                self._store_of_till[str(till)] = str(shortcode)

    def add_answered_push(self, checkout_id: str, *, shortcode: str, phone: str, amount: int, result_code: int, receipt: str) -> None:
        """A push whose callback was lost: only an STK query will tell its (final) result."""
        push = _Push(
            checkout_id=checkout_id,
            merchant_id=f"lost-{checkout_id[-8:]}",
            body={"BusinessShortCode": shortcode, "PartyB": shortcode, "PhoneNumber": phone},
            phone=phone,
            amount=amount,
            outcome=_Outcome(result_code, send_callback=False),
            pushed_at=time.monotonic() - 60,
            is_completed=True,
            receipt=receipt,
        )
        with self._lock:
            self._push_by_id[checkout_id] = push
            self._used_ids.add(checkout_id)

    def invalidate_token(self, consumer_key: str | None = None) -> None:
        """As if another process fetched a token: the current one(s) stop working."""
        with self._lock:
            for key in [consumer_key] if consumer_key else list(self._tokens):
                self._tokens.pop(key, None)

    @property
    def fail_mode(self) -> str | None:
        with self._lock:
            return self._fail_mode

    @fail_mode.setter
    def fail_mode(self, mode: str | None) -> None:
        if mode not in (None, "500", "hang"):
            raise ValueError("fail_mode must be None, '500' or 'hang'")
        with self._lock:
            self._fail_mode = mode

    # --- outcome control -----------------------------------------------------------------------

    def set_outcome(
        self,
        checkout_request_id_or_phone: str,
        result_code: int,
        *,
        amount: int | None = None,
        delay_s: float | None = None,
        receipt: str | None = None,
        pending_queries: int = 0,
        send_callback: bool = True,
    ) -> None:
        """Decide a push's result. A CheckoutRequestID changes that push (rescheduling its callback
        if not yet sent); a phone number applies to every later push to that phone."""
        outcome = _Outcome(int(result_code), amount, delay_s, receipt, pending_queries, send_callback)
        with self._lock:
            push = self._push_by_id.get(checkout_request_id_or_phone)
            if push is not None:
                push.outcome = outcome
                push.receipt = receipt or push.receipt
                if not push.is_completed:
                    self._schedule(push)
                return
            self._outcome_by_phone[_phone_key(checkout_request_id_or_phone)] = outcome

    def clear_outcome(self, phone: str) -> None:
        with self._lock:
            self._outcome_by_phone.pop(_phone_key(phone), None)

    def send_callback(self, checkout_request_id: str) -> None:
        """(Re)send this push's callback now, synchronously; a second call is a duplicate delivery."""
        with self._lock:
            push = self._push_by_id[checkout_request_id]
            if push.result_code == NEVER_ANSWERS:
                raise ValueError("this push has no result yet; call set_outcome() first")
            if push.timer is not None:
                push.timer.cancel()
            push.is_completed = True
            url, payload = push.body["CallBackURL"], self._callback_payload(push)
        self._post(url, payload)

    def wait_for_callbacks(self, count: int = 1, timeout: float = 5.0) -> list[tuple[str, dict[str, Any], int | None]]:
        """Block until at least ``count`` outgoing POSTs (STK callbacks, C2B calls) were made."""
        with self._sent:
            self._sent.wait_for(lambda: len(self.callbacks_sent) >= count, timeout=timeout)
            return list(self.callbacks_sent)

    def push_status(self, checkout_request_id: str) -> dict[str, Any]:
        with self._lock:
            push = self._push_by_id[checkout_request_id]
            return {"result_code": push.result_code, "is_completed": push.is_completed, "receipt": push.receipt}

    # --- C2B -----------------------------------------------------------------------------------

    def simulate_c2b(
        self,
        shortcode: str,
        amount: int,
        bill_ref: str | None,
        *,
        msisdn: str = SANDBOX_TEST_MSISDN,
        trans_id: str | None = None,
        kind: str = "CustomerPayBillOnline",
    ) -> dict[str, Any]:
        """A customer pays ``shortcode`` directly. POSTs validation (if ``validate_c2b``) then
        confirmation to the URLs registered for it (or for its store); returns the payload.

        Raises LookupError when no URLs are registered: M-Pesa would complete the payment and tell
        nobody, which in a test is always a forgotten ``register_c2b_urls``.
        """
        registration = self._c2b_registration(str(shortcode))
        if registration is None:
            raise LookupError(f"no C2B URLs registered for {shortcode}; register them first (register_c2b_urls)")
        return self._deliver_c2b(str(shortcode), amount, bill_ref, msisdn, trans_id, kind, registration)

    def register_c2b_urls(
        self,
        shortcode: str,
        confirmation_url: str,
        validation_url: str = "",
        *,
        response_type: str = "Completed",
        version: int = 2,
    ) -> None:
        """Register C2B URLs directly (no token, no URL rules), e.g. from a test fixture."""
        with self._lock:
            self._c2b_urls[str(shortcode)] = {
                "confirmation_url": confirmation_url,
                "validation_url": validation_url,
                "response_type": response_type,
                "version": version,
            }

    def _deliver_c2b(
        self,
        shortcode: str,
        amount: int,
        bill_ref: str | None,
        msisdn: str,
        trans_id: str | None,
        kind: str,
        registration: dict[str, Any],
    ) -> dict[str, Any]:
        payload = self._c2b_payload(shortcode, amount, bill_ref, msisdn, trans_id, kind, registration)
        if not self._c2b_validated(registration, payload):
            return payload
        with self._lock:
            balance = self._balances[str(shortcode)] = self._balances.get(str(shortcode), 0) + int(amount)
            payload["OrgAccountBalance"] = f"{balance:.2f}"
        self._post(registration["confirmation_url"], payload)
        return payload

    def _c2b_registration(self, shortcode: str) -> dict[str, Any] | None:
        """URLs registered for this shortcode, or for the store a till belongs to."""
        with self._lock:
            own = self._c2b_urls.get(shortcode)
            return own if own is not None else self._c2b_urls.get(self._store_of_till.get(shortcode, ""))

    def _is_known_shortcode(self, shortcode: str) -> bool:
        with self._lock:
            return shortcode in self._shortcodes or shortcode in self._store_of_till

    def _c2b_payload(
        self,
        shortcode: str,
        amount: int,
        bill_ref: str | None,
        msisdn: str,
        trans_id: str | None,
        kind: str,
        registration: dict[str, Any],
    ) -> dict[str, Any]:
        hashed = registration.get("version") == 1
        return {
            "TransactionType": "Pay Bill" if kind == "CustomerPayBillOnline" else "Buy Goods",
            "TransID": trans_id or self._new_receipt(),
            "TransTime": _nairobi_now().strftime("%Y%m%d%H%M%S"),
            "TransAmount": f"{amount:.2f}",
            "BusinessShortCode": shortcode,
            "BillRefNumber": bill_ref or "",
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": hashlib.sha256(msisdn.encode()).hexdigest() if hashed else _masked_msisdn(msisdn),
            "FirstName": "JOHN",
            "MiddleName": "",
            "LastName": "",
        }

    def _c2b_validated(self, registration: dict[str, Any], payload: dict[str, Any]) -> bool:
        if not (self.validate_c2b and registration.get("validation_url")):
            return True
        status, answer = self._post(registration["validation_url"], payload)
        if status != 200 or not isinstance(answer, dict) or "ResultCode" not in answer:
            return registration.get("response_type") == "Completed"  # unreachable: the default decides
        if str(answer["ResultCode"]) != "0":
            return False
        if answer.get("ThirdPartyTransID"):
            payload["ThirdPartyTransID"] = str(answer["ThirdPartyTransID"])
        return True

    # --- STK internals -------------------------------------------------------------------------

    def _initial_outcome(self, phone: str, amount: int, fits_shortcode: bool) -> _Outcome:
        chosen = self._outcome_by_phone.get(phone)
        if chosen is not None:
            return _Outcome(**vars(chosen))
        if not fits_shortcode:
            return _Outcome(2028)
        if phone.startswith(TEST_PHONE_PREFIX):
            return _Outcome(int(phone[-5:]))
        if amount > MAX_TRANSACTION_AMOUNT:
            return _Outcome(3)
        return _Outcome(0)

    def _subscriber_locked(self, phone: str) -> bool:
        if not self.enforce_subscriber_lock:
            return False
        now = time.monotonic()
        return any(
            p.phone == phone and not p.is_completed and now - p.pushed_at < SUBSCRIBER_LOCK_S
            for p in self._push_by_id.values()
        )

    def _accept_push(self, body: dict[str, Any], amount: int, fits_shortcode: bool) -> _Push:
        phone = str(body["PhoneNumber"])
        push = _Push(
            checkout_id=self._new_checkout_id(),
            merchant_id=f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(90_000_000) + 10_000_000}-1",
            body=dict(body),
            phone=phone,
            amount=amount,
            outcome=self._initial_outcome(phone, amount, fits_shortcode),
            pushed_at=time.monotonic(),
        )
        push.receipt = push.outcome.receipt or self._new_receipt()
        self._push_by_id[push.checkout_id] = push
        self.pushes.append({**body, "CheckoutRequestID": push.checkout_id, "MerchantRequestID": push.merchant_id})
        self._schedule(push)
        return push

    def _schedule(self, push: _Push) -> None:
        if push.timer is not None:
            push.timer.cancel()
            push.timer = None
        if push.result_code == NEVER_ANSWERS:
            return
        delay = push.outcome.delay_s if push.outcome.delay_s is not None else self.callback_delay_s
        push.timer = threading.Timer(max(0.0, delay), self._complete, args=(push.checkout_id,))
        push.timer.daemon = True
        push.timer.start()

    def _complete(self, checkout_id: str) -> None:
        with self._lock:
            push = self._push_by_id[checkout_id]
            if push.is_completed or self._stopping.is_set():
                return
            push.is_completed = True
            push.timer = None
            if not push.outcome.send_callback:
                return  # a lost callback: only a query will tell
            url, payload = push.body["CallBackURL"], self._callback_payload(push)
        self._post(url, payload)
        if self.c2b_on_stk and push.result_code == 0 and self._c2b_registration(str(push.body["PartyB"])):
            self.simulate_c2b(
                str(push.body["PartyB"]),
                push.outcome.amount or push.amount,
                str(push.body["AccountReference"]),
                msisdn=push.phone,
                trans_id=push.receipt,
                kind=str(push.body["TransactionType"]),
            )

    def _callback_payload(self, push: _Push) -> dict[str, Any]:
        callback: dict[str, Any] = {
            "MerchantRequestID": push.merchant_id,
            "CheckoutRequestID": push.checkout_id,
            "ResultCode": push.result_code,
            "ResultDesc": RESULT_DESCS.get(push.result_code, "The transaction failed."),
        }
        if push.result_code == 0:
            callback["CallbackMetadata"] = {
                "Item": [
                    {"Name": "Amount", "Value": push.outcome.amount or push.amount},
                    {"Name": "MpesaReceiptNumber", "Value": push.receipt},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": int(_nairobi_now().strftime("%Y%m%d%H%M%S"))},
                    {"Name": "PhoneNumber", "Value": int(push.phone)},
                ]
            }
        return {"Body": {"stkCallback": callback}}

    def _query_reply(self, push: _Push) -> tuple[dict[str, Any], int]:
        if push.outcome.pending_queries > 0:
            push.outcome.pending_queries -= 1
            return self._pending_reply(push)
        if not push.is_completed:
            return self._pending_reply(push)
        return {
            "ResponseCode": "0",
            "ResponseDescription": QUERY_ACCEPTED,
            "MerchantRequestID": push.merchant_id,
            "CheckoutRequestID": push.checkout_id,
            "ResultCode": str(push.result_code),
            "ResultDesc": RESULT_DESCS.get(push.result_code, "The transaction failed."),
        }, 200

    def _pending_reply(self, push: _Push) -> tuple[dict[str, Any], int]:
        if push.result_code == NEVER_ANSWERS or self.query_pending_shape == "4999":
            return {"ResultCode": "4999", "ResultDesc": "The transaction is still under processing"}, 200
        return _error_body("500.001.1001", "The transaction is being processed"), 500

    # --- outgoing POSTs ------------------------------------------------------------------------

    def _post(self, url: str, payload: dict[str, Any]) -> tuple[int | None, Any]:
        status: int | None = None
        answer: Any = None
        try:
            response = requests.post(url, json=payload, timeout=self.callback_timeout_s)
            status = response.status_code
            answer = response.json()
        except requests.RequestException as exc:
            log.info("sandbox callback to %s failed: %s", url, type(exc).__name__)
        except ValueError:
            pass  # answered, but not with JSON
        with self._sent:
            self.callbacks_sent.append((url, payload, status))
            self._sent.notify_all()
        return status, answer

    # --- ids -----------------------------------------------------------------------------------

    def _new_checkout_id(self) -> str:
        while True:
            stamp = _nairobi_now().strftime("%d%m%Y%H%M%S")
            candidate = f"ws_CO_{stamp}{secrets.randbelow(10**12):012d}"
            if candidate not in self._used_ids:
                self._used_ids.add(candidate)
                return candidate

    def _new_receipt(self) -> str:
        alphabet = string.ascii_uppercase + string.digits
        with self._lock:
            while True:
                candidate = "T" + "".join(secrets.choice(alphabet) for _ in range(9))
                if candidate not in self._used_ids:
                    self._used_ids.add(candidate)
                    return candidate

    # --- request handling (called by the Flask views below) -------------------------------------

    def _apply_fault(self) -> Response | None:
        with self._lock:
            self.received.append((request.method, request.path))
            mode = self._fail_mode
        if mode == "500":
            return Response("<html><body>Internal Server Error</body></html>", 500, mimetype="text/html")
        if mode == "hang":
            deadline = time.monotonic() + HANG_S
            while self.fail_mode == "hang" and time.monotonic() < deadline:
                if self._stopping.wait(0.05):
                    return Response("", 503)
        return None

    def _authorized(self) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        value = header[len("Bearer ") :].strip()
        now = time.monotonic()
        with self._lock:
            return any(t.value == value and now - t.issued_at < t.ttl_s for t in self._tokens.values())

    def _issue_token(self, consumer_key: str) -> _Token:
        value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(28))
        with self._lock:
            token = _Token(value, time.monotonic(), self.token_ttl_s)
            self._tokens[consumer_key] = token  # the previous token for this key stops working
        return token

    def _check_credentials(self, body: dict[str, Any]) -> tuple[_Shortcode | None, Response | None]:
        """BusinessShortCode, Timestamp and Password, shared by push and query."""
        shortcode = _text(body.get("BusinessShortCode"))
        if shortcode is None or not _SHORTCODE.match(shortcode):
            return None, _bad_request("Invalid BusinessShortCode")
        record = self._shortcodes.get(shortcode)
        if record is None:
            return None, _error("500.001.1001", "Merchant does not exist", 500)
        timestamp = _text(body.get("Timestamp"))
        if timestamp is None or not _timestamp_is_current(timestamp):
            return None, _bad_request("Invalid Timestamp")
        expected = base64.b64encode(f"{shortcode}{record.passkey}{timestamp}".encode()).decode()
        if body.get("Password") != expected:
            return None, _error("500.001.1001", "Wrong credentials", 500)
        return record, None


class CallbackReceiver:
    """A tiny HTTP server that records JSON POSTs: stands in for the portal in tests of the sandbox.

    Answers ``{"ResultCode": 0, "ResultDesc": "Accepted"}`` unless ``answers[path]`` says otherwise.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.received: list[tuple[str, Any]] = []  # (path, parsed JSON body or None)
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self._arrived = threading.Condition()
        self._server: BaseWSGIServer | None = None

    def start(self) -> CallbackReceiver:
        self._server = make_server(self.host, 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CallbackReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, path: str = "/hooks/stk") -> str:
        assert self._server is not None, "start() the receiver first"
        return f"http://{self.host}:{self._server.server_port}{path}"

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[tuple[str, Any]]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wrappers import Request

        incoming = Request(environ)
        body = incoming.get_json(silent=True, force=True)
        with self._arrived:
            self.received.append((incoming.path, body))
            self._arrived.notify_all()
        status, answer = self.answers.get(incoming.path, (200, {"ResultCode": 0, "ResultDesc": "Accepted"}))
        return Response(json.dumps(answer), status, mimetype="application/json")(environ, start_response)


# --- Flask app ----------------------------------------------------------------------------------


def _build_app(sandbox: SandboxDaraja) -> Flask:
    app = Flask("sandbox_daraja")
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.before_request
    def faults() -> Response | None:
        if request.path.startswith("/sandbox"):
            return None
        return sandbox._apply_fault()

    app.add_url_rule("/oauth/v1/generate", "oauth", lambda: _oauth(sandbox), methods=["GET"])
    app.add_url_rule("/mpesa/stkpush/v1/processrequest", "stk_push", lambda: _stk_push(sandbox), methods=["POST"])
    app.add_url_rule("/mpesa/stkpushquery/v1/query", "stk_query", lambda: _stk_query(sandbox), methods=["POST"])
    for version in (1, 2):
        app.add_url_rule(
            f"/mpesa/c2b/v{version}/registerurl",
            endpoint=f"register_v{version}",
            view_func=lambda version=version: _c2b_register(sandbox, version),
            methods=["POST"],
        )
        app.add_url_rule(
            f"/mpesa/c2b/v{version}/simulate",
            endpoint=f"simulate_v{version}",
            view_func=lambda: _c2b_simulate(sandbox),
            methods=["POST"],
        )
    _add_control_routes(app, sandbox)
    add_b2c_routes(app, sandbox)

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        return _error("404.001.01", "Resource not found", 404)

    @app.errorhandler(405)
    def wrong_method(_exc: Exception) -> Response:
        return _error("405.001", "Method Not Allowed", 405)

    return app


def _oauth(sandbox: SandboxDaraja) -> Response:
    with sandbox._lock:
        sandbox.oauth_calls += 1
    if sandbox.token_delay_s:
        time.sleep(sandbox.token_delay_s)
    if request.args.get("grant_type") != "client_credentials":
        return _error("400.008.02", "Invalid grant type passed", 400)
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return _error("400.008.01", "Invalid authentication type passed", 400)
    with sandbox._lock:
        known = auth.username in sandbox._apps and sandbox._apps[auth.username] == auth.password
    if not known:
        return Response(b"", 400)  # production answers a wrong key/secret with an empty 400
    token = sandbox._issue_token(str(auth.username))
    return jsonify({"access_token": token.value, "expires_in": str(token.ttl_s)})


def _json_body() -> tuple[dict[str, Any] | None, Response | None]:
    if request.mimetype != "application/json":
        # Daraja's documented symptom of a missing Content-Type.
        return None, _bad_request("Invalid BusinessShortCode")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return None, _error("400.002.05", "Invalid Request Payload", 400)
    return body, None


def _stk_push(sandbox: SandboxDaraja) -> Response:
    if not sandbox._authorized():
        return _error("404.001.03", "Invalid Access Token", 401)
    body, problem = _json_body()
    if body is None:
        return problem  # type: ignore[return-value]
    with sandbox._lock:
        record, problem = sandbox._check_credentials(body)
        if record is None:
            return problem  # type: ignore[return-value]
        amount, problem = _validate_push_fields(body)
        if problem is not None:
            return problem
        if str(body["PhoneNumber"]) in sandbox.reject_phones:
            return _bad_request("Invalid PhoneNumber")
        if sandbox._subscriber_locked(str(body["PhoneNumber"])):
            return _error(
                "500.001.1001",
                "Unable to lock subscriber, a transaction is already in process for the current subscriber",
                500,
            )
        push = sandbox._accept_push(body, amount, _fits_shortcode(record, body))
    return jsonify(
        {
            "MerchantRequestID": push.merchant_id,
            "CheckoutRequestID": push.checkout_id,
            "ResponseCode": "0",
            "ResponseDescription": PUSH_ACCEPTED,
            "CustomerMessage": PUSH_ACCEPTED,
        }
    )


def _validate_push_fields(body: dict[str, Any]) -> tuple[int, Response | None]:
    if body.get("TransactionType") not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
        return 0, _bad_request("Invalid TransactionType")
    amount = _whole_amount(body.get("Amount"))
    if amount is None or amount < 1:
        return 0, _bad_request("Invalid Amount")
    for name in ("PhoneNumber", "PartyA"):
        if not _MSISDN.match(_text(body.get(name)) or ""):
            return 0, _bad_request(f"Invalid {name}")
    if not _SHORTCODE.match(_text(body.get("PartyB")) or ""):
        return 0, _bad_request("Invalid PartyB")
    if not _url_allowed(body.get("CallBackURL"), _STK_URL_BANNED):
        return 0, _bad_request("Invalid CallBackURL")
    reference = body.get("AccountReference")
    if not isinstance(reference, str) or not 1 <= len(reference) <= 12:
        return 0, _bad_request("Invalid AccountReference")
    remarks = body.get("TransactionDesc")
    if not isinstance(remarks, str) or not 1 <= len(remarks) <= 13:
        return 0, _bad_request("Invalid Remarks")
    return amount, None


def _fits_shortcode(record: _Shortcode, body: dict[str, Any]) -> bool:
    """Paybill: PartyB is the paybill. Till: BusinessShortCode is the store, PartyB one of its tills."""
    party_b = _text(body.get("PartyB"))
    if body["TransactionType"] == "CustomerBuyGoodsOnline":
        return party_b in record.tills
    return not record.tills and party_b == record.number


def _stk_query(sandbox: SandboxDaraja) -> Response:
    arrived = time.monotonic()
    if not sandbox._authorized():
        return _error("404.001.03", "Invalid Access Token", 401)
    body, problem = _json_body()
    if body is None:
        return problem  # type: ignore[return-value]
    with sandbox._lock:
        sandbox.query_arrivals.append((arrived, str(body.get("BusinessShortCode"))))
        record, problem = sandbox._check_credentials(body)
        if record is None:
            return problem  # type: ignore[return-value]
        checkout_id = _text(body.get("CheckoutRequestID")) or ""
        push = sandbox._push_by_id.get(checkout_id)
        if push is None:
            return _bad_request("Invalid CheckoutRequestID")
        sandbox.query_calls[checkout_id] = sandbox.query_calls.get(checkout_id, 0) + 1
        reply, status = sandbox._query_reply(push)
    response = jsonify(reply)
    response.status_code = status
    return response


def _c2b_register(sandbox: SandboxDaraja, version: int) -> Response:
    if not sandbox._authorized():
        return _error("404.001.03", "Invalid Access Token", 401)
    body, problem = _json_body()
    if body is None:
        return problem  # type: ignore[return-value]
    shortcode = _text(body.get("ShortCode")) or ""
    if not sandbox._is_known_shortcode(shortcode):
        return _bad_request("Invalid ShortCode")
    if body.get("ResponseType") not in ("Completed", "Cancelled"):
        return _bad_request("Invalid ResponseType")
    for name in ("ConfirmationURL", "ValidationURL"):
        if not _url_allowed(body.get(name), _C2B_URL_BANNED):
            return _bad_request(f"Invalid {name}")
    # Re-registering simply replaces the URLs, as on Safaricom's sandbox (production: one-time).
    sandbox.register_c2b_urls(
        shortcode, body["ConfirmationURL"], body["ValidationURL"], response_type=body["ResponseType"], version=version
    )
    return jsonify(
        {"OriginatorCoversationID": _conversation_id(), "ResponseCode": "0", "ResponseDescription": "Success"}
    )


def _c2b_simulate(sandbox: SandboxDaraja) -> Response:
    if not sandbox._authorized():
        return _error("404.001.03", "Invalid Access Token", 401)
    body, problem = _json_body()
    if body is None:
        return problem  # type: ignore[return-value]
    amount = _whole_amount(body.get("Amount"))
    if amount is None or amount < 1:
        return _bad_request("Invalid Amount")
    shortcode = _text(body.get("ShortCode")) or ""
    if not sandbox._is_known_shortcode(shortcode):
        return _bad_request("Invalid ShortCode")
    command = body.get("CommandID", "CustomerPayBillOnline")
    msisdn = _text(body.get("Msisdn")) or SANDBOX_TEST_MSISDN
    bill_ref = _text(body.get("BillRefNumber"))
    registration = sandbox._c2b_registration(shortcode)
    if registration is not None:  # with no URLs registered M-Pesa completes the payment and tells nobody
        # Answer first, deliver afterwards, like Daraja.
        timer = threading.Timer(
            0.05, sandbox._deliver_c2b, args=(shortcode, amount, bill_ref, msisdn, None, command, registration)
        )
        timer.daemon = True
        timer.start()
    return jsonify(
        {
            "OriginatorCoversationID": _conversation_id(),
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }
    )


# --- human control page -------------------------------------------------------------------------

_ACTIONS = {"approve": 0, "cancel": 1032, "timeout": 1037, "wrong_pin": 2001, "no_funds": 1}


def _add_control_routes(app: Flask, sandbox: SandboxDaraja) -> None:
    @app.get("/sandbox")
    def control_page() -> Response:
        return Response(_control_html(sandbox), mimetype="text/html")

    @app.post("/sandbox/pushes/<checkout_id>/<action>")
    def decide_push(checkout_id: str, action: str) -> Response:
        if action not in _ACTIONS or checkout_id not in sandbox._push_by_id:
            return Response("unknown push or action", 404)
        sandbox.set_outcome(checkout_id, _ACTIONS[action], delay_s=0)
        return redirect("/sandbox", code=303)  # type: ignore[return-value]

    @app.post("/sandbox/c2b")
    def pay_c2b() -> Response:
        amount = _whole_amount(request.form.get("amount"))
        if amount is None or amount < 1:
            return Response("amount must be a whole number of shillings", 400)
        shortcode = request.form.get("shortcode") or SANDBOX_SHORTCODE
        if sandbox._c2b_registration(shortcode) is None:
            return Response(f"no C2B URLs registered for {html.escape(shortcode)}", 409)
        threading.Thread(
            target=sandbox.simulate_c2b, args=(shortcode, amount, request.form.get("account") or None), daemon=True
        ).start()
        return redirect("/sandbox", code=303)  # type: ignore[return-value]

    @app.get("/sandbox/state.json")
    def state() -> Response:
        with sandbox._lock:
            pushes = [{**sandbox.push_status(p["CheckoutRequestID"]), **p} for p in sandbox.pushes[-50:]]
            return jsonify({"pushes": pushes, "callbacks_sent": len(sandbox.callbacks_sent)})


def _control_html(sandbox: SandboxDaraja) -> str:
    with sandbox._lock:
        recent = list(reversed(sandbox.pushes[-20:]))
        rows = "".join(_push_row(p, sandbox._push_by_id[p["CheckoutRequestID"]]) for p in recent)
        shortcodes = sorted({*sandbox._shortcodes, *sandbox._store_of_till})
    options = "".join(f"<option>{html.escape(code)}</option>" for code in shortcodes)
    return (
        "<!doctype html><meta charset=utf-8><title>Sandbox Daraja</title>"
        "<style>body{font:14px sans-serif;margin:1em}td,th{padding:4px 8px;text-align:left}</style>"
        "<h1>Sandbox Daraja</h1><h2>STK pushes</h2>"
        "<table><tr><th>CheckoutRequestID</th><th>phone</th><th>KES</th><th>ref</th><th>result</th><th></th></tr>"
        f"{rows or '<tr><td colspan=6>none yet</td></tr>'}</table>"
        "<h2>Customer pays directly (C2B)</h2><form method=post action=/sandbox/c2b>"
        f"<select name=shortcode>{options}</select> "
        "<input name=amount type=number min=1 placeholder=amount required> "
        "<input name=account placeholder='account number'> <button>Pay</button></form>"
    )


def _push_row(body: dict[str, Any], push: _Push) -> str:
    checkout_id = html.escape(push.checkout_id)
    state = f"{push.result_code} sent" if push.is_completed else "waiting"
    buttons = "".join(
        f"<form method=post action='/sandbox/pushes/{checkout_id}/{action}' style=display:inline>"
        f"<button>{action}</button></form>"
        for action in ("approve", "cancel", "timeout")
    )
    return (
        f"<tr><td>{checkout_id}</td><td>{html.escape(push.phone)}</td><td>{push.amount}</td>"
        f"<td>{html.escape(str(body.get('AccountReference', '')))}</td><td>{state}</td>"
        f"<td>{'' if push.is_completed else buttons}</td></tr>"
    )


# --- small helpers ------------------------------------------------------------------------------


def _error_body(code: str, message: str) -> dict[str, str]:
    request_id = f"{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(8)}"
    return {"requestId": request_id, "errorCode": code, "errorMessage": message}


def _error(code: str, message: str, status: int) -> Response:
    response = jsonify(_error_body(code, message))
    response.status_code = status
    return response


def _bad_request(what: str) -> Response:
    return _error("400.002.02", f"Bad Request - {what}", 400)


def _conversation_id() -> str:
    return f"{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(10)}"


def _text(value: object) -> str | None:
    """Daraja accepts numbers or numeric strings for codes and MSISDNs."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip()


def _whole_amount(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _url_allowed(value: object, banned: tuple[str, ...]) -> bool:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        return False
    lowered = value.lower()
    return not any(word in lowered for word in banned)


def _timestamp_is_current(timestamp: str) -> bool:
    if not _TIMESTAMP.match(timestamp):
        return False
    try:
        sent = datetime.strptime(timestamp, "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    except ValueError:
        return False
    return abs(sent - _nairobi_now()) <= timedelta(hours=1)


def _nairobi_now() -> datetime:
    return datetime.now(NAIROBI)


def _masked_msisdn(msisdn: str) -> str:
    """v2 C2B masking: ``254708374149`` → ``2547 ***** 149``."""
    return f"{msisdn[:4]} ***** {msisdn[-3:]}"


def _phone_key(phone: str) -> str:
    try:
        return normalise_phone(phone)
    except InvalidPhoneNumber:
        raise ValueError(f"{phone!r} is neither a known CheckoutRequestID nor a phone number") from None

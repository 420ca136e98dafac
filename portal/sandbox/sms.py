"""A local stand-in for Africa's Talking's SMS API, served over real HTTP on 127.0.0.1.

It speaks the provider's documented shape (reference/sms.md): a form POST to
``/version1/messaging`` (``username``, ``to``, ``message``, ``from``) with the ``apiKey`` header,
answered 201 with ``SMSMessageData.Recipients[]`` (``statusCode``, ``number``, ``status``,
``cost``, ``messageId``) and ``Content-Type: application/json`` exactly; a wrong key gets 401. It
then POSTs a delivery report (form: ``id``, ``status``, ``phoneNumber``, ``networkCode``,
``failureReason``) to ``report_url``, as the provider does to the URL in its dashboard.

Outcomes by number (the last three digits of ``to``):
  * ``…111``: the report says Failed (failureReason DeliveryFailure);
  * ``…222``: never reported (the message stays "sent");
  * ``…333``: refused at once with statusCode 403 InvalidPhoneNumber;
  * anything else: delivered (report Success).
Knobs: ``fail_next(n)`` answers the next n sends with a bare HTTP 500 (nothing was sent);
``rate_per_s`` refuses sends over that rate with HTTP 429 (invented: the provider publishes no
figure); ``report_delay_s``. Cost: KES 0.8000 per part.

``GET /`` is a page listing the messages "sent", with their outcome; ``GET /messages.json`` the
same for tests and the bench. Nothing happens at import time; ``start()`` opens the socket.
"""

from __future__ import annotations

import html
import itertools
import logging
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ..notify import gsm7

log = logging.getLogger("portal.sandbox.sms")

SANDBOX_USERNAME = "sandbox"
SANDBOX_API_KEY = "atsk_sandbox_local_key"
_NUMBER = re.compile(r"^\+\d{1,3}\d{3,}$")
COST_PER_PART = "0.8000"


@dataclass
class SentMessage:
    message_id: str
    username: str
    sender: str
    to: str
    text: str
    parts: int
    status_code: int
    outcome: str  # delivered | failed | never reported | refused
    sent_at: float
    report: str | None = None  # the report status we posted, once posted
    report_answer: int | None = None  # the HTTP status the portal answered it with


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SandboxSmsGateway:
    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, report_delay_s: float = 0.2, rate_per_s: float | None = None
    ) -> None:
        self.accounts: dict[str, str] = {SANDBOX_USERNAME: SANDBOX_API_KEY}
        self.messages: list[SentMessage] = []
        self.report_url: str | None = None
        self.report_delay_s = report_delay_s
        self.rate_per_s = rate_per_s
        self.refused_for_rate = 0
        self._fail_next = 0
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: BaseWSGIServer = make_server(
            host, port, _build_app(self), threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-sms", daemon=True)

    def start(self) -> SandboxSmsGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SandboxSmsGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def add_account(self, username: str, api_key: str) -> None:
        self.accounts[username] = api_key

    def fail_next(self, count: int = 1) -> None:
        with self._lock:
            self._fail_next = count

    def sent_to(self, number: str) -> list[SentMessage]:
        wanted = number if number.startswith("+") else "+" + number
        with self._lock:
            return [m for m in self.messages if m.to == wanted]

    def wait_for(self, count: int = 1, timeout: float = 10.0, *, reported: bool = False) -> list[SentMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = [m for m in self.messages if not reported or m.report or m.outcome != "delivered"]
                if len(done) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"the SMS gateway got {len(self.messages)} messages, not {count}, within {timeout} s")

    # --- the API ------------------------------------------------------------------------------

    def _take(self, username: str, sender: str, numbers: list[str], text: str) -> list[SentMessage]:
        parts = gsm7.parts(text)
        taken = []
        with self._lock:
            for number in numbers:
                outcome = _outcome_for(number)
                code = 403 if outcome == "refused" else 101
                message = SentMessage(
                    f"ATXid_{next(self._ids)}_{secrets.token_hex(6)}",
                    username,
                    sender,
                    number,
                    text,
                    parts,
                    code,
                    outcome,
                    time.time(),
                )
                self.messages.append(message)
                taken.append(message)
        for message in taken:
            if message.outcome in ("delivered", "failed") and self.report_url:
                threading.Timer(self.report_delay_s, self._report, args=(message,)).start()
        return taken

    def _over_rate(self) -> bool:
        if not self.rate_per_s:
            return False
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] > 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.rate_per_s:
                self.refused_for_rate += 1
                return True
            self._recent.append(now)
            return False

    def _take_failure(self) -> bool:
        with self._lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                return True
            return False

    def _report(self, message: SentMessage) -> None:
        status = "Success" if message.outcome == "delivered" else "Failed"
        form = {"id": message.message_id, "status": status, "phoneNumber": message.to, "networkCode": "63902"}
        if status == "Failed":
            form["failureReason"] = "DeliveryFailure"
        try:
            answer = requests.post(self.report_url or "", data=form, timeout=5)
            code: int | None = answer.status_code
        except requests.RequestException as exc:
            log.warning("delivery report for %s not delivered: %s", message.message_id, exc)
            code = None
        with self._lock:
            message.report, message.report_answer = status, code


def _outcome_for(number: str) -> str:
    if number.endswith("111"):
        return "failed"
    if number.endswith("222"):
        return "never reported"
    if number.endswith("333"):
        return "refused"
    return "delivered"


def _build_app(gateway: SandboxSmsGateway) -> Flask:
    app = Flask("sandbox_sms")

    @app.post("/version1/messaging")
    def send() -> Response:
        username = request.form.get("username", "")
        if not username or gateway.accounts.get(username) != request.headers.get("apiKey"):
            return Response("The supplied authentication is invalid", status=401, content_type="text/plain")
        if gateway._take_failure():
            return Response("Internal Server Error", status=500, content_type="text/plain")
        if gateway._over_rate():
            return Response("Too many requests", status=429, content_type="text/plain")
        text = request.form.get("message", "")
        numbers = [n.strip() for n in request.form.get("to", "").split(",") if n.strip()]
        if not text or not numbers:
            return _json({"SMSMessageData": {"Message": "InvalidRequest", "Recipients": []}}, 400)
        good = [n for n in numbers if _NUMBER.match(n)]
        taken = gateway._take(username, request.form.get("from", "AFRICASTKNG"), good, text)
        recipients = [_recipient(m) for m in taken]
        recipients += [
            {"statusCode": 403, "number": n, "status": "InvalidPhoneNumber", "cost": "0", "messageId": "None"}
            for n in numbers
            if n not in good
        ]
        sent = [m for m in taken if m.status_code == 101]
        total = f"KES {float(COST_PER_PART) * sum(m.parts for m in sent):.4f}"
        return _json(
            {
                "SMSMessageData": {
                    "Message": f"Sent to {len(sent)}/{len(numbers)} Total Cost: {total}",
                    "Recipients": recipients,
                }
            },
            201,
        )

    @app.get("/")
    def page() -> Response:
        return Response(_page_html(gateway), content_type="text/html; charset=utf-8")

    @app.get("/messages.json")
    def messages() -> Response:
        with gateway._lock:
            rows = [vars(m).copy() for m in gateway.messages]
        return jsonify(rows)

    return app


def _recipient(message: SentMessage) -> dict[str, Any]:
    if message.status_code != 101:
        return {
            "statusCode": message.status_code,
            "number": message.to,
            "status": "InvalidPhoneNumber",
            "cost": "0",
            "messageId": "None",
        }
    return {
        "statusCode": 101,
        "number": message.to,
        "status": "Success",
        "cost": f"KES {float(COST_PER_PART) * message.parts:.4f}",
        "messageId": message.message_id,
    }


def _json(body: dict[str, Any], status: int) -> Response:
    import json

    # Exactly "application/json": the official SDK hands back a str for anything else.
    return Response(json.dumps(body), status=status, content_type="application/json")


def _page_html(gateway: SandboxSmsGateway) -> str:
    with gateway._lock:
        rows = list(reversed(gateway.messages))
    lines = "".join(
        f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(m.sent_at))}</td><td>{html.escape(m.to)}</td>"
        f"<td>{html.escape(m.sender)}</td><td>{html.escape(m.text)}</td><td>{m.parts}</td>"
        f"<td>{html.escape(m.outcome)}</td><td>{html.escape(m.report or '—')}</td></tr>"
        for m in rows
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Sandbox SMS gateway</title>"
        "<meta http-equiv=refresh content=5>"
        "<h1>Sandbox SMS gateway</h1><p>Messages “sent” through the stand-in for Africa's Talking. Outcome by the "
        "number's last digits: …111 failed, …222 never reported, …333 refused, anything else delivered.</p>"
        f"<table border=1 cellpadding=4><tr><th>time</th><th>to</th><th>from</th><th>text</th><th>parts</th>"
        f"<th>outcome</th><th>report</th></tr>{lines}</table>"
    )

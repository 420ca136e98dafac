"""The sandbox Daraja's B2C (v3 BusinessPayment) and Transaction Status, with their callbacks.

It has its own M-Pesa "certificate" (a key pair made once per process): point
``PORTAL_B2C_CERT_SANDBOX`` at ``certificate_pem`` written to a file, and the sandbox decrypts each
SecurityCredential with the private key and checks it against the initiator added with
``add_initiator``. A wrong name or password gets ResultCode 2001, as Daraja does.

Outcomes by recipient number (PartyB), like the STK test numbers:
  * any other valid number: paid (ResultCode 0) after ``result_delay_s``;
  * ``INSUFFICIENT_FUNDS`` 254700100001: ResultCode 1, the B2C (utility) account is short;
  * ``INVALID_INITIATOR`` 254700102001: ResultCode 2001, whatever the credential;
  * ``TIMEOUT_THEN_SUCCESS`` 254700100900: a QueueTimeOut call instead of a Result; the money did
    move (Transaction Status says Completed) and the Result comes late (``late_result_delay_s``,
    or ``send_late_results()``);
  * ``LATE_DUPLICATE`` 254700100901: paid, and the same Result delivered again later;
  * ``LOST_ONCE`` 254700100902: the first request to it is acknowledged and then lost inside
    "M-Pesa": no Result, and Transaction Status answers 2032 (no such transaction); later requests
    are paid. ``release_lost()`` makes the lost ones real after all (their Results come then).

A second request with a seen OriginatorConversationID gets HTTP 500 ``500.002.1001``.
"""

from __future__ import annotations

import base64
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from flask import Flask, Response, jsonify, request

# The SandboxDaraja this extends is typed Any here: importing it would close an import circle.
SandboxDaraja = Any

INSUFFICIENT_FUNDS = "254700100001"
INVALID_INITIATOR = "254700102001"
TIMEOUT_THEN_SUCCESS = "254700100900"
LATE_DUPLICATE = "254700100901"
LOST_ONCE = "254700100902"
_MSISDN = re.compile(r"^254[17]\d{8}$")
_URL_BANNED = ("mpesa", "m-pesa", "safaricom", "exe", "cmd", "sql", "query")

RESULT_DESCS = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule: less than the minimum transaction amount.",
    2001: "The initiator information is invalid.",
    2032: "Request not found",
}

_keypair_lock = threading.Lock()
_keypair: tuple[rsa.RSAPrivateKey, bytes] | None = None


def sandbox_keypair() -> tuple[rsa.RSAPrivateKey, bytes]:
    """One RSA key and self-signed certificate per process (generating one takes a moment)."""
    global _keypair
    with _keypair_lock:
        if _keypair is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apicrypt.sandbox.local")])
            now = datetime.now(UTC)
            cert = (
                x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=3650)).sign(key, hashes.SHA256())
            )
            _keypair = (key, cert.public_bytes(serialization.Encoding.PEM))
        return _keypair


@dataclass
class _Transfer:
    originator_id: str
    conversation_id: str
    body: dict[str, Any]
    result_code: int
    receipt: str
    created_at: float = field(default_factory=time.monotonic)
    result_sent: int = 0
    timer: threading.Timer | None = field(default=None, repr=False)

    @property
    def moved_money(self) -> bool:
        return self.result_code == 0


class SandboxB2C:
    def __init__(self, daraja: SandboxDaraja) -> None:
        self.daraja = daraja
        self.result_delay_s = 0.2
        self.late_result_delay_s: float | None = 2.0  # None: only send_late_results() sends them
        self.payments: list[dict[str, Any]] = []  # every accepted BusinessPayment request body
        self.status_queries: list[dict[str, Any]] = []
        self._initiators: dict[str, tuple[str, str]] = {}  # shortcode -> (name, password)
        self._by_originator: dict[str, _Transfer] = {}
        self._late: list[_Transfer] = []
        self._lost: list[_Transfer] = []
        self._lost_numbers: set[str] = set()

    # --- configuration and control ---

    @property
    def certificate_pem(self) -> bytes:
        return sandbox_keypair()[1]

    def add_initiator(self, shortcode: str, name: str, password: str) -> None:
        with self.daraja._lock:
            self._initiators[str(shortcode)] = (name, password)

    def send_late_results(self) -> int:
        """Deliver the held (late) Results now; returns how many."""
        with self.daraja._lock:
            late, self._late = self._late, []
        for transfer in late:
            self._send_result(transfer)
        return len(late)

    def release_lost(self) -> int:
        """The lost requests turn up after all: each is paid and its Result sent. Returns how many."""
        with self.daraja._lock:
            lost, self._lost = self._lost, []
            for transfer in lost:
                self._by_originator[transfer.originator_id] = transfer
        for transfer in lost:
            self._send_result(transfer)
        return len(lost)

    def transfer(self, originator_id: str) -> dict[str, Any] | None:
        with self.daraja._lock:
            t = self._by_originator.get(originator_id)
            return None if t is None else {"result_code": t.result_code, "receipt": t.receipt,
                                           "results_sent": t.result_sent, "phone": t.body.get("PartyB")}

    def stop(self) -> None:
        with self.daraja._lock:
            for t in self._by_originator.values():
                if t.timer is not None:
                    t.timer.cancel()

    # --- internals ---

    def _credential_ok(self, shortcode: str, name: str, credential: str) -> bool:
        known = self._initiators.get(shortcode)
        if known is None or known[0] != name:
            return False
        try:
            plain = sandbox_keypair()[0].decrypt(base64.b64decode(credential), padding.PKCS1v15())
        except ValueError:
            return False
        return plain.decode("utf-8", "replace") == known[1]

    def _outcome(self, body: dict[str, Any]) -> int:
        phone = str(body["PartyB"])
        if phone == INVALID_INITIATOR or not self._credential_ok(
            str(body["PartyA"]), str(body["InitiatorName"]), str(body["SecurityCredential"])
        ):
            return 2001
        if phone == INSUFFICIENT_FUNDS:
            return 1
        if int(body["Amount"]) < 10:
            return 2
        return 0

    def _accept(self, body: dict[str, Any]) -> _Transfer:
        transfer = _Transfer(
            originator_id=str(body["OriginatorConversationID"]),
            conversation_id=f"AG_{datetime.now(UTC):%Y%m%d}_{secrets.token_hex(10)}",
            body=dict(body), result_code=self._outcome(body), receipt=self.daraja._new_receipt(),
        )
        phone = str(body["PartyB"])
        self.payments.append(dict(body))
        if phone == LOST_ONCE and phone not in self._lost_numbers and transfer.result_code == 0:
            self._lost_numbers.add(phone)
            self._lost.append(transfer)  # acknowledged, then nothing: no Result, unknown to Transaction Status
            return transfer
        self._by_originator[transfer.originator_id] = transfer
        if phone == TIMEOUT_THEN_SUCCESS and transfer.result_code == 0:
            self._later(self.result_delay_s, self._send_timeout, transfer)
            self._late.append(transfer)
            if self.late_result_delay_s is not None:
                self._later(self.late_result_delay_s, lambda t: self._take_late(t) and self._send_result(t), transfer)
        else:
            self._later(self.result_delay_s, self._send_result, transfer)
            if phone == LATE_DUPLICATE:
                self._later(self.result_delay_s + (self.late_result_delay_s or 1.0), self._send_result, transfer)
        return transfer

    def _take_late(self, transfer: _Transfer) -> bool:
        with self.daraja._lock:
            if transfer in self._late:
                self._late.remove(transfer)
                return True
            return False

    def _later(self, delay: float, action: Any, transfer: _Transfer) -> None:
        timer = threading.Timer(max(0.0, delay), lambda: None if self.daraja._stopping.is_set() else action(transfer))
        timer.daemon = True
        transfer.timer = timer
        timer.start()

    def _send_timeout(self, transfer: _Transfer) -> None:
        self.daraja._post(str(transfer.body["QueueTimeOutURL"]), {"Result": {
            "ResultType": 0, "ResultCode": "SVC0403", "ResultDesc": "Request timed out while awaiting processing",
            "OriginatorConversationID": transfer.originator_id, "ConversationID": transfer.conversation_id,
        }})

    def _send_result(self, transfer: _Transfer) -> None:
        with self.daraja._lock:
            transfer.result_sent += 1
        self.daraja._post(str(transfer.body["ResultURL"]), self._result_payload(transfer))

    def _result_payload(self, transfer: _Transfer) -> dict[str, Any]:
        code = transfer.result_code
        result: dict[str, Any] = {
            "ResultType": 0, "ResultCode": code, "ResultDesc": RESULT_DESCS.get(code, "The transaction failed."),
            "OriginatorConversationID": transfer.originator_id, "ConversationID": transfer.conversation_id,
            "TransactionID": transfer.receipt,
            "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://internalsandbox.local/"}},
        }
        if code == 0:
            stamp = datetime.now(UTC) + timedelta(hours=3)
            result["ResultParameters"] = {"ResultParameter": [
                {"Key": "TransactionAmount", "Value": int(transfer.body["Amount"])},
                {"Key": "TransactionReceipt", "Value": transfer.receipt},
                {"Key": "ReceiverPartyPublicName", "Value": f"{transfer.body['PartyB']} - John Doe"},
                {"Key": "TransactionCompletedDateTime", "Value": stamp.strftime("%d.%m.%Y %H:%M:%S")},
                {"Key": "B2CUtilityAccountAvailableFunds", "Value": 100000.00},
                {"Key": "B2CWorkingAccountAvailableFunds", "Value": 900000.00},
                {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"},
                {"Key": "B2CChargesPaidAccountAvailableFunds", "Value": -4510.00},
            ]}
        return {"Result": result}

    def _status_result(self, body: dict[str, Any], query_originator: str, query_conversation: str) -> dict[str, Any]:
        original = str(body.get("OriginalConversationID") or "")
        receipt = str(body.get("TransactionID") or "")
        with self.daraja._lock:
            transfer = self._by_originator.get(original) or next(
                (t for t in self._by_originator.values() if receipt and t.receipt == receipt), None)
        outer = {"ResultType": 0, "OriginatorConversationID": query_originator, "ConversationID": query_conversation,
                 "TransactionID": secrets.token_hex(5).upper()}
        if transfer is None:
            return {"Result": {**outer, "ResultCode": 2032, "ResultDesc": RESULT_DESCS[2032]}}
        status = "Completed" if transfer.moved_money else "Declined"
        params = [
            {"Key": "ReceiptNo", "Value": transfer.receipt},
            {"Key": "Amount", "Value": int(transfer.body["Amount"])},
            {"Key": "TransactionStatus", "Value": status},
            {"Key": "ReasonType", "Value": "Business Payment to Customer via API"},
            {"Key": "FinalisedTime", "Value": int((datetime.now(UTC) + timedelta(hours=3)).strftime("%Y%m%d%H%M%S"))},
            {"Key": "OriginatorConversationID", "Value": transfer.originator_id},
            {"Key": "ConversationID", "Value": transfer.conversation_id},
            {"Key": "DebitPartyName", "Value": f"{transfer.body['PartyA']} - Sandbox B2C"},
            {"Key": "CreditPartyName", "Value": f"{transfer.body['PartyB']} - John Doe"},
        ]
        return {"Result": {**outer, "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
                           "ResultParameters": {"ResultParameter": params}}}


# --- HTTP ---------------------------------------------------------------------------------------


def add_b2c_routes(app: Flask, daraja: SandboxDaraja) -> None:
    app.add_url_rule("/mpesa/b2c/v3/paymentrequest", "b2c_v3", lambda: _payment_request(daraja), methods=["POST"])
    app.add_url_rule("/mpesa/transactionstatus/v1/query", "transaction_status",
                     lambda: _status_query(daraja), methods=["POST"])


def _error(code: str, message: str, status: int) -> Response:
    response = jsonify({"requestId": secrets.token_hex(8), "errorCode": code, "errorMessage": message})
    response.status_code = status
    return response


def _url_ok(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and not any(
        word in value.lower() for word in _URL_BANNED)


def _payment_request(daraja: SandboxDaraja) -> Response:
    if not daraja._authorized():
        return _error("404.001.03", "Invalid Access Token", 401)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error("400.002.02", "Bad Request - Invalid InitiatorName", 400)  # Daraja's answer to a bad body
    b2c = daraja.b2c
    originator = body.get("OriginatorConversationID")
    amount = body.get("Amount")
    checks = (
        (isinstance(originator, str) and 1 <= len(originator) <= 64, "OriginatorConversationID"),
        (isinstance(body.get("InitiatorName"), str) and body["InitiatorName"], "InitiatorName"),
        (isinstance(body.get("SecurityCredential"), str) and body["SecurityCredential"], "SecurityCredential"),
        (body.get("CommandID") in ("BusinessPayment", "SalaryPayment", "PromotionPayment"), "CommandID"),
        (str(amount).isdigit() and 1 <= int(str(amount)) <= 250_000, "Amount"),
        (str(body.get("PartyA", "")) in b2c._initiators, "PartyA"),
        (bool(_MSISDN.match(str(body.get("PartyB", "")))), "PartyB"),
        (isinstance(body.get("Remarks"), str) and 2 <= len(body["Remarks"]) <= 100, "Remarks"),
        (_url_ok(body.get("QueueTimeOutURL")), "QueueTimeOutURL"),
        (_url_ok(body.get("ResultURL")), "ResultURL"),
    )
    for ok, name in checks:
        if not ok:
            return _error("400.002.02", f"Bad Request - Invalid {name}", 400)
    with daraja._lock:
        if originator in b2c._by_originator:
            return _error("500.002.1001", "Duplicate OriginatorConversationID.", 500)
        transfer = b2c._accept(body)
    return jsonify({"ConversationID": transfer.conversation_id, "OriginatorConversationID": transfer.originator_id,
                    "ResponseCode": "0", "ResponseDescription": "Accept the service request successfully."})


def _status_query(daraja: SandboxDaraja) -> Response:
    if not daraja._authorized():
        return _error("404.001.03", "Invalid Access Token", 401)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("CommandID") != "TransactionStatusQuery":
        return _error("400.002.02", "Bad Request - Invalid CommandID", 400)
    if not (body.get("TransactionID") or body.get("OriginalConversationID")):
        return _error("400.002.02", "Bad Request - Invalid TransactionID", 400)
    if not (_url_ok(body.get("ResultURL")) and _url_ok(body.get("QueueTimeOutURL"))):
        return _error("400.002.02", "Bad Request - Invalid ResultURL", 400)
    query_originator = "".join(secrets.choice(string.digits) for _ in range(5)) + "-" + secrets.token_hex(4)
    query_conversation = f"AG_{datetime.now(UTC):%Y%m%d}_{secrets.token_hex(10)}"
    b2c = daraja.b2c
    with daraja._lock:
        b2c.status_queries.append(dict(body))
    payload = b2c._status_result(body, query_originator, query_conversation)
    timer = threading.Timer(b2c.result_delay_s, lambda: None if daraja._stopping.is_set()
                            else daraja._post(str(body["ResultURL"]), payload))
    timer.daemon = True
    timer.start()
    return jsonify({"OriginatorConversationID": query_originator, "ConversationID": query_conversation,
                    "ResponseCode": "0", "ResponseDescription": "Accept the service request successfully."})

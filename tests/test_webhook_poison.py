"""Bodies that parse badly jam nothing: kept raw, answered 200, and never in the way of real money.

Run on PostgreSQL too (TEST_DATABASE_URL): NUL is the one character its text columns refuse.
"""

from __future__ import annotations

import json
from typing import Any

import requests
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Payment, WebhookLog

from .test_purchase_flow import _buy, _initiation, _post_callback

SILENT_PHONE = "0700 099 999"
DEEP = b"[" * 20000 + b"]" * 20000  # valid JSON, nested far past the parser's recursion limit


def _c2b_body(trans_id: str, bill_ref: str, amount: str = "50.00") -> dict[str, Any]:
    return {"TransactionType": "Pay Bill", "TransID": trans_id, "TransTime": "20231121121325",
            "TransAmount": amount, "BusinessShortCode": "174379", "BillRefNumber": bill_ref,
            "MSISDN": "2547 ***** 126", "FirstName": "X"}


def _post(app, token: str, path: str, data: bytes) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(f"{app.live_url}/hooks/{token}/{path}", data=data,
                         headers={"Content-Type": "application/json"}, timeout=10)


def test_deeply_nested_json_on_a_valid_token_is_kept_and_answered_200(app, shop):
    for path in ("stk", "c2b/confirm", "c2b/validate"):
        answer = _post(app, shop.paybill.webhook_token, path, DEEP)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        assert "ResultCode" in answer.json()

    entries = db.session.scalars(sa.select(WebhookLog).order_by(WebhookLog.id)).all()
    assert len(entries) == 3
    assert all(e.payload.startswith("[[[[") for e in entries)  # kept raw
    assert {e.status for e in entries} == {"rejected"}  # nothing left for the reprocessing job


def test_a_nul_escape_in_c2b_fields_is_stored_and_the_money_kept(app, shop):
    raw = json.dumps(_c2b_body("NULBYTE001", "AB\u0000CD")).encode()
    assert b"\\u0000" in raw

    answer = _post(app, shop.paybill.webhook_token, "c2b/confirm", raw)

    assert answer.status_code == 200 and answer.json()["ResultCode"] == 0
    entry = db.session.scalars(sa.select(WebhookLog)).one()
    assert entry.status == "processed", entry.error
    assert "\\u0000" in entry.payload  # the raw body, exactly as sent
    payment = db.session.scalars(sa.select(Payment).where(Payment.receipt == "NULBYTE001")).one()
    assert payment.status == "unmatched" and payment.amount == 50
    assert "\x00" not in (payment.bill_ref or "")


def test_a_nul_escape_in_a_genuine_failure_callback_still_records_it(app, shop, customer, daraja):
    cancelled = _buy(customer, shop, phone=SILENT_PHONE)
    failure = {"Body": {"stkCallback": {"MerchantRequestID": "\u0000", "ResultCode": 1032,
                                        "CheckoutRequestID": _initiation(cancelled).checkout_request_id,
                                        "ResultDesc": "Request cancelled\u0000 by user"}}}

    answer = _post_callback(app, shop.paybill.webhook_token, failure)

    assert answer.status_code == 200 and answer.json()["ResultCode"] == 0
    assert _initiation(cancelled).status == "failed"
    assert "\x00" not in _initiation(cancelled).result_desc
    entry = db.session.scalars(sa.select(WebhookLog)).one()
    assert entry.status == "processed", entry.error

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


def test_a_nul_in_a_callbacks_checkout_id_is_rejected_not_left_failing(app, shop):
    # PostgreSQL refuses a NUL even in a lookup: the row used to fail, and fail again on every retry.
    body = {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_\u0000", "ResultCode": 0}}}

    answer = _post_callback(app, shop.paybill.webhook_token, body)

    assert answer.status_code == 200 and answer.json()["ResultCode"] == 0
    entry = db.session.scalars(sa.select(WebhookLog)).one()
    assert entry.status == "rejected" and "NUL" in entry.error


def test_a_nul_in_b2c_callback_ids_is_kept_and_matches_nothing(app, shop):
    result = {"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "done\u0000",
                         "OriginatorConversationID": "oc-\u0000", "ConversationID": "c-\u0000",
                         "TransactionID": "T\u0000", "ResultParameters": {"ResultParameter": [
                             {"Key": "OriginatorConversationID", "Value": "oc-\u0000"},
                             {"Key": "TransactionStatus", "Value": "Completed\u0000"}]}}}
    for path in ("b2c/result", "b2c/timeout", "b2c/status", "b2c/status-timeout"):
        answer = _post(app, shop.paybill.webhook_token, path, json.dumps(result).encode())
        assert answer.status_code == 200 and answer.json()["ResultCode"] == 0

    entries = db.session.scalars(sa.select(WebhookLog).order_by(WebhookLog.id)).all()
    assert len(entries) == 4
    assert {e.status for e in entries} <= {"ignored", "processed"}, [(e.kind, e.status, e.error) for e in entries]


def test_a_nul_in_an_sms_delivery_report_is_kept_and_answered(app):
    from portal.models import SmsDeliveryReport
    from portal.notify import delivery

    answer = requests.post(f"{app.live_url}/hooks/sms/{delivery.report_token()}/delivery",
                           data=b"id=ATX%00b&status=Success%00&failureReason=%00", timeout=10,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert answer.status_code == 200 and answer.text == "OK"
    report = db.session.scalars(sa.select(SmsDeliveryReport)).one()
    assert report.status == "unmatched" and "\x00" not in report.message_id


def test_a_nul_in_a_url_is_not_found_never_a_crash(app, shop):
    for path in ("/r/a%00b", "/p/a%00b", "/p/a%00b/status", f"/r/{shop.router.slug}%00", "/dashboard/%00"):
        assert requests.get(f"{app.live_url}{path}", timeout=10).status_code == 404, path
    for path in ("/routers/a%00b/sync", f"/hooks/{shop.paybill.webhook_token}%00/stk"):
        answer = requests.post(f"{app.live_url}{path}", data=b"{}", timeout=10)
        assert answer.status_code in (200, 404), (path, answer.status_code)

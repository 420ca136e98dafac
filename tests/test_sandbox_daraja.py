"""The sandbox Daraja itself, spoken to with raw HTTP: its validation, traps and control methods."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from portal.mpesa.client import nairobi_timestamp, stk_password
from portal.sandbox.daraja import SANDBOX_PASSKEY, CallbackReceiver, SandboxDaraja

KEY, SECRET = "sandbox-test-key", "sandbox-test-secret"
PUSH = "/mpesa/stkpush/v1/processrequest"
QUERY = "/mpesa/stkpushquery/v1/query"


@pytest.fixture
def sandbox() -> Iterator[SandboxDaraja]:
    with SandboxDaraja(callback_delay_s=0.05) as daraja:
        daraja.add_app(KEY, SECRET)
        yield daraja


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as recv:
        yield recv


def token(sandbox: SandboxDaraja) -> str:
    answer = requests.get(
        f"{sandbox.base_url}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=(KEY, SECRET),
        timeout=5,
    )
    assert answer.status_code == 200 and answer.json()["expires_in"] == "3599"
    return answer.json()["access_token"]


def credentials(when: datetime | None = None) -> dict[str, str]:
    timestamp = nairobi_timestamp(when or datetime.now(UTC))
    return {
        "BusinessShortCode": "174379",
        "Password": stk_password("174379", SANDBOX_PASSKEY, timestamp),
        "Timestamp": timestamp,
    }


def push_body(callback_url: str, **overrides: Any) -> dict[str, Any]:
    body = {
        **credentials(),
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 10,
        "PartyA": "254712345678",
        "PartyB": "174379",
        "PhoneNumber": "254712345678",
        "CallBackURL": callback_url,
        "AccountReference": "VCH7K2Q9",
        "TransactionDesc": "WiFi access",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def post(sandbox: SandboxDaraja, path: str, body: Any, bearer: str, **kw: Any) -> requests.Response:
    return requests.post(
        sandbox.base_url + path, json=body, headers={"Authorization": f"Bearer {bearer}"}, timeout=5, **kw
    )


def stk_callback(receiver: CallbackReceiver, index: int = 0) -> dict[str, Any]:
    return receiver.wait_for(index + 1)[index][1]["Body"]["stkCallback"]


# --- OAuth --------------------------------------------------------------------------------------


def test_unknown_credentials_get_an_empty_400_like_production(sandbox) -> None:
    answer = requests.get(
        f"{sandbox.base_url}/oauth/v1/generate", params={"grant_type": "client_credentials"}, auth=(KEY, "x"), timeout=5
    )
    assert answer.status_code == 400 and answer.content == b""


def test_missing_grant_type_is_400_008_02(sandbox) -> None:
    answer = requests.get(f"{sandbox.base_url}/oauth/v1/generate", auth=(KEY, SECRET), timeout=5)
    assert answer.json()["errorCode"] == "400.008.02"


def test_a_new_token_invalidates_the_previous_one(sandbox, receiver) -> None:
    first = token(sandbox)
    assert post(sandbox, PUSH, push_body(receiver.url()), first).status_code == 200
    second = token(sandbox)

    refused = post(sandbox, PUSH, push_body(receiver.url(), PhoneNumber="254712345679"), first)

    assert refused.status_code == 401 and refused.json()["errorCode"] == "404.001.03"
    assert post(sandbox, PUSH, push_body(receiver.url(), PhoneNumber="254712345679"), second).status_code == 200
    assert sandbox.oauth_calls == 2


# --- STK push validation ------------------------------------------------------------------------


def test_accepted_push_has_dara_shape(sandbox, receiver) -> None:
    answer = post(sandbox, PUSH, push_body(receiver.url()), token(sandbox)).json()

    assert answer["ResponseCode"] == "0" and answer["CheckoutRequestID"].startswith("ws_CO_")
    assert set(answer) == {
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResponseCode",
        "ResponseDescription",
        "CustomerMessage",
    }
    assert sandbox.pushes[0]["CheckoutRequestID"] == answer["CheckoutRequestID"]


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        ({"Password": "d3Jvbmc="}, "500.001.1001", "Wrong credentials"),
        ({"BusinessShortCode": "999999"}, "500.001.1001", "Merchant does not exist"),
        ({"BusinessShortCode": "12"}, "400.002.02", "Bad Request - Invalid BusinessShortCode"),
        ({"PhoneNumber": "0712345678"}, "400.002.02", "Bad Request - Invalid PhoneNumber"),
        ({"PartyA": "254812345678"}, "400.002.02", "Bad Request - Invalid PartyA"),
        ({"Amount": 0}, "400.002.02", "Bad Request - Invalid Amount"),
        ({"Amount": 1.5}, "400.002.02", "Bad Request - Invalid Amount"),
        ({"TransactionType": "PayBill"}, "400.002.02", "Bad Request - Invalid TransactionType"),
        ({"CallBackURL": "http://127.0.0.1:9/Safaricom/cb"}, "400.002.02", "Bad Request - Invalid CallBackURL"),
        ({"CallBackURL": "not a url"}, "400.002.02", "Bad Request - Invalid CallBackURL"),
        ({"AccountReference": "THIRTEENCHARS"}, "400.002.02", "Bad Request - Invalid AccountReference"),
        ({"TransactionDesc": None}, "400.002.02", "Bad Request - Invalid Remarks"),
        ({"TransactionDesc": "fourteen chars"}, "400.002.02", "Bad Request - Invalid Remarks"),
    ],
)
def test_invalid_push_fields_get_darajas_errors(sandbox, receiver, overrides, code, message) -> None:
    answer = post(sandbox, PUSH, push_body(receiver.url(), **overrides), token(sandbox))

    assert answer.status_code >= 400
    assert (answer.json()["errorCode"], answer.json()["errorMessage"]) == (code, message)
    assert set(answer.json()) == {"requestId", "errorCode", "errorMessage"} and sandbox.pushes == []


def test_a_timestamp_two_hours_off_is_invalid(sandbox, receiver) -> None:
    stale = credentials(datetime.now(UTC) - timedelta(hours=2))
    answer = post(sandbox, PUSH, push_body(receiver.url(), **stale), token(sandbox))
    assert answer.json()["errorMessage"] == "Bad Request - Invalid Timestamp"


def test_malformed_json_and_missing_content_type(sandbox) -> None:
    bearer = token(sandbox)
    headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    broken = requests.post(sandbox.base_url + PUSH, data=b"{nope", headers=headers, timeout=5)
    untyped = requests.post(
        sandbox.base_url + PUSH, data=b"{}", headers={"Authorization": f"Bearer {bearer}"}, timeout=5
    )

    assert broken.json()["errorCode"] == "400.002.05"
    assert untyped.json()["errorMessage"] == "Bad Request - Invalid BusinessShortCode"


def test_reject_phones_refuses_a_well_formed_number(sandbox, receiver) -> None:
    sandbox.reject_phones = {"254110000000"}
    body = push_body(receiver.url(), PhoneNumber="254110000000", PartyA="254110000000")
    assert post(sandbox, PUSH, body, token(sandbox)).json()["errorMessage"] == "Bad Request - Invalid PhoneNumber"


def test_subscriber_lock_can_be_turned_off(sandbox, receiver) -> None:
    bearer = token(sandbox)
    sandbox.set_outcome("254712345678", 0, delay_s=30)
    post(sandbox, PUSH, push_body(receiver.url()), bearer)
    assert "Unable to lock subscriber" in post(sandbox, PUSH, push_body(receiver.url()), bearer).json()["errorMessage"]

    sandbox.enforce_subscriber_lock = False
    assert post(sandbox, PUSH, push_body(receiver.url()), bearer).status_code == 200


# --- outcomes and callbacks ---------------------------------------------------------------------


def test_set_outcome_by_phone_changes_amount_and_receipt(sandbox, receiver) -> None:
    sandbox.set_outcome("0712 345 678", 0, amount=5, receipt="ABC1234567")
    post(sandbox, PUSH, push_body(receiver.url()), token(sandbox))

    items = {item["Name"]: item.get("Value") for item in stk_callback(receiver)["CallbackMetadata"]["Item"]}
    assert items["Amount"] == 5 and items["MpesaReceiptNumber"] == "ABC1234567"


def test_send_callback_delivers_the_same_callback_again(sandbox, receiver) -> None:
    checkout_id = post(sandbox, PUSH, push_body(receiver.url()), token(sandbox)).json()["CheckoutRequestID"]
    first = stk_callback(receiver, 0)

    sandbox.send_callback(checkout_id)

    assert stk_callback(receiver, 1) == first
    # The timer thread records its own delivery after the receiver has it: wait for both records.
    assert [status for _url, _body, status in sandbox.wait_for_callbacks(2)] == [200, 200]


def test_pending_queries_then_the_final_answer(sandbox, receiver) -> None:
    bearer = token(sandbox)
    checkout_id = post(sandbox, PUSH, push_body(receiver.url()), bearer).json()["CheckoutRequestID"]
    sandbox.set_outcome(checkout_id, 1032, delay_s=0, pending_queries=1, send_callback=False)
    sandbox.query_pending_shape = "4999"
    time.sleep(0.1)
    query = {**credentials(), "CheckoutRequestID": checkout_id}

    first = post(sandbox, QUERY, query, bearer)
    second = post(sandbox, QUERY, query, bearer)

    assert first.status_code == 200 and first.json() == {
        "ResultCode": "4999",
        "ResultDesc": "The transaction is still under processing",
    }
    assert second.json()["ResultCode"] == "1032" and second.json()["ResponseCode"] == "0"
    assert sandbox.query_calls[checkout_id] == 2 and receiver.received == []  # the callback was "lost"


def test_stop_cancels_pending_callbacks(receiver) -> None:
    daraja = SandboxDaraja(callback_delay_s=0.2).start()
    daraja.add_app(KEY, SECRET)
    post(daraja, PUSH, push_body(receiver.url()), token(daraja))
    daraja.stop()

    time.sleep(0.4)
    assert receiver.received == [] and daraja.callbacks_sent == []


def test_control_page_lists_pushes_and_its_buttons_decide_them(sandbox, receiver) -> None:
    sandbox.set_outcome("254712345678", 0, delay_s=30)
    checkout_id = post(sandbox, PUSH, push_body(receiver.url()), token(sandbox)).json()["CheckoutRequestID"]

    page = requests.get(f"{sandbox.base_url}/sandbox", timeout=5)
    assert checkout_id in page.text and "cancel" in page.text
    requests.post(f"{sandbox.base_url}/sandbox/pushes/{checkout_id}/cancel", timeout=5)

    assert stk_callback(receiver)["ResultCode"] == 1032


def test_c2b_on_stk_also_confirms_the_paid_push(sandbox, receiver) -> None:
    sandbox.c2b_on_stk = True
    sandbox.register_c2b_urls("174379", receiver.url("/c2b/confirm"))
    post(sandbox, PUSH, push_body(receiver.url("/stk")), token(sandbox))

    (_, stk), (path, confirmation) = receiver.wait_for(2)
    receipt = {i["Name"]: i.get("Value") for i in stk["Body"]["stkCallback"]["CallbackMetadata"]["Item"]}
    assert path == "/c2b/confirm" and confirmation["TransID"] == receipt["MpesaReceiptNumber"]
    assert confirmation["BillRefNumber"] == "VCH7K2Q9"


# --- C2B ----------------------------------------------------------------------------------------


def test_simulate_endpoint_confirms_to_registered_urls(sandbox, receiver) -> None:
    bearer = token(sandbox)
    registered = post(
        sandbox,
        "/mpesa/c2b/v1/registerurl",
        {
            "ShortCode": "174379",
            "ResponseType": "Completed",
            "ConfirmationURL": receiver.url("/c2b/confirm"),
            "ValidationURL": receiver.url("/c2b/validate"),
        },
        bearer,
    )
    assert registered.json()["ResponseCode"] == "0" and "OriginatorCoversationID" in registered.json()

    simulated = post(
        sandbox,
        "/mpesa/c2b/v2/simulate",
        {
            "ShortCode": 174379,
            "CommandID": "CustomerPayBillOnline",
            "Amount": 20,
            "Msisdn": 254708374149,
            "BillRefNumber": "AB12",
        },
        bearer,
    )

    assert simulated.json()["ResponseCode"] == "0"
    path, confirmation = receiver.wait_for(2)[1]
    assert path == "/c2b/confirm" and confirmation["BillRefNumber"] == "AB12"
    assert confirmation["MSISDN"] == hashlib.sha256(b"254708374149").hexdigest()  # v1 hashes the number


def test_simulate_without_registered_urls_says_so(sandbox) -> None:
    with pytest.raises(LookupError, match="register"):
        sandbox.simulate_c2b("174379", 10, "AB12")


def test_till_payments_confirm_to_the_urls_of_their_store(sandbox, receiver) -> None:
    sandbox.add_shortcode("600100", "store-passkey", till_numbers=("5123456",))
    sandbox.register_c2b_urls("600100", receiver.url("/c2b/confirm"))

    payload = sandbox.simulate_c2b("5123456", 30, None, kind="CustomerBuyGoodsOnline")

    assert receiver.wait_for(1)[0] == ("/c2b/confirm", payload)
    assert payload["TransactionType"] == "Buy Goods" and payload["BillRefNumber"] == ""

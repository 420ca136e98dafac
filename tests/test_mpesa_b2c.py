"""The B2C and Transaction Status clients against the sandbox Daraja over real HTTP: the
idempotency key, refusals, and timeouts that leave the outcome unknown."""

from __future__ import annotations

import pytest

from portal.mpesa import DarajaAccount, DarajaClient, MemoryTokenStore
from portal.mpesa.b2c import (
    B2CDuplicate,
    B2CInitiator,
    b2c_payment,
    parse_result,
    security_credential,
    transaction_status,
)
from portal.mpesa.errors import DarajaRejected, DarajaUnavailable
from portal.sandbox.daraja import CallbackReceiver

from .conftest import CONSUMER_KEY, CONSUMER_SECRET, SANDBOX_PASSKEY

SHORTCODE = "600997"


@pytest.fixture
def b2c_setup(daraja):  # type: ignore[no-untyped-def]
    daraja.b2c.add_initiator(SHORTCODE, "testapi", "Safaricom999!*!")
    client = DarajaClient(daraja.base_url, timeout=(1.0, 1.0), retries=0, sleep=lambda s: None)
    account = DarajaAccount(SHORTCODE, "paybill", CONSUMER_KEY, CONSUMER_SECRET, SANDBOX_PASSKEY)
    initiator = B2CInitiator(SHORTCODE, "testapi", security_credential("Safaricom999!*!", daraja.b2c.certificate_pem))
    with CallbackReceiver() as receiver:
        yield client, account, MemoryTokenStore(), initiator, receiver


def _pay(setup, originator: str, phone: str = "254712345678", amount: int = 50):  # type: ignore[no-untyped-def]
    client, account, store, initiator, receiver = setup
    return b2c_payment(client, account, store, initiator, originator_conversation_id=originator, phone=phone,
                       amount=amount, remarks="test payout", result_url=receiver.url("/hooks/t/b2c/result"),
                       timeout_url=receiver.url("/hooks/t/b2c/timeout"))


def test_a_payment_is_accepted_then_its_result_arrives(b2c_setup, daraja):
    accepted = _pay(b2c_setup, "PO-1-1-aa")
    assert accepted.conversation_id.startswith("AG_") and accepted.originator_conversation_id == "PO-1-1-aa"
    path, body = b2c_setup[4].wait_for(1)[0]
    result = parse_result(body)
    assert path == "/hooks/t/b2c/result" and result.is_success and result.parameter("TransactionAmount") == 50
    assert daraja.b2c.payments[0]["PartyB"] == "254712345678"


def test_a_seen_originator_id_is_refused_as_a_duplicate_and_never_paid_twice(b2c_setup, daraja):
    _pay(b2c_setup, "PO-2-1-bb")
    with pytest.raises(B2CDuplicate):
        _pay(b2c_setup, "PO-2-1-bb")
    assert len(daraja.b2c.payments) == 1


def test_a_bad_field_is_a_refusal_and_a_hang_is_an_unknown_outcome(b2c_setup, daraja):
    with pytest.raises(ValueError):
        _pay(b2c_setup, "PO-3-1-cc", amount=5)  # below M-Pesa's minimum: never sent
    daraja.fail_mode = "hang"
    with pytest.raises(DarajaUnavailable) as caught:
        _pay(b2c_setup, "PO-3-2-cc")
    assert caught.value.outcome_unknown
    daraja.fail_mode = None
    daraja.b2c.add_initiator("600998", "x", "y")
    client, account, store, initiator, receiver = b2c_setup
    with pytest.raises(DarajaRejected):
        b2c_payment(client, account, store, B2CInitiator("111", "x", "y"), originator_conversation_id="PO-3-3",
                    phone="254712345678", amount=50, remarks="x y", result_url=receiver.url(), timeout_url=receiver.url())


def test_transaction_status_answers_with_the_payments_ids_in_its_parameters(b2c_setup, daraja):
    _pay(b2c_setup, "PO-4-1-dd")
    client, account, store, initiator, receiver = b2c_setup
    receiver.wait_for(1)
    asked = transaction_status(client, account, store, initiator, originator_conversation_id="PO-4-1-dd",
                               result_url=receiver.url("/hooks/t/b2c/status"), timeout_url=receiver.url("/x"))
    path, body = receiver.wait_for(2)[1]
    answer = parse_result(body)
    assert path == "/hooks/t/b2c/status" and answer.conversation_id == asked.conversation_id
    assert answer.parameter("TransactionStatus") == "Completed"
    assert answer.parameter("Originator Conversation ID") == "PO-4-1-dd"  # keys matched loosely

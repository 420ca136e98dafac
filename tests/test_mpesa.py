"""portal.mpesa against the sandbox Daraja, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.mpesa.breaker import CircuitBreaker
from portal.mpesa.client import (
    STK_PUSH_PATH,
    STK_QUERY_PATH,
    CachedToken,
    DarajaAccount,
    DarajaClient,
    MemoryTokenStore,
    nairobi_timestamp,
    shared_session,
    stk_password,
)
from portal.mpesa.errors import (
    DarajaAuthFailed,
    DarajaCircuitOpen,
    DarajaError,
    DarajaRejected,
    DarajaUnavailable,
    InvalidPhoneNumber,
)
from portal.mpesa.phones import mask_phone, normalise_phone
from portal.mpesa.result_codes import refusal_reason
from portal.sandbox.daraja import SANDBOX_PASSKEY, CallbackReceiver, SandboxDaraja

from .wording import meaning_of, rejection_message

KEY, SECRET = "test-consumer-key", "test-consumer-secret-5ab1"
STORE, TILL, STORE_PASSKEY = "600100", "5123456", "store-passkey-77c3"
SAMPLE_PASSWORD = (
    "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjEwNjI4MDkyNDA4"
)


# --- fixtures -----------------------------------------------------------------------------------


class SettableClock:
    """Wall clock for the client (token expiry, timestamps); starts at the real now."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def sandbox() -> Iterator[SandboxDaraja]:
    with SandboxDaraja(callback_delay_s=0.05) as daraja:
        daraja.add_app(KEY, SECRET)
        daraja.add_shortcode(STORE, STORE_PASSKEY, till_numbers=(TILL,))
        yield daraja


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as recv:
        yield recv


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sandbox: SandboxDaraja, sleeps: list[float]) -> DarajaClient:
    return make_client(sandbox.base_url, sleeps)


def make_client(base_url: str, sleeps: list[float], **kw: Any) -> DarajaClient:
    options: dict[str, Any] = {
        "timeout": (1.0, 2.0),
        "retries": 2,
        "breaker": CircuitBreaker(failure_threshold=50),
        "sleep": sleeps.append,
    }
    options.update(kw)
    return DarajaClient(base_url, **options)


@pytest.fixture
def paybill() -> DarajaAccount:
    return DarajaAccount("174379", "paybill", KEY, SECRET, SANDBOX_PASSKEY, label="test-paybill")


@pytest.fixture
def till() -> DarajaAccount:
    return DarajaAccount(TILL, "till", KEY, SECRET, STORE_PASSKEY, store_number=STORE, label="test-till")


@pytest.fixture
def store() -> MemoryTokenStore:
    return MemoryTokenStore()


def push(client: DarajaClient, account: DarajaAccount, store: MemoryTokenStore, url: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "phone": "0712345678",
        "amount": 10,
        "account_reference": "VCH7K2Q9",
        "description": "WiFi access",
        "callback_url": url,
    }
    args.update(kw)
    return client.stk_push(account, store, **args)


def items_by_name(callback: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["Name"]: item for item in callback["CallbackMetadata"]["Item"]}


def requests_to(sandbox: SandboxDaraja, path: str) -> int:
    return sum(1 for _method, seen in sandbox.received if seen == path)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_token_store() -> MemoryTokenStore:
    return MemoryTokenStore(CachedToken("not-checked", datetime.now(UTC) + timedelta(hours=1)))


# --- phone numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "msisdn"),
    [
        ("0712345678", "254712345678"),
        ("0712 345 678", "254712345678"),
        ("0712-345-678", "254712345678"),
        ("0712.345.678", "254712345678"),
        (" 0712345678 ", "254712345678"),
        ("712345678", "254712345678"),
        ("254712345678", "254712345678"),
        ("+254712345678", "254712345678"),
        ("+254 712 345 678", "254712345678"),
        ("+254 (0) 712 345 678", "254712345678"),
        ("0112345678", "254112345678"),
        ("112345678", "254112345678"),
        ("254112345678", "254112345678"),
        ("+254-110-000-000", "254110000000"),
    ],
)
def test_every_accepted_form_normalises_to_the_msisdn(typed: str, msisdn: str) -> None:
    assert normalise_phone(typed) == msisdn


@pytest.mark.parametrize(
    "typed",
    [
        "071234567",
        "07123456789",
        "07l2345678",
        "0812345678",
        "254812345678",
        "2547123456789",
        "+1 212 555 1234",
        "+255712345678",
        "",
        "+254",
        "phone",
        "\u0660\u0667\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
        None,
        123,
        712345678,
    ],
)
def test_non_kenyan_mobile_input_is_refused_in_words_for_the_log(typed: Any) -> None:
    """The client says why in the log's words; the customer's sentence is the captive page's own
    (err_phone_invalid, English and Swahili), never the client's English."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_phone(typed)
    assert str(caught.value) and not hasattr(caught.value, "customer_message")


@given(st.one_of(st.text(max_size=20), st.from_regex(r"\A(\+?254|0)?[17][0-9]{8}\Z")))
def test_normalising_is_idempotent_on_its_own_output(raw: str) -> None:
    try:
        once = normalise_phone(raw)
    except InvalidPhoneNumber:
        return
    assert normalise_phone(once) == once
    assert len(once) == 12 and once.startswith(("2547", "2541"))


def test_masked_phone_keeps_only_prefix_and_last_digits() -> None:
    assert mask_phone("254712345678") == "0712 *** 678"
    assert mask_phone("254112345678") == "0112 *** 678"
    assert "345" not in mask_phone("garbage 0812345678")
    assert mask_phone(None) == "***"  # type: ignore[arg-type]


# --- password and timestamp ---------------------------------------------------------------------


def test_password_matches_safaricoms_published_sample() -> None:
    assert stk_password("174379", SANDBOX_PASSKEY, "20210628092408") == SAMPLE_PASSWORD


def test_timestamp_is_nairobi_time() -> None:
    assert nairobi_timestamp(datetime(2021, 6, 28, 6, 24, 8, tzinfo=UTC)) == "20210628092408"
    assert nairobi_timestamp(datetime(2023, 12, 31, 22, 0, 0, tzinfo=UTC)) == "20240101010000"


def test_account_hides_secrets_and_knows_till_roles(till: DarajaAccount) -> None:
    assert (till.business_shortcode, till.party_b, till.transaction_type) == (STORE, TILL, "CustomerBuyGoodsOnline")
    assert SECRET not in repr(till) and STORE_PASSKEY not in repr(till) and KEY not in repr(till)
    with pytest.raises(ValueError, match="store"):
        DarajaAccount(TILL, "till", KEY, SECRET, STORE_PASSKEY)


# --- tokens -------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused_across_pushes(client, sandbox, paybill, store, receiver) -> None:
    push(client, paybill, store, receiver.url(), phone="0712345678")
    push(client, paybill, store, receiver.url(), phone="0712345679")
    push(client, paybill, store, receiver.url(), phone="0712345670")

    assert sandbox.oauth_calls == 1 and len(sandbox.pushes) == 3
    token = store.load()
    assert token is not None and token.expires_at.tzinfo is not None
    assert abs((token.expires_at - datetime.now(UTC)).total_seconds() - 3599) < 30  # "3599" arrived as a string


def test_token_is_refreshed_within_five_minutes_of_expiry(sandbox, paybill, sleeps) -> None:
    clock = SettableClock()
    client = make_client(sandbox.base_url, sleeps, clock=clock)
    store = MemoryTokenStore()
    first = client.access_token(paybill, store)

    clock.advance(3599 - 301)  # 301 s left: still good
    assert client.access_token(paybill, store) == first and sandbox.oauth_calls == 1

    clock.advance(2)  # 299 s left: refresh
    second = client.access_token(paybill, store)
    assert second != first and sandbox.oauth_calls == 2 and store.saves == 2


def test_a_token_invalidated_by_another_fetch_is_refreshed_and_the_push_retried_once(
    client, sandbox, paybill, store, receiver
) -> None:
    push(client, paybill, store, receiver.url(), phone="0712345678")
    client.fetch_token(paybill)  # "another process" takes a new token; ours is now dead

    accepted = push(client, paybill, store, receiver.url(), phone="0712345679")

    assert accepted.checkout_request_id.startswith("ws_CO_")
    assert sandbox.oauth_calls == 3
    assert requests_to(sandbox, STK_PUSH_PATH) == 3  # one refused with 404.001.03, resent once
    assert len(sandbox.pushes) == 2


def test_a_token_refused_again_after_refresh_is_not_retried_a_second_time(
    client, sandbox, paybill, store, receiver
) -> None:
    sandbox.token_ttl_s = 0  # every token is dead on arrival

    with pytest.raises(DarajaRejected) as caught:
        push(client, paybill, store, receiver.url())

    assert caught.value.error_code == "404.001.03"
    assert sandbox.oauth_calls == 2 and requests_to(sandbox, STK_PUSH_PATH) == 2 and sandbox.pushes == []


def test_after_a_refused_token_a_newer_one_saved_by_another_process_is_used(client, sandbox, paybill, receiver) -> None:
    stale = client.fetch_token(paybill)
    newer = client.fetch_token(paybill)  # what another process saved in the shared store

    class SwappingStore(MemoryTokenStore):
        def load(self) -> CachedToken | None:
            token = super().load()
            self.save(newer)  # the next reader sees the other process's token
            return token

    store = SwappingStore(stale)
    push(client, paybill, store, receiver.url())

    assert sandbox.oauth_calls == 2  # no third token: it would have knocked out the other process's
    assert len(sandbox.pushes) == 1


def test_wrong_consumer_secret_is_auth_failed_without_leaking_it(client, sandbox, store, caplog) -> None:
    account = DarajaAccount("174379", "paybill", KEY, "wrong-secret-9f1e", SANDBOX_PASSKEY)
    caplog.set_level(logging.DEBUG, logger="portal.mpesa")

    with pytest.raises(DarajaAuthFailed) as caught:
        client.access_token(account, store)

    assert caught.value.http_status == 400 and sandbox.oauth_calls == 1  # refused, so not retried
    assert "wrong-secret-9f1e" not in str(caught.value) + repr(caught.value.__dict__) + caplog.text


def test_logs_never_carry_the_token_secret_or_passkey(client, paybill, store, receiver, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    push(client, paybill, store, receiver.url())
    token = store.load()
    assert token is not None

    for secret in (token.access_token, SECRET, SANDBOX_PASSKEY, "0712345678", "254712345678"):
        assert secret not in caplog.text
    assert "0712 *** 678" in caplog.text


# --- STK push -----------------------------------------------------------------------------------


def test_paybill_push_is_accepted_and_the_callback_arrives_in_dara_shape(
    client, sandbox, paybill, store, receiver
) -> None:
    accepted = push(client, paybill, store, receiver.url("/hooks/abc123/stk"), description="WiFi 1 hour for you")

    assert accepted.response_code == "0" and accepted.merchant_request_id
    sent = sandbox.pushes[0]
    assert sent["TransactionType"] == "CustomerPayBillOnline"
    assert sent["BusinessShortCode"] == sent["PartyB"] == "174379"
    assert sent["Amount"] == 10 and isinstance(sent["Amount"], int)
    assert sent["PartyA"] == sent["PhoneNumber"] == "254712345678"
    assert sent["TransactionDesc"] == "WiFi 1 hour f"  # cut to Daraja's 13 characters
    assert sent["Password"] == stk_password("174379", SANDBOX_PASSKEY, sent["Timestamp"])

    path, body = receiver.wait_for(1)[0]
    callback = body["Body"]["stkCallback"]
    assert path == "/hooks/abc123/stk"
    assert callback["CheckoutRequestID"] == accepted.checkout_request_id
    assert callback["MerchantRequestID"] == accepted.merchant_request_id
    assert callback["ResultCode"] == 0 and isinstance(callback["ResultCode"], int)
    items = items_by_name(callback)
    assert items["Amount"]["Value"] == 10
    receipt = items["MpesaReceiptNumber"]["Value"]
    assert len(receipt) == 10 and receipt.isalnum() and receipt == receipt.upper()
    assert "Value" not in items["Balance"]
    assert isinstance(items["TransactionDate"]["Value"], int) and len(str(items["TransactionDate"]["Value"])) == 14
    assert items["PhoneNumber"]["Value"] == 254712345678


def test_till_push_uses_the_store_number_and_buy_goods(client, sandbox, till, store, receiver) -> None:
    push(client, till, store, receiver.url())

    sent = sandbox.pushes[0]
    assert sent["TransactionType"] == "CustomerBuyGoodsOnline"
    assert (sent["BusinessShortCode"], sent["PartyB"]) == (STORE, TILL)
    assert receiver.wait_for(1)[0][1]["Body"]["stkCallback"]["ResultCode"] == 0


def test_a_store_number_used_as_a_paybill_fails_with_2028(client, sandbox, store, receiver) -> None:
    wrong = DarajaAccount(STORE, "paybill", KEY, SECRET, STORE_PASSKEY)
    push(client, wrong, store, receiver.url())

    callback = receiver.wait_for(1)[0][1]["Body"]["stkCallback"]
    assert callback["ResultCode"] == 2028 and "CallbackMetadata" not in callback
    assert meaning_of(callback["ResultCode"]).reason == "config"


@pytest.mark.parametrize(
    ("phone", "code"), [("254700001032", 1032), ("254700001037", 1037), ("254700000001", 1), ("254700002001", 2001)]
)
def test_test_numbers_choose_the_result(client, paybill, store, receiver, phone: str, code: int) -> None:
    push(client, paybill, store, receiver.url(), phone=phone)

    callback = receiver.wait_for(1)[0][1]["Body"]["stkCallback"]
    assert callback["ResultCode"] == code and set(callback) == {
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResultCode",
        "ResultDesc",
    }


def test_daraja_refusing_the_phone_number_is_rejected_with_its_code(client, sandbox, paybill, store, receiver) -> None:
    with pytest.raises(DarajaRejected) as caught:
        push(client, paybill, store, receiver.url(), phone="0812345678")

    assert caught.value.error_code == "400.002.02"
    assert caught.value.error_message == "Bad Request - Invalid PhoneNumber"
    assert refusal_reason(caught.value) == "phone" and sandbox.pushes == []


def test_callback_url_mentioning_mpesa_is_refused(client, paybill, store, receiver) -> None:
    with pytest.raises(DarajaRejected, match="Invalid CallBackURL"):
        push(client, paybill, store, receiver.url("/mpesa/callback"))


def test_a_second_push_to_a_phone_with_an_open_prompt_is_refused(client, sandbox, paybill, store, receiver) -> None:
    sandbox.set_outcome("0712345678", 0, delay_s=30)
    push(client, paybill, store, receiver.url())

    with pytest.raises(DarajaRejected) as caught:
        push(client, paybill, store, receiver.url())

    assert caught.value.error_code == "500.001.1001" and refusal_reason(caught.value) == "locked"
    assert "wait a minute" in rejection_message(caught.value)[0].lower()


@pytest.mark.parametrize(
    "arguments",
    [
        {"account_reference": "THIRTEENCHARS"},
        {"account_reference": ""},
        {"amount": 0},
        {"amount": 1.5},
        {"amount": True},
    ],
)
def test_arguments_daraja_would_refuse_raise_before_sending(
    client, sandbox, paybill, store, receiver, arguments
) -> None:
    with pytest.raises(ValueError):
        push(client, paybill, store, receiver.url(), **arguments)
    assert sandbox.received == []


def test_http_500_without_error_code_is_unavailable(client, sandbox, paybill, store, receiver) -> None:
    client.access_token(paybill, store)
    sandbox.fail_mode = "500"

    with pytest.raises(DarajaUnavailable) as caught:
        push(client, paybill, store, receiver.url())

    assert caught.value.http_status == 500 and caught.value.outcome_unknown  # a bare 500 may follow the push
    assert requests_to(sandbox, STK_PUSH_PATH) == 1


def test_a_push_that_times_out_is_outcome_unknown_and_never_resent(sandbox, paybill, store, receiver, sleeps) -> None:
    client = make_client(sandbox.base_url, sleeps, timeout=(1.0, 0.3))
    client.access_token(paybill, store)
    sandbox.fail_mode = "hang"

    with pytest.raises(DarajaUnavailable) as caught:
        push(client, paybill, store, receiver.url())

    assert caught.value.outcome_unknown is True
    assert requests_to(sandbox, STK_PUSH_PATH) == 1 and sleeps == []
    sandbox.fail_mode = None  # Daraja finally gets to it: the push we gave up on is live
    assert requests_to(sandbox, STK_PUSH_PATH) == 1


def test_a_refused_connection_means_nothing_was_sent_and_is_not_retried(paybill, receiver, sleeps) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port()}", sleeps)

    with pytest.raises(DarajaUnavailable) as caught:
        push(client, paybill, fresh_token_store(), receiver.url())

    assert caught.value.outcome_unknown is False and sleeps == []


def test_safe_calls_are_retried_with_capped_backoff(paybill, sleeps) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port()}", sleeps, retries=3, backoff_base=1.0, backoff_cap=2.5)

    with pytest.raises(DarajaUnavailable):
        client.stk_query(paybill, fresh_token_store(), "ws_CO_000")

    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        ceiling = min(2.5, 1.0 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_clients_share_one_session_per_host(sandbox) -> None:
    first, second = DarajaClient(sandbox.base_url), DarajaClient(sandbox.base_url + "/")
    assert first._session is second._session is shared_session(sandbox.base_url)
    assert first.breaker is second.breaker


# --- circuit breaker ----------------------------------------------------------------------------


def test_breaker_opens_fails_fast_then_lets_one_trial_through_and_closes(
    sandbox, paybill, store, receiver, sleeps
) -> None:
    clock = FakeMonotonic()
    breaker = CircuitBreaker(failure_threshold=3, cool_off_s=30, clock=clock)
    client = make_client(sandbox.base_url, sleeps, retries=0, breaker=breaker)
    checkout_id = push(client, paybill, store, receiver.url()).checkout_request_id
    sandbox.wait_for_callbacks(1)
    sandbox.fail_mode = "500"

    for _ in range(3):
        with pytest.raises(DarajaUnavailable):
            client.stk_query(paybill, store, checkout_id)
    sent_before = len(sandbox.received)
    with pytest.raises(DarajaCircuitOpen) as caught:
        client.stk_query(paybill, store, checkout_id)
    assert caught.value.outcome_unknown is False and len(sandbox.received) == sent_before
    assert rejection_message(caught.value)[0].startswith("M-Pesa is not responding")

    clock.value += 31
    sandbox.fail_mode = None
    assert breaker.state == "half_open"
    assert client.stk_query(paybill, store, checkout_id).result_code == "0"
    assert breaker.state == "closed"


def test_a_failed_half_open_trial_opens_the_breaker_again(sandbox, paybill, store, sleeps) -> None:
    clock = FakeMonotonic()
    breaker = CircuitBreaker(failure_threshold=2, cool_off_s=30, clock=clock)
    client = make_client(sandbox.base_url, sleeps, retries=0, breaker=breaker)
    client.access_token(paybill, store)
    sandbox.fail_mode = "500"
    for _ in range(2):
        with pytest.raises(DarajaUnavailable):
            client.stk_query(paybill, store, "ws_CO_1")

    clock.value += 30
    with pytest.raises(DarajaUnavailable) as trial:
        client.stk_query(paybill, store, "ws_CO_1")
    assert not isinstance(trial.value, DarajaCircuitOpen)
    with pytest.raises(DarajaCircuitOpen):
        client.stk_query(paybill, store, "ws_CO_1")


def test_half_open_allows_exactly_one_concurrent_trial() -> None:
    clock = FakeMonotonic()
    breaker = CircuitBreaker(failure_threshold=1, cool_off_s=5, clock=clock)
    breaker.record_failure()
    with pytest.raises(DarajaCircuitOpen):
        breaker.before_request()

    clock.value += 5
    breaker.before_request()  # the trial
    with pytest.raises(DarajaCircuitOpen):
        breaker.before_request()  # everyone else waits for its verdict
    breaker.record_success()
    breaker.before_request()


def test_rejections_do_not_trip_the_breaker(client, paybill, store, receiver) -> None:
    for _ in range(60):
        with pytest.raises(DarajaRejected):
            push(client, paybill, store, receiver.url(), phone="0812345678")
    assert client.breaker.state == "closed"


# --- STK query ----------------------------------------------------------------------------------


def test_query_before_the_result_is_pending_in_the_error_shape(client, sandbox, paybill, store, receiver) -> None:
    checkout_id = push(client, paybill, store, receiver.url()).checkout_request_id
    sandbox.set_outcome(checkout_id, 0, delay_s=30)

    answer = client.stk_query(paybill, store, checkout_id)

    assert answer.is_pending and answer.result_code is None and "being processed" in answer.result_desc
    assert sandbox.query_calls[checkout_id] == 1  # pending is an answer, not a failure to retry


def test_query_for_a_phone_that_never_answers_is_pending_4999(client, paybill, store, receiver) -> None:
    checkout_id = push(client, paybill, store, receiver.url(), phone="254700099999").checkout_request_id

    answer = client.stk_query(paybill, store, checkout_id)

    assert answer.is_pending and answer.result_code == "4999"
    assert meaning_of(answer.result_code).status == "pending"


@pytest.mark.parametrize(("phone", "code"), [("0712345678", "0"), ("254700001032", "1032")])
def test_query_after_the_callback_gives_the_result_code_as_text(
    client, sandbox, paybill, store, receiver, phone: str, code: str
) -> None:
    checkout_id = push(client, paybill, store, receiver.url(), phone=phone).checkout_request_id
    sandbox.wait_for_callbacks(1)

    answer = client.stk_query(paybill, store, checkout_id)

    assert answer == type(answer)(code, answer.result_desc, False) and answer.result_desc


def test_query_for_an_unknown_checkout_id_is_rejected(client, paybill, store) -> None:
    with pytest.raises(DarajaRejected) as caught:
        client.stk_query(paybill, store, "ws_CO_000000000000")
    assert caught.value.error_message == "Bad Request - Invalid CheckoutRequestID"


def test_query_is_retried_on_500_and_then_gives_up(client, sandbox, paybill, store, sleeps) -> None:
    client.access_token(paybill, store)
    sandbox.fail_mode = "500"

    with pytest.raises(DarajaUnavailable):
        client.stk_query(paybill, store, "ws_CO_1")

    assert requests_to(sandbox, STK_QUERY_PATH) == 3 and len(sleeps) == 2


# --- result codes -------------------------------------------------------------------------------

LISTED_CODES = [0, 1, 2, 3, 4, 8, 17, 1001, 1019, 1025, 9999, 1032, 1037, 2001, 2028, 8006, "4999", "500.001.1001"]


@pytest.mark.parametrize("code", LISTED_CODES)
def test_every_listed_code_has_customer_words_in_both_languages(code: int | str) -> None:
    meaning = meaning_of(code)
    assert meaning.code == str(code) and meaning.reason != "unknown"
    assert len(meaning.text_en) > 20 and len(meaning.text_sw) > 20 and meaning.text_en != meaning.text_sw


def test_result_code_statuses() -> None:
    assert meaning_of(0).status == meaning_of("0").status == "paid"
    assert meaning_of("4999").status == meaning_of("500.001.1001").status == "pending"
    assert (meaning_of(1032).status, meaning_of(1032).reason, meaning_of(" 1032 ").can_retry) == (
        "failed",
        "cancelled",
        True,
    )
    for unknown in ("E3008", 424242, None, ""):
        assert (meaning_of(unknown).status, meaning_of(unknown).reason) == ("failed", "unknown")
        assert meaning_of(unknown).text_en and meaning_of(unknown).text_sw


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (DarajaCircuitOpen(), "circuit_open"),
        (DarajaAuthFailed("x", http_status=400), "config"),
        (DarajaUnavailable("x"), "unreachable"),
        (DarajaUnavailable("x", outcome_unknown=True), "outcome_unknown"),
        (DarajaRejected(error_code="400.002.02", error_message="Bad Request - Invalid PhoneNumber"), "phone"),
        (DarajaRejected(error_code="500.001.1001", error_message="Wrong credentials"), "config"),
        (DarajaRejected(error_code="500.001.1001", error_message="Merchant does not exist"), "config"),
        (
            DarajaRejected(error_code="500.003.02", error_message="System is busy. Please try again in few minutes."),
            "busy",
        ),
        (
            DarajaRejected(error_code="500.001.1001", error_message="Unable to lock subscriber, a transaction is …"),
            "locked",
        ),
        (DarajaRejected(error_code="DarajaCircuitOpen", error_message="circuit open"), "circuit_open"),
        (DarajaRejected(error_code="999", error_message="Something new"), "other"),
    ],
)
def test_refused_pushes_get_customer_words(error: DarajaError, reason: str) -> None:
    assert refusal_reason(error) == reason
    english, swahili = rejection_message(error)
    assert english and swahili and english != swahili


# --- C2B ----------------------------------------------------------------------------------------


def test_register_c2b_urls_and_a_payment_is_validated_then_confirmed(client, sandbox, paybill, store, receiver) -> None:
    answer = client.register_c2b_urls(
        paybill,
        store,
        confirmation_url=receiver.url("/hooks/abc/c2b/confirm"),
        validation_url=receiver.url("/hooks/abc/c2b/validate"),
    )
    assert answer["ResponseCode"] == "0" and answer["OriginatorCoversationID"]

    payload = sandbox.simulate_c2b("174379", 50, "VCH7K2Q9", trans_id="RKL51ZDR4F")

    (validate_path, validated), (confirm_path, confirmed) = receiver.wait_for(2)
    assert (validate_path, confirm_path) == ("/hooks/abc/c2b/validate", "/hooks/abc/c2b/confirm")
    assert confirmed == payload and validated["TransID"] == "RKL51ZDR4F"
    assert confirmed["MSISDN"] == "2547 ***** 149"
    assert confirmed["TransAmount"] == "50.00" and confirmed["BillRefNumber"] == "VCH7K2Q9"
    assert all(isinstance(value, str) for value in confirmed.values())


def test_a_rejected_validation_means_no_confirmation(client, sandbox, paybill, store, receiver) -> None:
    client.register_c2b_urls(
        paybill, store, confirmation_url=receiver.url("/c2b/confirm"), validation_url=receiver.url("/c2b/validate")
    )
    receiver.answers["/c2b/validate"] = (200, {"ResultCode": "C2B00012", "ResultDesc": "Rejected"})

    sandbox.simulate_c2b("174379", 50, "NOSUCHCODE")

    assert [url for url, _body, _status in sandbox.wait_for_callbacks(1)] == [receiver.url("/c2b/validate")]


def test_register_refuses_a_url_containing_mpesa(client, paybill, store, receiver) -> None:
    with pytest.raises(DarajaRejected) as caught:
        client.register_c2b_urls(
            paybill, store, confirmation_url=receiver.url("/mpesa/confirm"), validation_url=receiver.url("/validate")
        )
    assert caught.value.error_message == "Bad Request - Invalid ConfirmationURL"


def test_register_response_type_must_be_exact(client, paybill, store, receiver) -> None:
    with pytest.raises(ValueError):
        client.register_c2b_urls(
            paybill, store, confirmation_url=receiver.url(), validation_url=receiver.url(), response_type="completed"
        )

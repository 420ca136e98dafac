"""Issue 17: the customer's code by SMS, through the sandbox Africa's Talking gateway over real HTTP.

One receipt per voucher whatever arrives (duplicate callbacks, a C2B confirmation for the same
purchase), none for a failed payment, a failed send retried and delivered once, the exact texts in
English and Swahili in one GSM-7 part, delivery reports stored raw, the cap, the opt-out, "send my
code again", and no provider credential in the database or the log.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import SmsDeliveryReport, SmsMessage, Voucher
from portal.notify import accounts, delivery, gsm7, outbox
from portal.notify.texts import NAIROBI
from portal.sandbox.sms import SANDBOX_API_KEY

from .conftest import form_fields, wait_until
from .sms_support import sms_settings
from .test_purchase_flow import HOTSPOT, _buy, _count, _initiation, _payment, _post_callback, _success_body

SILENT_PHONE = "0700 099 999"  # Daraja's sandbox never calls back for it; the SMS gateway delivers to it
FAILED_PAYMENT_PHONE = "0700 001 032"  # Daraja's sandbox: cancelled by the customer


@pytest.fixture
def app_overrides(sms_gateway) -> dict:  # type: ignore[no-untyped-def]
    return sms_settings(sms_gateway, PORTAL_SMS_SENDER="MAMANJERI")


@pytest.fixture(autouse=True)
def _reports_to_the_portal(app, sms_gateway) -> None:  # type: ignore[no-untyped-def]
    sms_gateway.report_url = delivery.report_url()


def _messages(*where) -> list[SmsMessage]:  # type: ignore[no-untyped-def]
    db.session.expire_all()
    return list(db.session.scalars(sa.select(SmsMessage).where(*where).order_by(SmsMessage.id)))


def _send_all() -> dict:
    return outbox.send_due_sms(time_budget_s=10)


def _make_due() -> None:
    db.session.execute(sa.update(SmsMessage).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.session.commit()


def test_duplicate_callbacks_and_a_c2b_confirmation_for_one_purchase_send_one_sms(
    app, shop, customer, daraja, router_box, worker, sms_gateway
):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    code = _payment(purchase).voucher.code
    token = shop.paybill.webhook_token
    barrier = threading.Barrier(3)

    def callback() -> None:
        barrier.wait()
        _post_callback(app, token, _success_body(checkout_id, receipt="SMS0000001"))

    def c2b() -> None:
        barrier.wait()
        daraja.simulate_c2b("174379", 10, code, trans_id="SMS0000001")

    for _ in range(3):
        threads = [threading.Thread(target=callback), threading.Thread(target=callback), threading.Thread(target=c2b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert customer.wait_for(purchase, ("active",))["status"] == "active"
    _send_all()
    _send_all()

    sent = sms_gateway.wait_for(1)
    assert [m.to for m in sent] == ["+254700099999"]
    assert code in sent[0].text
    assert len(_messages()) == 1 and _messages()[0].state in ("sent", "delivered")


def test_a_failed_payment_sends_no_sms(app, shop, customer, daraja, worker, sms_gateway):
    purchase = _buy(customer, shop, phone=FAILED_PAYMENT_PHONE)
    assert customer.wait_for(purchase, ("failed",))["status"] == "failed"
    assert _send_all() == {}
    assert _messages() == [] and sms_gateway.messages == []


def test_a_failed_send_is_retried_then_delivered_exactly_once(app, shop, customer, worker, sms_gateway):
    sms_gateway.fail_next(2)  # two bare HTTP 500s: nothing went out
    purchase = _buy(customer, shop)
    customer.wait_for(purchase, ("active",))

    assert _send_all() == {"retrying": 1}
    (message,) = _messages()
    assert (
        message.state == "queued" and "HTTP 500" in message.last_error and message.next_attempt_at > datetime.now(UTC)
    )
    _make_due()
    assert _send_all() == {"retrying": 1}
    _make_due()
    assert _send_all() == {"sent": 1}
    assert _send_all() == {}

    wait_until(lambda: _messages()[0].state == "delivered", timeout=5)
    (message,) = _messages()
    assert message.attempts == 3 and message.delivery_status == "Success" and message.delivered_at
    assert message.cost == "KES 0.8000" and message.cost_kes_micro == 800_000
    assert len(sms_gateway.messages) == 1
    report = db.session.scalars(sa.select(SmsDeliveryReport)).one()
    assert report.status == "processed" and f"id={message.provider_message_id}" in report.payload


def _voucher_for(purchase: str) -> Voucher:
    return _payment(purchase).voucher


@pytest.mark.parametrize("lang", ["en", "sw"])
def test_the_gateway_gets_the_exact_receipt_in_the_page_language_in_one_part(
    app, shop, customer, worker, sms_gateway, lang
):
    page = customer.open_plans(shop.router.slug, lang=lang, **HOTSPOT)
    purchase = _buy_from(customer, shop, page)
    customer.wait_for(purchase, ("active",))
    _send_all()
    (sent,) = sms_gateway.wait_for(1)
    voucher = _voucher_for(purchase)
    assert voucher.language == lang
    ends = voucher.expires_at.astimezone(NAIROBI)
    month = {
        "en": ends.strftime("%b"),
        "sw": ("Jan Feb Mac Apr Mei Jun Jul Ago Sep Okt Nov Des".split())[ends.month - 1],
    }[lang]
    when = f"{ends:%H:%M} {ends.day} {month}"
    expected = {
        "en": f"Mama Njeri Cafe WiFi code: {voucher.code}. 1 Hour, valid until {when}, 500MB data. "
        "To reconnect, join the WiFi and enter this code on the login page.",
        "sw": f"Nambari ya WiFi ya Mama Njeri Cafe: {voucher.code}. 1 Hour, inaisha {when}, data 500MB. "
        "Kuunganisha tena: jiunge na WiFi, weka nambari hii ukurasa wa kuingia.",
    }[lang]
    assert sent.text == expected
    assert sent.parts == 1 and gsm7.is_gsm7(sent.text) and gsm7.septets(sent.text) <= 160
    assert sent.sender == "MAMANJERI"


def _buy_from(customer, shop, page, **extra) -> str:  # type: ignore[no-untyped-def]
    fields = form_fields(page.text)
    fields.update(plan_id=str(shop.plan.id), phone="0712 345 678", **extra)
    response = customer.http.post(
        f"{customer.base}/r/{shop.router.slug}/buy", data=fields, allow_redirects=False, timeout=10
    )
    assert response.status_code == 303, response.text[:300]
    return response.headers["Location"].replace(customer.base, "")


def test_a_long_plan_and_hotspot_name_still_fit_one_part(app, make_owner, make_plan):
    from portal.notify.texts import ReceiptFacts, receipt_text

    for lang in ("en", "sw"):
        text = receipt_text(
            ReceiptFacts(
                code="ABCD2345XYZW",
                plan_name="Familia ya wiki nzima — unlimited “super” plan ✨",
                hotspot_name="Mama Njeri Cafe & Guest House Wi‑Fi",
                language=lang,
                expires_at=None,
                duration_s=45 * 60,
                data_limit_bytes=10 * 1024**3,
                devices=50,
            )
        )
        assert gsm7.is_gsm7(text) and gsm7.parts(text) == 1, text
        assert "ABCD2345XYZW" in text


def test_the_opt_out_tick_box_sends_nothing(app, shop, customer, worker, sms_gateway):
    page = customer.open_plans(shop.router.slug, **HOTSPOT)
    assert 'name="no_sms"' in page.text
    purchase = _buy_from(customer, shop, page, no_sms="y")
    customer.wait_for(purchase, ("active",))
    assert _voucher_for(purchase).sms_opt_out is True
    assert _send_all() == {} and _messages() == []


def test_send_my_code_again_is_rate_limited(app, shop, customer, worker, sms_gateway):
    purchase = _buy(customer, shop)
    customer.wait_for(purchase, ("active",))
    _send_all()
    page = customer.http.get(f"{customer.base}{purchase}", timeout=5)
    assert "Send my code again by SMS" in page.text
    fields = form_fields(page.text)
    again = customer.http.post(f"{customer.base}{purchase}/sms", data={"csrf_token": fields["csrf_token"]}, timeout=5)
    assert again.status_code == 200 and "We sent your code again by SMS" in again.text
    refused = customer.http.post(f"{customer.base}{purchase}/sms", data={"csrf_token": fields["csrf_token"]}, timeout=5)
    assert refused.status_code == 429
    _send_all()
    assert [m.kind for m in _messages()] == ["receipt", "resend"]
    assert len(sms_gateway.wait_for(2)) == 2


def test_the_owners_monthly_cap_holds_messages_back(app, shop, customer, worker, sms_gateway):
    accounts.save_settings(shop.owner.id, monthly_cap=1)
    for phone in ("0712 345 678", "0712 345 679"):
        customer.wait_for(_buy(customer, shop, phone=phone), ("active",))
    counts = _send_all()
    assert counts == {"sent": 1, "skipped": 1}
    skipped = _messages(SmsMessage.state == "skipped")
    assert "cap" in skipped[0].last_error and len(sms_gateway.messages) == 1


def test_without_a_username_no_sms_is_queued(app, shop, customer, worker, sms_gateway):
    app.config["PORTAL_SMS_USERNAME"] = ""
    customer.wait_for(_buy(customer, shop), ("active",))
    assert _messages() == [] and accounts.sms_status(shop.owner.id).sending is False


def test_a_delivery_report_to_a_wrong_token_changes_nothing(app, shop, customer, worker, sms_gateway):
    customer.wait_for(_buy(customer, shop), ("active",))
    _send_all()
    wait_until(lambda: _messages()[0].state == "delivered", timeout=5)
    (message,) = _messages()
    answer = requests.post(
        f"{app.live_url}/hooks/sms/not-the-token/delivery",
        data={"id": message.provider_message_id, "status": "Failed"},
        timeout=5,
    )
    assert answer.status_code == 200
    assert _messages()[0].state == "delivered" and _count(SmsDeliveryReport) == 1


def test_failed_and_never_reported_numbers_keep_their_outcome(app, shop, customer, worker, sms_gateway):
    for phone in ("0712 345 111", "0712 345 222"):
        customer.wait_for(_buy(customer, shop, phone=phone), ("active",))
    _send_all()
    wait_until(lambda: any(m.state == "undelivered" for m in _messages()), timeout=5)
    states = {m.phone: (m.state, m.delivery_reason) for m in _messages()}
    assert states == {"254712345111": ("undelivered", "DeliveryFailure"), "254712345222": ("sent", None)}
    page = requests.get(sms_gateway.base_url + "/", timeout=5).text
    assert "+254712345111" in page and "never reported" in page


def test_no_provider_credential_in_a_database_dump_or_a_log_line(app, shop, customer, worker, sms_gateway, caplog):
    caplog.set_level(logging.DEBUG)
    own_key = "atsk_owner_own_secret_key_7f3a"
    sms_gateway.add_account("mamanjeri", own_key)
    accounts.save_settings(shop.owner.id, at_username="mamanjeri", at_api_key=own_key)
    customer.wait_for(_buy(customer, shop), ("active",))
    _send_all()
    (sent,) = sms_gateway.wait_for(1)
    assert sent.username == "mamanjeri"  # the owner's own account sent it
    dump = "\n".join(_dump_database())
    assert own_key not in dump and SANDBOX_API_KEY not in dump
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert own_key not in logged and SANDBOX_API_KEY not in logged
    assert _messages()[0].account == "owner"


def _dump_database() -> list[str]:
    lines = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(sa.select(table)).all():
            lines.append(repr(tuple(row)))
    return lines


def test_a_wrong_api_key_is_retried_and_named_without_the_key(app, shop, customer, worker, sms_gateway):
    app.config["PORTAL_SMS_API_KEY"] = "wrong-key-123"
    customer.wait_for(_buy(customer, shop), ("active",))
    assert _send_all() == {"retrying": 1}
    (message,) = _messages()
    assert "SmsAuthFailed" in message.last_error and "wrong-key-123" not in message.last_error
    assert re.search(r"refused the username or API key", message.last_error)


def test_the_sender_holds_back_while_a_voucher_is_going_onto_its_router(
    app, shop, customer, worker, sms_gateway, monkeypatch
):
    import time

    from portal.models import Activation

    customer.wait_for(_buy(customer, shop), ("active",))
    activation = db.session.scalars(sa.select(Activation)).one()
    db.session.execute(
        sa.update(Activation).values(status="running", lease_until=datetime.now(UTC) + timedelta(minutes=1))
    )
    db.session.commit()
    monkeypatch.setattr(outbox, "ACTIVATIONS_FIRST_MAX_WAIT_S", 0.6)
    started = time.monotonic()
    assert _send_all() == {"sent": 1}
    assert time.monotonic() - started >= 0.6  # it waited for the (pretend) running activation, then sent
    db.session.execute(sa.update(Activation).where(Activation.id == activation.id).values(status="done"))
    db.session.commit()


def test_a_pull_routers_acknowledgement_queues_one_receipt(
    app, shop, make_pull_router, pulling_router, customer, router_box, sms_gateway
):
    shop.router, token = make_pull_router(shop.owner, interval_s=15)
    purchase = _buy(customer, shop, **{"mac": "AA:BB:CC:DD:EE:01", "ip": "10.5.50.23"})
    assert customer.wait_for(purchase, ("paid",))["status"] == "paid"
    assert _messages() == []  # paid but not yet on the router: nothing to tell
    puller = pulling_router(shop.router, token)
    assert puller.sync_once() == 1
    puller.sync_once()  # a repeated ack changes nothing
    assert customer.status(purchase)["status"] == "active"
    assert _send_all() == {"sent": 1}
    (sent,) = sms_gateway.wait_for(1)
    assert _voucher_for(purchase).code in sent.text


def test_the_cli_says_how_sms_stands_and_sends_what_is_due(app, shop, customer, worker, sms_gateway):
    customer.wait_for(_buy(customer, shop), ("active",))
    runner = app.test_cli_runner()
    status = runner.invoke(args=["sms", "status", "--owner", shop.owner.email])
    assert status.exit_code == 0 and "SMS is on, through the platform's account." in status.output
    assert "delivery reports URL: http" in status.output and SANDBOX_API_KEY not in status.output
    sent = runner.invoke(args=["sms", "send"])
    assert sent.exit_code == 0 and "1 sent" in sent.output
    assert len(sms_gateway.wait_for(1)) == 1
    assert runner.invoke(args=["alerts", "check"]).output.strip() == "no change"


def test_raw_delivery_reports_are_purged_after_ninety_days(app, shop):
    db.session.add_all([SmsDeliveryReport(payload="id=old&status=Success", message_id="old",
                                          received_at=datetime.now(UTC) - timedelta(days=91)),
                        SmsDeliveryReport(payload="id=new&status=Success", message_id="new")])
    db.session.commit()
    assert delivery.purge_old_reports() == 1
    assert db.session.scalars(sa.select(SmsDeliveryReport.message_id)).all() == ["new"]

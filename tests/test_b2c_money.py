"""Payouts and refunds over B2C, through the sandbox Daraja over real HTTP: sent at most once,
a timeout resolved by Transaction Status, every outcome one ledger entry at most."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import padding

from portal.core.extensions import db
from portal.models import LedgerEntry, Payment, Payout, Refund, WebhookLog
from portal.money import b2c_transfers, ledger, payouts, refunds
from portal.mpesa.b2c import security_credential
from portal.sandbox import daraja_b2c
from portal.sandbox.daraja_b2c import sandbox_keypair

from .conftest import wait_until
from .money_support import INITIATOR_PASSWORD, MONEY_OVERRIDES, buy, resend_callback


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return dict(MONEY_OVERRIDES)


PHONE = "0712 345 678"


def _fresh(model, row_id):  # type: ignore[no-untyped-def]
    db.session.expire_all()
    return db.session.get(model, row_id)


def _wait_state(model, row_id, states=("completed", "failed"), timeout=10.0):  # type: ignore[no-untyped-def]
    return wait_until(lambda: (r := _fresh(model, row_id)) is not None and r.state in states and r, timeout=timeout)


def _confirmed_phone(shop, phone: str = PHONE) -> None:  # type: ignore[no-untyped-def]
    check = payouts.set_payout_phone(shop.owner, phone, actor="test")
    assert _wait_state(Payout, check.id).state == "completed"
    assert payouts.payout_phone(shop.owner.id)[1] is True


def _credit(shop, amount: int) -> None:  # type: ignore[no-untyped-def]
    admin_reason = "opening balance for the test"
    ledger.adjust(shop.owner, amount, admin_reason, actor="test")


def test_security_credential_is_pkcs1_v15_of_the_password_and_differs_each_time(daraja):
    key, cert = sandbox_keypair()
    first, second = security_credential("Safaricom999!*!", cert), security_credential("Safaricom999!*!", cert)
    assert len(first) == 344 and first != second
    assert key.decrypt(base64.b64decode(first), padding.PKCS1v15()) == b"Safaricom999!*!"


def test_a_new_payout_phone_is_confirmed_by_a_small_test_payout(platform_shop, daraja):
    _confirmed_phone(platform_shop)
    sent = daraja.b2c.payments[-1]
    assert sent["PartyB"] == "254712345678" and sent["Amount"] == 10 and sent["CommandID"] == "BusinessPayment"
    assert ledger.balance(platform_shop.owner.id) == 0  # the check is the platform's cost
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookLog).where(WebhookLog.kind == "b2c_result")) == 1


def test_payouts_run_pays_the_balance_once_and_prints_one_line_per_owner(app, platform_shop, daraja, make_owner):
    _confirmed_phone(platform_shop)
    _credit(platform_shop, 950)
    poor = make_owner()
    ledger.adjust(poor, 20, "small balance", actor="test")
    result = app.test_cli_runner().invoke(args=["payouts", "run"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    mine = next(line for line in lines if line.startswith(platform_shop.owner.email))
    assert "KES 950" in mine and "sent" in mine
    assert "below the KES 500 minimum" in next(line for line in lines if line.startswith(poor.email))
    payout = db.session.scalars(sa.select(Payout).where(Payout.kind == "payout")).one()
    assert _wait_state(Payout, payout.id).state == "completed"
    assert ledger.balance(platform_shop.owner.id) == 0
    again = app.test_cli_runner().invoke(args=["payouts", "run"])
    assert "below the KES 500 minimum (balance KES 0)" in again.output
    assert len([p for p in daraja.b2c.payments if p["Amount"] == 950]) == 1


def test_timeout_then_status_then_late_result_completes_once_with_one_entry(platform_shop, daraja):
    daraja.b2c.late_result_delay_s = None  # the test sends the late Result itself
    _confirmed_phone(platform_shop)
    _credit(platform_shop, 600)
    ledger.money_settings(platform_shop.owner.id).payout_phone = daraja_b2c.TIMEOUT_THEN_SUCCESS
    db.session.commit()
    payout = payouts.request_payout(platform_shop.owner, actor="test")
    assert b2c_transfers.send_transfer(Payout, payout.id) == "sent"
    assert wait_until(lambda: _fresh(Payout, payout.id).outcome_unknown)  # Daraja's QueueTimeOut: not a failure
    assert _fresh(Payout, payout.id).state == "sent"
    assert b2c_transfers.query_unknown_transfers()["asked"] == 1
    done = _wait_state(Payout, payout.id)
    assert done.state == "completed" and done.receipt
    assert daraja.b2c.send_late_results() == 1  # the Result, late
    wait_until(lambda: db.session.scalar(sa.select(sa.func.count()).select_from(WebhookLog).where(
        WebhookLog.kind == "b2c_result", WebhookLog.trans_id == done.originator_conversation_id)) == 1)
    entries = db.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.kind == "payout")).all()
    assert [(e.amount, e.source_id) for e in entries] == [(-600, payout.id)]
    assert len([p for p in daraja.b2c.payments if p["Amount"] == 600]) == 1
    assert _fresh(Payout, payout.id).state == "completed"


def test_a_late_duplicate_result_posts_nothing_twice(platform_shop, daraja):
    daraja.b2c.late_result_delay_s = 0.3
    _confirmed_phone(platform_shop)
    _credit(platform_shop, 700)
    ledger.money_settings(platform_shop.owner.id).payout_phone = daraja_b2c.LATE_DUPLICATE
    db.session.commit()
    payout = payouts.request_payout(platform_shop.owner, actor="test")
    b2c_transfers.send_transfer(Payout, payout.id)
    assert _wait_state(Payout, payout.id).state == "completed"
    assert wait_until(lambda: daraja.b2c.transfer(_fresh(Payout, payout.id).originator_conversation_id)["results_sent"] == 2)
    wait_until(lambda: db.session.scalar(sa.select(sa.func.count()).select_from(WebhookLog).where(
        WebhookLog.kind == "b2c_result", WebhookLog.status == "processed", WebhookLog.error == "duplicate")) == 1)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "payout")) == 1
    assert ledger.balance(platform_shop.owner.id) == 0


def test_insufficient_funds_fails_in_words_and_a_retry_gets_a_new_id(platform_shop, daraja, make_owner):
    _confirmed_phone(platform_shop)
    _credit(platform_shop, 800)
    ledger.money_settings(platform_shop.owner.id).payout_phone = daraja_b2c.INSUFFICIENT_FUNDS
    db.session.commit()
    payout = payouts.request_payout(platform_shop.owner, actor="test")
    b2c_transfers.send_transfer(Payout, payout.id)
    failed = _wait_state(Payout, payout.id)
    assert failed.state == "failed" and failed.is_retryable and "too little money" in failed.failure_reason
    first_id = failed.originator_conversation_id
    assert ledger.balance(platform_shop.owner.id) == 800  # nothing left the ledger
    ledger.money_settings(platform_shop.owner.id).payout_phone = "254712345678"  # the platform topped up; a new try
    db.session.execute(sa.update(Payout).where(Payout.id == payout.id).values(phone="254712345678"))
    db.session.commit()
    assert payouts.retry(payout.id, admin=make_owner(admin=True)) == "sent"
    done = _wait_state(Payout, payout.id)
    assert done.state == "completed" and done.originator_conversation_id != first_id and done.attempt == 2
    assert ledger.balance(platform_shop.owner.id) == 0


def test_an_invalid_initiator_fails_with_its_reason(platform_shop, daraja):
    daraja.b2c.add_initiator(platform_shop.platform_paybill.number, "testapi", "another password")
    check = payouts.set_payout_phone(platform_shop.owner, PHONE, actor="test")
    failed = _wait_state(Payout, check.id)
    assert failed.state == "failed" and failed.result_code == "2001"
    assert "initiator name, password or certificate" in failed.failure_reason
    assert payouts.payout_phone(platform_shop.owner.id)[1] is False


def test_a_second_payment_is_refunded_end_to_end_and_only_once(app, platform_shop, customer, daraja, worker):
    paid = buy(customer, platform_shop)
    resend_callback(daraja, paid, new_receipt="TSECOND002")
    second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "TSECOND002")).one()
    assert second.owner_id == platform_shop.owner.id and second.status == "unmatched"
    refund = refunds.refund_payment(platform_shop.owner, second.id, reason="paid twice for one voucher")
    done = _wait_state(Refund, refund.id)
    assert done.state == "completed" and done.method == "b2c" and done.phone == "254712345678"
    assert daraja.b2c.payments[-1]["Amount"] == 100
    ledger.post_sales()
    totals = ledger.totals(platform_shop.owner.id)
    assert (totals.sales, totals.commission, totals.refunds, totals.balance) == (200, 5, 100, 95)
    try:
        refunds.refund_payment(platform_shop.owner, second.id, reason="again")
    except refunds.RefundRefused as exc:
        assert "settled already" in str(exc) or "refunded already" in str(exc)
    else:
        raise AssertionError("a payment was refunded twice")
    out = app.test_cli_runner().invoke(args=["refunds", "send", "--payment", "TSECOND002"])
    assert out.exit_code != 0 and "refunded already" in out.output


def test_a_payment_that_opened_a_voucher_is_never_refunded(app, platform_shop, customer, daraja, worker):
    paid = buy(customer, platform_shop)
    try:
        refunds.refund_payment(platform_shop.owner, paid.id, reason="customer asked")
    except refunds.RefundRefused as exc:
        assert "opened a voucher" in str(exc)
    else:
        raise AssertionError("a payment that opened a voucher was refunded")
    out = app.test_cli_runner().invoke(args=["refunds", "send", "--payment", paid.receipt])
    assert out.exit_code != 0 and "opened a voucher" in out.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Refund)) == 0


def test_a_refunded_payment_can_never_open_a_voucher(platform_shop, customer, daraja, worker):
    from portal.money import problems

    paid = buy(customer, platform_shop)
    resend_callback(daraja, paid, new_receipt="TSECOND003")
    second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "TSECOND003")).one()
    refunds.refund_payment(platform_shop.owner, second.id, reason="paid twice")
    try:
        problems.issue_voucher_for_payment(platform_shop.owner, second.id, platform_shop.plan.id,
                                           platform_shop.router.id, reason="give them a voucher")
    except problems.ProblemActionError:
        pass
    else:
        raise AssertionError("a refunded payment opened a voucher")


def test_a_refund_without_b2c_credentials_is_recorded_by_hand(shop, customer, daraja, worker):
    paid = buy(customer, shop)
    resend_callback(daraja, paid, new_receipt="TSECOND004")
    second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "TSECOND004")).one()
    try:
        refunds.refund_payment(shop.owner, second.id, reason="paid twice")
    except refunds.RefundRefused as exc:
        assert "by hand" in str(exc)
    refund = refunds.refund_payment(shop.owner, second.id, reason="paid twice", note="sent back from my own phone")
    assert (refund.method, refund.state, refund.note) == ("by_hand", "completed", "sent back from my own phone")
    assert daraja.b2c.payments == []
    assert ledger.totals(shop.owner.id).balance == 0  # the money never was the platform's to hold


def test_the_database_holds_no_initiator_password_in_plain_text(app, platform_shop, daraja):
    _confirmed_phone(platform_shop)
    dump = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                dump.append(repr(tuple(row)))
    text = "\n".join(dump)
    assert "b2c_result" in text  # the dump did read the rows
    for secret in (INITIATOR_PASSWORD, "test-consumer-secret-9c2e", "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059"):
        assert secret not in text


def _at_once(app, count: int, action):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(count)
    results: list[object] = []

    def run() -> None:
        with app.app_context():
            barrier.wait()
            results.append(action())
            db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


def test_two_admins_approving_at_once_send_one_b2c_request(app, platform_shop, daraja, make_owner):
    app.config["PORTAL_PAYOUT_REQUIRES_APPROVAL"] = True
    _confirmed_phone(platform_shop)
    _credit(platform_shop, 900)
    payout = payouts.request_payout(platform_shop.owner, actor="test")
    assert payout.state == "requested"
    admins = [make_owner(admin=True), make_owner(admin=True)]
    ids = iter([a.id for a in admins])
    lock = threading.Lock()

    def approve() -> str:
        from portal.models import User

        with lock:
            admin = db.session.get(User, next(ids))
        return payouts.approve_and_send(payout.id, admin=admin)

    results = _at_once(app, 2, approve)
    assert sorted(results) == ["already approved", "sent"]
    assert _wait_state(Payout, payout.id).state == "completed"
    assert len([p for p in daraja.b2c.payments if p["Amount"] == 900]) == 1


def test_two_workers_sending_at_once_send_one_b2c_request(app, platform_shop, daraja):
    _confirmed_phone(platform_shop)
    _credit(platform_shop, 1000)
    payout = payouts.request_payout(platform_shop.owner, actor="test")
    assert payout.state == "approved"
    results = _at_once(app, 4, lambda: b2c_transfers.send_transfer(Payout, payout.id))
    assert sorted(results) == ["not_due", "not_due", "not_due", "sent"]
    assert _wait_state(Payout, payout.id).state == "completed"
    assert len([p for p in daraja.b2c.payments if p["Amount"] == 1000]) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "payout")) == 1


def test_our_timeout_is_not_a_failure_and_the_payout_is_never_sent_again(platform_shop, daraja):
    _confirmed_phone(platform_shop)
    _credit(platform_shop, 650)
    payout = payouts.request_payout(platform_shop.owner, actor="test")
    daraja.fail_mode = "hang"  # the request reaches Daraja, whose answer comes after our timeout
    release = threading.Timer(2.5, lambda: setattr(daraja, "fail_mode", None))
    release.start()
    assert b2c_transfers.send_transfer(Payout, payout.id) == "unknown"
    assert _fresh(Payout, payout.id).state == "sent" and _fresh(Payout, payout.id).outcome_unknown
    assert b2c_transfers.send_transfer(Payout, payout.id) == "not_due"  # a sent payout is never sent again
    release.join()
    assert _wait_state(Payout, payout.id).state == "completed"  # its Result came after all
    assert b2c_transfers.query_unknown_transfers()["asked"] == 0  # nothing left to ask about
    assert len([p for p in daraja.b2c.payments if p["Amount"] == 650]) == 1
    assert ledger.balance(platform_shop.owner.id) == 0


def test_a_b2c_result_whose_processing_failed_is_reprocessed_once(app, platform_shop, daraja):
    import json
    from datetime import timedelta

    from portal.models import utcnow
    from portal.money import webhook_log

    daraja.b2c.result_delay_s = 3600.0  # the sandbox's own Result never comes: the stored one is the only one
    _credit(platform_shop, 400)
    settings = ledger.money_settings(platform_shop.owner.id)
    settings.payout_phone, settings.payout_phone_confirmed_at = "254712345678", utcnow()
    db.session.commit()
    payout = payouts.request_payout(platform_shop.owner, actor="test")
    b2c_transfers.send_transfer(Payout, payout.id)
    sent = _fresh(Payout, payout.id)
    body = {"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "ok", "TransactionID": "TREPROC001",
                       "OriginatorConversationID": sent.originator_conversation_id, "ConversationID": sent.conversation_id,
                       "ResultParameters": {"ResultParameter": [{"Key": "TransactionReceipt", "Value": "TREPROC001"}]}}}
    row = WebhookLog(kind="b2c_result", status="failed", paybill_id=platform_shop.platform_paybill.id,
                     payload=json.dumps(body), attempts=1, received_at=utcnow() - timedelta(minutes=5))
    db.session.add(row)
    db.session.commit()
    assert webhook_log.reprocess_failed()["processed"] == 1
    done = _fresh(Payout, payout.id)
    assert done.state == "completed" and done.receipt == "TREPROC001"
    assert _fresh(WebhookLog, row.id).status == "processed"
    assert webhook_log.reprocess_failed()["retried"] == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "payout")) == 1


def test_an_owners_own_paybill_with_b2c_refunds_by_mpesa_and_posts_no_balance(shop, customer, daraja, worker,
                                                                              b2c_certificate):
    daraja.b2c.add_initiator(shop.paybill.number, "cafeapi", "Cafe#Secret2026")
    b2c_transfers.set_b2c_credentials(shop.paybill, initiator_name="cafeapi", initiator_password="Cafe#Secret2026",
                                      actor="test")
    db.session.commit()
    paid = buy(customer, shop)
    resend_callback(daraja, paid, new_receipt="TOWNB2C001")
    second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "TOWNB2C001")).one()
    refund = refunds.refund_payment(shop.owner, second.id, reason="paid twice")
    done = _wait_state(Refund, refund.id)
    assert (done.method, done.state, done.paybill_id) == ("b2c", "completed", shop.paybill.id)
    assert daraja.b2c.payments[-1]["PartyA"] == shop.paybill.number  # from the paybill that received the money
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "refund")) == 0


def test_b2c_goes_to_daraja_base_url_whatever_the_paybills_environment(app, platform_shop, daraja, b2c_certificate):
    # A production paybill would talk to api.safaricom.co.ke; DARAJA_BASE_URL (the sandbox here) wins.
    platform_shop.platform_paybill.environment = "production"
    db.session.commit()
    app.config["PORTAL_B2C_CERT_PRODUCTION"] = b2c_certificate
    assert app.config["DARAJA_BASE_URL"] == daraja.base_url
    _confirmed_phone(platform_shop)
    assert ("POST", "/mpesa/b2c/v3/paymentrequest") in daraja.received


def test_a_paybill_without_a_certificate_says_what_to_set(app, platform_shop, daraja):
    app.config["PORTAL_B2C_CERT_SANDBOX"] = ""
    check = payouts.set_payout_phone(platform_shop.owner, PHONE, actor="test")
    failed = _fresh(Payout, check.id)
    assert failed.state == "failed" and "PORTAL_B2C_CERT_SANDBOX" in failed.failure_reason
    assert daraja.b2c.payments == []


def test_money_held_for_a_refund_is_never_paid_out(platform_shop, customer, daraja, worker):
    paid = buy(customer, platform_shop)
    resend_callback(daraja, paid, new_receipt="THELD00001")
    ledger.post_sales()
    assert ledger.balance(platform_shop.owner.id) == 195  # 95 earned + 100 paid twice, held
    assert payouts.available(platform_shop.owner.id) == 95
    second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "THELD00001")).one()
    failed = _wait_state(Refund, refunds.refund_payment(platform_shop.owner, second.id, reason="paid twice",
                                                         phone=daraja_b2c.INSUFFICIENT_FUNDS).id)
    assert failed.state == "failed" and failed.is_retryable
    assert payouts.available(platform_shop.owner.id) == 95  # a retry may still send it back


def test_a_refund_made_while_daraja_was_unreachable_is_sent_by_the_job_once(app, platform_shop, customer, daraja,
                                                                            worker):
    paid = buy(customer, platform_shop)
    resend_callback(daraja, paid, new_receipt="TDOWN00001")
    second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "TDOWN00001")).one()
    app.config["DARAJA_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens: provably not sent
    try:
        refund = refunds.refund_payment(platform_shop.owner, second.id, reason="paid twice")
        assert _fresh(Refund, refund.id).state == "approved"  # back to approved, for the job
    finally:
        app.config["DARAJA_BASE_URL"] = daraja.base_url
    assert daraja.b2c.payments == []
    assert refunds.send_approved_refunds() == {"sent": 1, "other": 0}
    assert _wait_state(Refund, refund.id).state == "completed"
    assert refunds.send_approved_refunds() == {"sent": 0, "other": 0}
    assert len(daraja.b2c.payments) == 1

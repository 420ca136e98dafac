"""A B2C request M-Pesa lost: the transfer stays sent (never sent again on its own), an admin may
declare it not sent once M-Pesa has had no record of it for a day, and should it turn up paid
after a retry went out, the possible double payment is reported, not swallowed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import AuditLog, LedgerEntry, Payout, WebhookLog, utcnow
from portal.money import b2c_transfers, ledger, payouts
from portal.sandbox import daraja_b2c

from .conftest import wait_until
from .dashboard_support import flashes
from .money_support import MONEY_OVERRIDES
from .test_b2c_money import _confirmed_phone, _credit, _fresh, _wait_state


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return dict(MONEY_OVERRIDES)


def _sent_payout(shop, amount: int, phone: str) -> Payout:  # type: ignore[no-untyped-def]
    """The owner's balance of ``amount`` paid out to ``phone`` (a sandbox outcome number)."""
    _confirmed_phone(shop)
    _credit(shop, amount)
    ledger.money_settings(shop.owner.id).payout_phone = phone
    db.session.commit()
    payout = payouts.request_payout(shop.owner, actor="test")
    assert b2c_transfers.send_transfer(Payout, payout.id) == "sent"
    return payout


def _lost_payout(shop) -> Payout:  # type: ignore[no-untyped-def]
    """A payout whose request M-Pesa acknowledged and then lost, asked about once: "no record"."""
    payout = _sent_payout(shop, 700, daraja_b2c.LOST_ONCE)
    _ask_now(payout.id)
    return _fresh(Payout, payout.id)


def _ask_now(payout_id: int) -> None:
    asked = db.session.scalar(sa.select(sa.func.count()).select_from(WebhookLog).where(WebhookLog.kind == "b2c_status"))
    assert b2c_transfers.query_now(Payout, payout_id)
    wait_until(lambda: db.session.scalar(sa.select(sa.func.count()).select_from(WebhookLog).where(
        WebhookLog.kind == "b2c_status", WebhookLog.status == "processed")) == asked + 1)


def _sent_ago(payout_id: int, hours: float) -> None:
    db.session.execute(sa.update(Payout).where(Payout.id == payout_id).values(sent_at=utcnow() - timedelta(hours=hours)))
    db.session.commit()


def test_a_lost_request_stays_sent_with_m_pesas_words_and_is_never_sent_again(platform_shop, daraja):
    lost = _lost_payout(platform_shop)

    assert lost.state == "sent" and lost.result_code == "2032" and "no record" in lost.result_desc
    assert b2c_transfers.send_transfer(Payout, lost.id) == "not_due"
    assert len([p for p in daraja.b2c.payments if p["Amount"] == 700]) == 1
    assert ledger.balance(platform_shop.owner.id) == 700  # nothing left the owner's balance


def test_declaring_not_sent_waits_a_day_of_no_record_then_a_retry_pays_once(platform_shop, daraja, make_owner):
    lost = _lost_payout(platform_shop)
    admin = make_owner(admin=True)

    assert "M-Pesa may still find it" in b2c_transfers.declare_not_sent(Payout, lost.id, actor=admin)
    _sent_ago(lost.id, 25)
    assert b2c_transfers.declare_not_sent(Payout, lost.id, actor=admin, note="checked on the org portal") is None

    failed = _fresh(Payout, lost.id)
    assert failed.state == "failed" and failed.is_retryable and admin.email in failed.failure_reason
    audit = db.session.scalars(sa.select(AuditLog).where(AuditLog.action == "payout.declared_not_sent")).one()
    assert audit.object_id == str(lost.id) and "checked on the org portal" in audit.detail
    assert payouts.retry(lost.id, admin=admin) == "sent"  # the number is paid on its second request
    done = _wait_state(Payout, lost.id)
    assert done.state == "completed" and done.attempt == 2
    assert ledger.balance(platform_shop.owner.id) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "payout")) == 1


def test_declaring_is_refused_unless_m_pesas_latest_word_is_no_record(platform_shop, daraja, make_owner):
    daraja.b2c.late_result_delay_s = None
    payout = _sent_payout(platform_shop, 650, daraja_b2c.TIMEOUT_THEN_SUCCESS)
    assert wait_until(lambda: _fresh(Payout, payout.id).outcome_unknown)
    _sent_ago(payout.id, 48)

    refusal = b2c_transfers.declare_not_sent(Payout, payout.id, actor=make_owner(admin=True))

    assert "ask M-Pesa again first" in refusal and _fresh(Payout, payout.id).state == "sent"


def test_a_lost_request_found_later_completes_its_transfer_if_not_retried(platform_shop, daraja, make_owner):
    lost = _lost_payout(platform_shop)
    _sent_ago(lost.id, 25)
    assert b2c_transfers.declare_not_sent(Payout, lost.id, actor=make_owner(admin=True)) is None

    assert daraja.b2c.release_lost() == 1  # M-Pesa had it after all

    done = _wait_state(Payout, lost.id, states=("completed",))
    assert done.receipt and ledger.balance(platform_shop.owner.id) == 0


def test_a_lost_request_paid_after_its_retry_is_reported_as_a_possible_double_payment(platform_shop, daraja, make_owner):
    lost = _lost_payout(platform_shop)
    first_id = lost.originator_conversation_id
    admin = make_owner(admin=True)
    _sent_ago(lost.id, 25)
    assert b2c_transfers.declare_not_sent(Payout, lost.id, actor=admin) is None
    assert payouts.retry(lost.id, admin=admin) == "sent"
    assert _wait_state(Payout, lost.id).state == "completed"

    assert daraja.b2c.release_lost() == 1  # the first request is paid too

    entry = wait_until(lambda: db.session.scalars(sa.select(WebhookLog).where(
        WebhookLog.kind == "b2c_result", WebhookLog.trans_id == first_id)).first())
    assert entry.error == "earlier_attempt_paid"
    audit = db.session.scalars(sa.select(AuditLog).where(AuditLog.action == "payout.earlier_attempt_paid")).one()
    assert first_id in audit.detail and "double payment" in audit.detail
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "payout")) == 1


def test_an_admin_declares_it_from_the_payouts_page_and_an_owner_cannot(app, platform_shop, daraja, signed_in):
    lost = _lost_payout(platform_shop)
    _, owner_browser = signed_in(platform_shop.owner)
    _, admin = signed_in(admin=True)
    page = admin.get("/dashboard/payouts").text
    assert "no record of it" in page and "Declare not sent" not in page  # not before a day

    _sent_ago(lost.id, 25)
    assert "Declare not sent" in admin.get("/dashboard/payouts").text
    url = f"/dashboard/payouts/{lost.id}/declare-not-sent"
    assert owner_browser.post(url, {}).status_code == 404 and _fresh(Payout, lost.id).state == "sent"

    done = admin.follow(admin.post(url, {"note": "not on the org portal"}))

    assert any("declared not sent" in text for _, text in flashes(done.text))
    assert _fresh(Payout, lost.id).state == "failed" and "Retry" in done.text


def test_the_cli_declares_it_too_and_says_why_not_when_it_may_not(app, platform_shop, daraja):
    lost = _lost_payout(platform_shop)
    runner = app.test_cli_runner()

    early = runner.invoke(args=["payouts", "declare-not-sent", str(lost.id)])
    assert early.exit_code != 0 and "M-Pesa may still find it" in early.output
    _sent_ago(lost.id, 25)
    done = runner.invoke(args=["payouts", "declare-not-sent", str(lost.id), "--note", "org portal shows nothing"])

    assert done.exit_code == 0, done.output
    assert "declared not sent" in done.output and _fresh(Payout, lost.id).state == "failed"
    assert runner.invoke(args=["refunds", "declare-not-sent", "999999"]).output.strip().endswith("no such transfer")


def test_a_success_for_an_id_that_is_not_an_earlier_attempt_of_ours_changes_nothing(platform_shop, daraja):
    _confirmed_phone(platform_shop)
    check = db.session.scalars(sa.select(Payout)).one()
    current = check.originator_conversation_id
    for stranger in ("PO-999999-1-abcdef12", current, f"PO-{check.id}-{check.attempt + 1}-abcdef12", "XX-1-1-abcdef12"):
        assert b2c_transfers._earlier_attempt_paid(stranger, "R1", None) == "ignored"
    assert not db.session.scalars(sa.select(AuditLog).where(AuditLog.action.like("%earlier_attempt%"))).all()

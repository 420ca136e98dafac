"""Reprocessing caps its attempts per row and moves on: rows that can never be recorded neither
starve a genuine C2B confirmation behind them nor retry for ever, and the owner sees the ones
that gave up on money.

The reprocessing job's clock is moved by hand (the job runs as the scheduler runs it, through
jobs.record_run); the webhooks arrive over real HTTP. Run on PostgreSQL too (TEST_DATABASE_URL).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from portal.core.database import use_autocommit_in_this_thread
from portal.core.extensions import db
from portal.jobs import record_run
from portal.models import Payment, WebhookLog, utcnow
from portal.money import webhook_log

from .test_purchase_flow import _count
from .test_webhook_poison import _c2b_body

POISONED = 120  # more than one run's batch of 100


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> Any:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The webhook log's idea of now (scheduling, cut-offs), for the job and the live server alike."""
    c = Clock()
    monkeypatch.setattr(webhook_log, "utcnow", c)
    return c


class ProcessKilled(BaseException):
    """Stands in for the process dying mid-way: nothing in the app catches it."""


@pytest.fixture
def settlement_bugs(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """TransIDs starting POISON always make settlement raise; GENUINE ones hit a locked database once."""
    real = webhook_log.settlement.record_c2b_payment
    calls = {"genuine": 0}

    def record(**kwargs: Any) -> Any:
        if kwargs["trans_id"].startswith("POISON"):
            raise RuntimeError(f"settlement bug on {kwargs['trans_id']}")
        if kwargs["trans_id"].startswith("GENUINE"):
            calls["genuine"] += 1
            if calls["genuine"] == 1:
                raise sa.exc.OperationalError("UPDATE payments", {}, Exception("database is locked"))
        return real(**kwargs)

    monkeypatch.setattr(webhook_log.settlement, "record_c2b_payment", record)
    return calls


def _confirm(app, token: str, trans_id: str) -> None:  # type: ignore[no-untyped-def]
    answer = requests.post(f"{app.live_url}/hooks/{token}/c2b/confirm",
                           data=json.dumps(_c2b_body(trans_id, "NOSUCHCODE")).encode(),
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["ResultCode"] == 0


def _reprocess() -> dict[str, int]:
    return record_run("reprocess_webhooks", webhook_log.reprocess_failed)


def _poisoned() -> list[WebhookLog]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(WebhookLog).where(WebhookLog.trans_id.like("POISON%"))))


def test_poisoned_rows_neither_starve_a_genuine_confirmation_nor_retry_for_ever(app, shop, clock, settlement_bugs, signed_in):
    for n in range(POISONED):
        _confirm(app, shop.paybill.webhook_token, f"POISON{n:04d}")
    _confirm(app, shop.paybill.webhook_token, "GENUINE001")  # the newest row, behind all of them
    assert _count(WebhookLog, WebhookLog.status == "failed") == POISONED + 1
    assert _count(Payment) == 0

    for _ in range(4):  # two minutes of the job running every 30 s
        clock.advance(seconds=30)
        _reprocess()

    genuine = db.session.scalars(sa.select(Payment).where(Payment.receipt == "GENUINE001")).one()
    assert genuine.status == "unmatched" and genuine.amount == 50  # the money is recorded
    assert _count(WebhookLog, WebhookLog.trans_id == "GENUINE001", WebhookLog.status == "processed") == 1

    for _ in range(12):  # then most of a day, an hour at a time
        clock.advance(minutes=61)
        _reprocess()

    poisoned = _poisoned()
    assert len(poisoned) == POISONED
    assert {(e.status, e.attempts, e.next_try_at) for e in poisoned} == {("failed", webhook_log.MAX_ATTEMPTS, None)}
    assert all(e.error.startswith(f"gave up after {webhook_log.MAX_ATTEMPTS} attempts") for e in poisoned)
    clock.advance(days=1)
    assert _reprocess()["retried"] == 0  # given up for good
    assert _count(Payment) == 1

    # The owner sees the money notices that gave up (the first page of them).
    from portal.money.problems import LIST_LIMIT, list_problems

    notices = list_problems(shop.owner).given_up_payment_notices
    assert len(notices) == LIST_LIMIT and all(n.trans_id.startswith("POISON") for n in notices)
    _, owner_browser = signed_in(shop.owner)
    page = owner_browser.get("/dashboard/problems").text
    assert "Payment notices we could not record" in page and "POISON0119" in page


def test_backoff_spaces_the_attempts_out(app, shop, clock, settlement_bugs):
    _confirm(app, shop.paybill.webhook_token, "POISON0001")
    entry = _poisoned()[0]
    assert (entry.attempts, entry.next_try_at) == (1, clock.now + webhook_log.RETRY_DELAYS[0])

    clock.advance(seconds=5)
    assert _reprocess()["retried"] == 0  # not due yet
    clock.advance(seconds=6)
    assert _reprocess()["retried"] == 1
    entry = _poisoned()[0]
    assert (entry.attempts, entry.next_try_at) == (2, clock.now + webhook_log.RETRY_DELAYS[1])


def test_a_row_whose_processing_kills_the_process_is_counted_and_capped(app, shop, clock, monkeypatch, signed_in):
    # The request stored its row and the process died before recording it: the row stays
    # "received". (Stored the way the view stores it: the death is what HTTP cannot show.)
    stuck = webhook_log.store_raw("c2b_confirmation", json.dumps(_c2b_body("KILLER0001", "NOSUCHCODE")).encode(),
                                  remote_addr="127.0.0.1", paybill_id=shop.paybill.id)

    def dies(**kwargs: Any) -> Any:
        raise ProcessKilled

    monkeypatch.setattr(webhook_log.settlement, "record_c2b_payment", dies)
    use_autocommit_in_this_thread(False)  # the job's own transactions, so the death rolls back
    runs = 0
    while runs < 20:
        db.session.expire_all()
        if db.session.get(WebhookLog, stuck.id).status != "received":
            break
        clock.advance(minutes=61)
        runs += 1
        try:
            webhook_log.reprocess_failed()
        except ProcessKilled:
            db.session.rollback()  # what the dead process's connection does

    use_autocommit_in_this_thread(True)
    db.session.expire_all()
    entry = db.session.get(WebhookLog, stuck.id)
    assert entry.status == "failed" and entry.next_try_at is None, (runs, entry.status, entry.attempts)
    assert entry.attempts == webhook_log.MAX_ATTEMPTS and "gave up" in entry.error
    assert runs == webhook_log.MAX_ATTEMPTS  # one attempt per run, the request's own counted
    clock.advance(days=1)
    assert webhook_log.reprocess_failed()["retried"] == 0

    from portal.money.problems import list_problems

    assert [n.id for n in list_problems(shop.owner).given_up_payment_notices] == [stuck.id]


def test_a_given_up_notice_is_recorded_when_tried_again_after_the_fix(app, shop, clock, monkeypatch, signed_in):
    from portal.models import AuditLog

    real = webhook_log.settlement.record_c2b_payment
    broken = [True]

    def record(**kwargs: Any) -> Any:
        if broken[0]:
            raise RuntimeError("settlement bug")
        return real(**kwargs)

    monkeypatch.setattr(webhook_log.settlement, "record_c2b_payment", record)
    _confirm(app, shop.paybill.webhook_token, "LATEFIX001")
    for _ in range(webhook_log.MAX_ATTEMPTS + 1):
        clock.advance(hours=2)
        _reprocess()
    entry = db.session.scalars(sa.select(WebhookLog).where(WebhookLog.trans_id == "LATEFIX001")).one()
    assert webhook_log.is_given_up(entry) and _count(Payment) == 0
    _, owner_browser = signed_in(shop.owner)
    _, stranger = signed_in()
    assert "Try again now" in owner_browser.get(f"/dashboard/logs/webhooks/{entry.id}").text
    problems = owner_browser.get("/dashboard/problems").text
    listed = problems[problems.index("Payment notices we could not record"):]
    assert f'action="/dashboard/logs/webhooks/{entry.id}/try-again"' in listed
    assert stranger.post(f"/dashboard/logs/webhooks/{entry.id}/try-again", {}).status_code == 404

    broken[0] = False  # the bug is fixed
    done = owner_browser.follow(owner_browser.post(f"/dashboard/logs/webhooks/{entry.id}/try-again", {"from": "problems"}))

    assert "tried again: processed" in done.text and "/dashboard/problems" in done.url
    payment = db.session.scalars(sa.select(Payment).where(Payment.receipt == "LATEFIX001")).one()
    assert payment.status == "unmatched" and payment.amount == 50
    assert db.session.scalars(sa.select(AuditLog).where(AuditLog.action == "webhook.try_again")).one().owner_id == shop.owner.id
    again = owner_browser.follow(owner_browser.post(f"/dashboard/logs/webhooks/{entry.id}/try-again", {}))
    assert "not given up" in again.text and _count(Payment) == 1

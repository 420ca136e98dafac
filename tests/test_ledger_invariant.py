"""The ledger invariant after a run that mixes purchases, duplicate callbacks, C2B payments,
refunds and payouts with faults: for every owner, balance = sales − commission − payouts −
refunds + adjustments, each total agrees with the rows it came from, and no entry lacks a source."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import LedgerEntry, Paybill, Payment, Payout, Refund, User
from portal.money import b2c_transfers, ledger, payouts, refunds
from portal.owners.paybills import register_c2b_urls
from portal.sandbox import daraja_b2c

from .conftest import wait_until
from .money_support import MONEY_OVERRIDES, buy, resend_callback


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return dict(MONEY_OVERRIDES)


def _settled(model, row_id):  # type: ignore[no-untyped-def]
    def state():  # type: ignore[no-untyped-def]
        db.session.expire_all()
        return db.session.get(model, row_id).state in ("completed", "failed")

    assert wait_until(state)
    return db.session.get(model, row_id)


def test_every_owner_balance_is_the_sum_of_its_sources_after_a_mixed_run(
    app, platform_shop, shop, customer, daraja, worker, make_owner
):
    daraja.b2c.late_result_delay_s = None
    platform = platform_shop
    register_c2b_urls(platform.platform_paybill)
    # Purchases on the platform's paybill, one callback delivered twice, one customer paying twice.
    first = buy(customer, platform)
    resend_callback(daraja, first)
    second_payment_of = buy(customer, platform)
    resend_callback(daraja, second_payment_of, new_receipt="TMIXED0001")
    buy(customer, platform)
    # A C2B payment quoting an already-paid voucher (kept for the owner), and one nobody can match.
    daraja.simulate_c2b(platform.platform_paybill.number, 100, first.voucher.code, trans_id="TMIXEDC2B1")
    daraja.simulate_c2b(platform.platform_paybill.number, 30, "NOSUCHCODE", trans_id="TMIXEDC2B2")
    # The owner with their own paybill sells too: no balance, commission owed.
    shop.plan.price = 100
    db.session.commit()
    buy(customer, shop)
    ledger.post_sales()
    # Refunds: one completes; one to a number the B2C account cannot pay fails (nothing posted).
    twice = db.session.scalars(sa.select(Payment).where(Payment.receipt == "TMIXED0001")).one()
    c2b_second = db.session.scalars(sa.select(Payment).where(Payment.receipt == "TMIXEDC2B1")).one()
    assert c2b_second.owner_id == platform.owner.id and c2b_second.status == "unmatched"
    ok = _settled(Refund, refunds.refund_payment(platform.owner, twice.id, reason="paid twice").id)
    short = _settled(Refund, refunds.refund_payment(platform.owner, c2b_second.id, reason="paid by C2B by mistake",
                                                    phone=daraja_b2c.INSUFFICIENT_FUNDS).id)
    assert (ok.state, short.state) == ("completed", "failed")
    # Payouts: the phone check, then one that times out and is resolved by Transaction Status,
    # with its Result arriving late; an admin's adjustment in between.
    check = payouts.set_payout_phone(platform.owner, "0712345678", actor="test")
    assert _settled(Payout, check.id).state == "completed"
    ledger.adjust(platform.owner, 250, "cash collected for the owner", actor=make_owner(admin=True))
    ledger.money_settings(platform.owner.id).payout_phone = daraja_b2c.TIMEOUT_THEN_SUCCESS
    db.session.commit()
    payout = payouts.request_payout(platform.owner, amount=300, actor="test")
    b2c_transfers.send_transfer(Payout, payout.id)
    assert wait_until(lambda: (db.session.expire_all(), db.session.get(Payout, payout.id).outcome_unknown)[1])
    b2c_transfers.query_unknown_transfers()
    assert _settled(Payout, payout.id).state == "completed"
    daraja.b2c.send_late_results()
    ledger.post_sales()
    ledger.post_sales()  # a second sweep finds nothing new

    owners = db.session.scalars(sa.select(User).where(User.id.in_(
        sa.select(LedgerEntry.owner_id).distinct()))).all()
    assert {o.id for o in owners} == {platform.owner.id, shop.owner.id}
    for owner in owners:
        t = ledger.totals(owner.id)
        assert t.balance == t.sales - t.commission - t.payouts - t.refunds + t.adjustments
        assert t.balance == ledger.balance(owner.id)
        assert ledger.verify(owner.id)
        on_platform = sa.select(Paybill.id).where(Paybill.owner_id.is_(None))
        received = db.session.scalars(sa.select(Payment).where(
            Payment.owner_id == owner.id, Payment.amount > 0, Payment.paybill_id.in_(on_platform),
            Payment.status.in_(("paid", "underpaid", "unmatched")))).all()
        assert t.sales == sum(p.amount for p in received)
        served = db.session.scalars(sa.select(Payment).where(Payment.owner_id == owner.id, Payment.status == "paid")).all()
        expected_commission = sum(ledger.commission_on(p.amount, 500) for p in served)
        assert t.commission + t.owed == expected_commission
        assert t.payouts == sum(db.session.scalars(sa.select(Payout.amount).where(
            Payout.owner_id == owner.id, Payout.kind == "payout", Payout.state == "completed")))
        assert t.refunds == sum(db.session.scalars(sa.select(Refund.amount).where(
            Refund.owner_id == owner.id, Refund.state == "completed", Refund.paybill_id.in_(on_platform))))
    mine = ledger.totals(platform.owner.id)
    assert (mine.sales, mine.commission, mine.refunds, mine.payouts, mine.adjustments) == (500, 15, 100, 300, 250)
    assert mine.balance == 335
    assert ledger.totals(shop.owner.id).owed == 5 and ledger.totals(shop.owner.id).balance == 0
    assert ledger.entries_without_source() == 0
    keys = db.session.execute(sa.select(LedgerEntry.source_type, LedgerEntry.source_id, LedgerEntry.kind)).all()
    assert len(keys) == len(set(keys))

"""The owner ledger: sales on the platform's paybill credit the owner less commission, exactly
once; own-paybill sales only post the commission owed to the platform; CLI and adjustments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import LedgerEntry
from portal.money import ledger

from .money_support import MONEY_OVERRIDES, buy, resend_callback


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return dict(MONEY_OVERRIDES)



def _run(app, *args: str):  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_platform_paybill_sale_credits_the_owner_less_commission_once(app, platform_shop, customer, daraja, worker):
    payment = buy(customer, platform_shop)
    resend_callback(daraja, payment)  # the same callback again: a duplicate
    assert ledger.post_sales() == {"sales": 1, "commissions": 1}
    assert ledger.post_sales() == {"sales": 0, "commissions": 0}  # the sweep is idempotent
    totals = ledger.totals(platform_shop.owner.id)
    assert (totals.sales, totals.commission, totals.balance) == (100, 5, 95)  # 5 % default
    commission = db.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.kind == "commission")).one()
    assert commission.commission_bp == 500 and commission.source_type == "payment" and commission.source_id == payment.id
    assert _run(app, "ledger", "balance", "--owner", platform_shop.owner.email).split()[-1] == "95"


def test_commission_is_fixed_when_the_sale_is_posted(app, platform_shop, customer, daraja, worker):
    buy(customer, platform_shop)
    ledger.post_sales()
    out = _run(app, "owner", "commission", "--email", platform_shop.owner.email, "--percent", "10")
    assert "10 %" in out
    buy(customer, platform_shop)
    ledger.post_sales()
    rates = sorted(db.session.scalars(sa.select(LedgerEntry.commission_bp).where(LedgerEntry.kind == "commission")))
    assert rates == [500, 1000]  # the first sale keeps its 5 %
    assert ledger.balance(platform_shop.owner.id) == (100 - 5) + (100 - 10)


def test_a_second_payment_is_credited_as_held_money_without_commission(app, platform_shop, customer, daraja, worker):
    payment = buy(customer, platform_shop)
    resend_callback(daraja, payment, new_receipt="TSECOND001")  # the customer paid twice
    ledger.post_sales()
    totals = ledger.totals(platform_shop.owner.id)
    assert (totals.sales, totals.commission) == (200, 5)  # the second 100 waits to be refunded or assigned


def test_own_paybill_sales_post_no_balance_only_commission_owed(app, shop, customer, daraja, worker):
    shop.plan.price = 100
    db.session.commit()
    buy(customer, shop)
    ledger.post_sales()
    totals = ledger.totals(shop.owner.id)
    assert totals.balance == 0 and totals.sales == 0
    assert totals.owed == 5
    entry = db.session.scalars(sa.select(LedgerEntry)).one()
    assert entry.account == "owed" and entry.kind == "commission" and entry.amount == -5


def test_an_adjustment_needs_a_reason_and_links_to_its_audit_row(app, platform_shop, make_owner):
    admin = make_owner(admin=True)
    try:
        ledger.adjust(platform_shop.owner, 50, "  ", actor=admin)
    except ledger.LedgerError as exc:
        assert "reason" in str(exc)
    else:
        raise AssertionError("an adjustment without a reason was accepted")
    entry = ledger.adjust(platform_shop.owner, 50, "cash sale paid in at the office", actor=admin)
    assert entry.source_type == "audit" and entry.reason.startswith("cash sale")
    assert ledger.balance(platform_shop.owner.id) == 50
    assert ledger.entries_without_source() == 0


def test_checkpoints_keep_the_balance_a_sum_of_entries(app, platform_shop, make_owner):
    admin = make_owner(admin=True)
    for n in range(3):
        ledger.adjust(platform_shop.owner, 10 + n, f"entry {n}", actor=admin)
    assert ledger.checkpoint_balances(settle=timedelta(0), min_new=2) == {"checkpoints": 1}
    assert ledger.checkpoint_balances(settle=timedelta(0), min_new=2) == {"checkpoints": 0}
    ledger.adjust(platform_shop.owner, -5, "after the checkpoint", actor=admin)
    assert ledger.balance(platform_shop.owner.id) == 10 + 11 + 12 - 5
    assert ledger.totals(platform_shop.owner.id).adjustments == 28
    assert ledger.verify(platform_shop.owner.id)
    out = _run(app, "ledger", "checkpoint")
    assert "0 owners checkpointed" in out  # the new entry is younger than the settle time

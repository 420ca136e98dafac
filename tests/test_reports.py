"""Overview numbers: Nairobi days, owner scope, success rate, time to online, customers online."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import StkInitiation, Voucher
from portal.owners import reports

from .test_dashboard_money import seed_payments

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 15:00 in Nairobi


def test_revenue_is_counted_per_nairobi_day_and_per_owner(app, shop, make_owner, make_paybill, make_router):
    # 21:30 UTC on 9 March is 00:30 on 10 March in Nairobi: it is today's money.
    seed_payments(shop, 2, start=datetime(2026, 3, 9, 21, 30, tzinfo=UTC), step=timedelta(minutes=1))
    seed_payments(shop, 3, start=datetime(2026, 3, 9, 20, 0, tzinfo=UTC), step=timedelta(minutes=1))  # yesterday
    seed_payments(shop, 4, start=NOW - timedelta(days=10))
    seed_payments(shop, 5, start=NOW - timedelta(days=40))  # outside the window
    seed_payments(shop, 6, status="failed", start=NOW - timedelta(hours=1))
    other = make_owner()
    seed_payments(shop, 7, owner_id=other.id, start=NOW - timedelta(hours=1))

    data = reports.build_overview(shop.owner, now=NOW)

    assert (data.revenue_today, data.revenue_7d, data.revenue_30d) == (20, 50, 90)
    assert data.paid_30d == 9
    assert len(data.daily_revenue) == 30 and data.daily_revenue[-1] == (NOW.date(), 20)
    admin = make_owner(admin=True)
    assert reports.build_overview(admin, now=NOW).revenue_today == 20 + 70


def test_success_rate_results_and_median(app, shop):
    def initiation(status: str, code: str | None) -> StkInitiation:
        return StkInitiation(account_reference="X", phone_number="254712345678", amount=10, paybill_number="174379",
                             paybill_id=shop.paybill.id, router_id=shop.router.id, status=status, result_code=code,
                             created_at=NOW - timedelta(hours=2))

    db.session.add_all([initiation("completed", "0") for _ in range(3)]
                       + [initiation("failed", "1032") for _ in range(2)] + [initiation("initiated", None)])
    for i, wait_s in enumerate((2, 4, 30)):
        paid = NOW - timedelta(hours=1, minutes=i)
        db.session.add(Voucher(code=f"MEDIAN{i}", owner_id=shop.owner.id, plan_id=shop.plan.id, router_id=shop.router.id,
                               status="active", paid_at=paid, activated_at=paid + timedelta(seconds=wait_s),
                               expires_at=NOW + timedelta(minutes=30) if i else NOW - timedelta(minutes=1)))
    db.session.commit()

    data = reports.build_overview(shop.owner, now=NOW)

    assert (data.completed_30d, data.initiations_30d) == (3, 6) and data.success_rate == 0.5
    assert {r.code: r.count for r in data.results} == {"0": 3, "1032": 2, "waiting": 1}
    assert data.median_paid_to_router_s == 4
    chart = reports.results_chart(data.results)
    assert [bar.value for bar in chart.bars] == [3, 2, 1] and chart.bars[0].width > chart.bars[1].width


def test_an_owner_with_nothing_gets_zeros_not_errors(app, make_owner):
    data = reports.build_overview(make_owner(), now=NOW)
    assert (data.revenue_30d, data.success_rate, data.median_paid_to_router_s, data.online_now.customers) == (0, None, None, 0)
    assert reports.revenue_chart(data.daily_revenue).max_value == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Voucher)) == 0


def test_todays_money_shows_at_once_while_past_days_are_cached(app, shop):
    import secrets

    from portal.core.extensions import db as database
    from portal.models import Payment, utcnow
    from portal.owners.reports import build_overview

    def paid(amount: int, when) -> None:  # type: ignore[no-untyped-def]
        database.session.add(Payment(public_id=secrets.token_urlsafe(8), owner_id=shop.owner.id, router_id=shop.router.id,
                                     amount_expected=amount, amount=amount, status="paid", created_at=when, paid_at=when))
        database.session.commit()

    from datetime import timedelta

    paid(50, utcnow() - timedelta(days=3))
    first = build_overview(shop.owner)
    paid(10, utcnow())

    second = build_overview(shop.owner)

    assert first.revenue_30d == 50 and first.revenue_today == 0
    assert second.revenue_today == 10 and second.revenue_30d == 60


def test_overview_shows_scheduler_health(app, shop, signed_in):
    from portal.jobs import record_run

    record_run("reconcile_initiations", lambda: {"queried": 0})
    record_run("refresh_tokens", lambda: 1 / 0)
    _, browser = signed_in(shop.owner)

    page = browser.get("/dashboard/overview").text

    assert "Scheduled jobs" in page and "reconcile initiations" in page
    assert "failed" in page and "ZeroDivisionError" not in page  # the error text is for admins
    _, admin = signed_in(admin=True)
    assert "failed: ZeroDivisionError" in admin.get("/dashboard/overview").text
    # Two jobs just ran, so the scheduler is alive: the others wait for their first turn, none is overdue.
    assert "Is <code>flask worker</code> running" not in page and "first turn is still to come" in page

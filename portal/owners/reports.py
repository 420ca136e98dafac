"""The overview page's numbers and its two charts, aggregated in SQL and drawn as plain SVG.

Everything is owner-scoped (an admin sees every owner) and bounded in time, so the cost depends on
the last 30 days of one owner's rows, not on the size of the table. Revenue reads only the covering
index ``ix_payments_owner_status_created`` (owner, status, created_at, id, INCLUDE amount on
PostgreSQL); initiations are reached through ``ix_initiations_router_created``.

Days are Nairobi days. Revenue is counted on the day the payment row was created (for an STK
purchase that is seconds before the money arrived), because that is the indexed column.

Benchmark (not a test): ``scripts/bench_dashboard.py`` seeds 1,000,000 payments into PostgreSQL
and times these queries and the payments list.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..core.cache import LockedTTLCache
from ..core.extensions import db
from ..models import JobRun, Payment, StkInitiation, User, Voucher, utcnow
from ..mpesa.result_codes import meaning_of
from . import online
from .scope import nairobi_day_start, nairobi_today, owned, via_router

REVENUE_DAYS = 30
RESULT_WINDOW = timedelta(days=30)
MEDIAN_WINDOW = timedelta(days=7)
MEDIAN_SAMPLE = 2000  # the latest activations are plenty for a median, and keep the read bounded


@dataclass(frozen=True)
class ResultSlice:
    code: str  # "0", "1032", … or "waiting" for initiations with no answer yet
    label: str
    count: int


@dataclass(frozen=True)
class Overview:
    revenue_today: int
    revenue_7d: int
    revenue_30d: int
    paid_30d: int
    initiations_30d: int
    completed_30d: int
    median_paid_to_router_s: float | None
    online_now: online.OnlineNow
    daily_revenue: list[tuple[date, int]]
    results: list[ResultSlice] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        """Paid initiations over all initiations in the window; None when there were none."""
        return self.completed_30d / self.initiations_30d if self.initiations_30d else None


def build_overview(user: User, *, now: datetime | None = None) -> Overview:
    """The overview for ``user`` (all owners for an admin). Read-only; a handful of indexed queries."""
    now = now or utcnow()
    per_day = _revenue_by_day(user, now=now)
    daily = [(day, amount) for day, amount, _ in per_day]
    today = nairobi_today(now)
    results, initiations, completed = _initiation_results(user, now - RESULT_WINDOW)
    return Overview(
        revenue_today=sum(amount for day, amount in daily if day == today),
        revenue_7d=sum(amount for day, amount in daily if day > today - timedelta(days=7)),
        revenue_30d=sum(amount for _, amount in daily),
        paid_30d=sum(count for _, _, count in per_day),
        initiations_30d=initiations,
        completed_30d=completed,
        median_paid_to_router_s=median_paid_to_router_s(user, now=now),
        online_now=online.online_now(user),
        daily_revenue=daily,
        results=results,
    )


def _nairobi_day(column: sa.ColumnElement) -> sa.ColumnElement:
    """The Nairobi calendar day of a UTC timestamp column, in SQL, for this database."""
    if db.session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone("Africa/Nairobi", column), sa.Date)
    return sa.func.date(column, "+3 hours")  # SQLite stores naive UTC text


def daily_revenue(user: User, *, now: datetime | None = None, days: int = REVENUE_DAYS) -> list[tuple[date, int]]:
    """KES of paid payments per Nairobi day, oldest first, with zero days filled in."""
    return [(day, amount) for day, amount, _ in _revenue_by_day(user, now=now, days=days)]


CLOSED_DAYS_TTL_S = 300.0


def _closed_days_cache() -> LockedTTLCache[dict[date, tuple[int, int]]]:
    # Per app, not per process: owner ids are only unique within one database.
    return current_app.extensions.setdefault("portal_closed_days", LockedTTLCache(CLOSED_DAYS_TTL_S, max_entries=5_000))


def _revenue_by_day(user: User, *, now: datetime | None = None, days: int = REVENUE_DAYS) -> list[tuple[date, int, int]]:
    """(day, KES, number of payments) per Nairobi day, oldest first, zero days filled in.

    Today is always counted live. The days before it are the expensive part (a month of
    payments) and change only when an owner settles an old payment by hand, so they are kept
    in this process for CLOSED_DAYS_TTL_S: such a correction shows within five minutes.
    """
    now = now or utcnow()
    today = nairobi_today(now)
    first_day = today - timedelta(days=days - 1)
    by_day = dict(_closed_days(user, first_day, today))
    by_day.update(_paid_per_day(user, nairobi_day_start(today), None))
    series = []
    for i in range(days):
        amount, count = by_day.get(first_day + timedelta(days=i), (0, 0))
        series.append((first_day + timedelta(days=i), amount, count))
    return series


def _closed_days(user: User, first_day: date, today: date) -> dict[date, tuple[int, int]]:
    key = ("all" if user.is_admin else user.id, first_day, today)
    return _closed_days_cache().get(
        key, lambda: _paid_per_day(user, nairobi_day_start(first_day), nairobi_day_start(today))
    ) or {}


def _paid_per_day(user: User, start: datetime, end: datetime | None) -> dict[date, tuple[int, int]]:
    """Paid KES and count per Nairobi day of payments created in [start, end): one indexed pass."""
    day = _nairobi_day(Payment.created_at).label("day")
    window = [Payment.created_at >= start] + ([Payment.created_at < end] if end is not None else [])
    rows = db.session.execute(
        sa.select(day, sa.func.coalesce(sa.func.sum(Payment.amount), 0), sa.func.count())
        .where(owned(Payment.owner_id, user), Payment.status == "paid", *window)
        .group_by(day)
    ).all()
    return {(d if isinstance(d, date) else date.fromisoformat(str(d))): (int(total), count) for d, total, count in rows}


def _initiation_results(user: User, since: datetime) -> tuple[list[ResultSlice], int, int]:
    rows = db.session.execute(
        sa.select(StkInitiation.status, StkInitiation.result_code, sa.func.count())
        .where(via_router(StkInitiation.router_id, user), StkInitiation.created_at >= since)
        .group_by(StkInitiation.status, StkInitiation.result_code)
    ).all()
    counts: Counter[str] = Counter()
    total = completed = 0
    for status, code, count in rows:
        total += count
        if status == "completed":
            completed += count
            code = "0"
        counts[code if code else ("waiting" if status == "initiated" else status)] += count
    slices = [ResultSlice(code, _result_label(code), count) for code, count in counts.most_common()]
    return slices, total, completed


def _result_label(code: str) -> str:
    if code == "waiting":
        return "no answer yet"
    if code == "expired":
        return "expired unanswered"
    meaning = meaning_of(code)
    return f"{code} · {meaning.reason.replace('_', ' ')}"


def median_paid_to_router_s(user: User, *, now: datetime | None = None) -> float | None:
    """Median seconds from the payment reaching us to the voucher working on the router.

    The start is ``paid_at``, stamped while the callback (or C2B notice, or query answer) that
    brought the money is processed, milliseconds after it arrived; the end is ``activated_at``,
    when the router took the hotspot user and, if it gave us the device's address, logged the
    device in. The browser's own login at the router comes after that and is not seen here, so
    the overview calls this "paid to ready on the router", not "PIN to online".
    """
    since = (now or utcnow()) - MEDIAN_WINDOW
    rows = db.session.execute(
        sa.select(Voucher.paid_at, Voucher.activated_at)
        .where(
            owned(Voucher.owner_id, user),
            Voucher.activated_at >= since,
            Voucher.paid_at.is_not(None),
            Voucher.source == "purchase",  # batch vouchers are made ahead of the sale
        )
        .order_by(Voucher.activated_at.desc())
        .limit(MEDIAN_SAMPLE)
    ).all()
    waits = [(activated - paid).total_seconds() for paid, activated in rows if activated >= paid]
    return statistics.median(waits) if waits else None


# ---------------------------------------------------------------------------------------------
# Charts: geometry here, markup in templates/dashboard/overview/_charts.html (autoescaped SVG)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    max_value: int
    axis_labels: list[tuple[float, str]]  # (x, text) under the bars


CHART_W, CHART_H, CHART_PAD = 600, 160, 20


def revenue_chart(daily: list[tuple[date, int]]) -> BarChart:
    """One bar per day; the tallest day fills the height, a zero day is a hairline."""
    top = max((amount for _, amount in daily), default=0) or 1
    slot = CHART_W / max(len(daily), 1)
    usable = CHART_H - CHART_PAD
    bars = []
    for i, (day, amount) in enumerate(daily):
        height = max(1.0, usable * amount / top) if amount else 1.0
        bars.append(Bar(round(i * slot + 1, 1), round(usable - height, 1), round(slot - 2, 1), round(height, 1),
                        day.strftime("%a %d %b"), amount))
    ticks = [(round(i * slot + slot / 2, 1), day.strftime("%d %b")) for i, (day, _) in enumerate(daily) if i % 7 == 0]
    return BarChart(CHART_W, CHART_H, bars, top, ticks)


ROW_H = 22


def results_chart(results: list[ResultSlice]) -> BarChart:
    """Horizontal bars, one per result code, longest first; label left, count right."""
    top = max((r.count for r in results), default=0) or 1
    label_w, value_w = 220, 60
    usable = CHART_W - label_w - value_w
    bars = [
        Bar(label_w, i * ROW_H + 3, round(max(1.0, usable * r.count / top), 1), ROW_H - 6, r.label, r.count)
        for i, r in enumerate(results)
    ]
    return BarChart(CHART_W, max(ROW_H, ROW_H * len(results)), bars, top, [])


# ---------------------------------------------------------------------------------------------
# Scheduler health


@dataclass(frozen=True)
class JobHealth:
    name: str
    last_finished_at: datetime | None
    last_status: str | None
    last_error: str | None
    result: str  # the last run's counts, in words
    is_overdue: bool  # no run for far longer than its interval while it should be running
    is_waiting_first_run: bool  # the scheduler runs, this job's first turn has not come yet


STALE_AFTER = timedelta(minutes=5)


def scheduler_health(*, now: datetime | None = None) -> list[JobHealth]:
    """Every scheduled job's last run (jobs.record_run keeps them), and whether it is overdue.

    A job is overdue when its last run is older than three intervals (at least five minutes).
    A job that never ran is overdue only when no job at all has run in the last five minutes
    (no ``flask worker`` and no inline scheduler): a six-hourly job has simply not had its first
    turn yet while the ten-second jobs keep running.
    """
    intervals: dict[str, dict[str, int]] = current_app.extensions["portal_job_intervals"]  # set by create_app
    now = now or utcnow()
    runs = {run.name: run for run in db.session.scalars(sa.select(JobRun))}
    latest = max((r.last_finished_at for r in runs.values() if r.last_finished_at), default=None)
    scheduler_alive = latest is not None and now - latest <= STALE_AFTER
    health = []
    for name, interval in intervals.items():
        run = runs.get(name)
        allowed = max(timedelta(**interval) * 3, STALE_AFTER)
        finished = run.last_finished_at if run else None
        health.append(JobHealth(
            name=name,
            last_finished_at=finished,
            last_status=run.last_status if run else None,
            last_error=run.last_error if run else None,
            result=describe_job_result(name, run.last_counts if run else None),
            is_overdue=(now - finished > allowed) if finished else not scheduler_alive,
            is_waiting_first_run=finished is None and scheduler_alive,
        ))
    return health


# What each job's counts mean, for owners: {count} is filled in; a zero count is left out.
JOB_COUNT_WORDS: dict[str, str] = {
    "queried": "{} asked M-Pesa", "pending": "{} still being processed", "settled": "{} settled",
    "errors": "{} could not be asked", "routers": "{} routers checked", "expired": "{} used up",
    "unreachable": "{} routers not answering", "started": "{} cash vouchers started",
    "retried": "{} webhooks retried", "processed": "{} processed", "still_failed": "{} still failing",
    "gave_up": "{} given up (see Problems)",
    # issue 17: send_sms, probe_quiet_routers, check_alerts
    "retrying": "{} SMS to try again", "reachable": "{} routers answering", "opened": "{} alerts opened",
    "notified": "{} alerts raised", "cleared": "{} alerts cleared", "all_clear": "{} all clears",
}
JOB_TOTAL_WORDS: dict[str, str] = {
    "expire_initiations": "{} unanswered payment requests expired",
    "expire_vouchers": "{} vouchers past their time removed",
    "purge_webhook_logs": "{} old webhook records deleted",
    "prune_rate_limit_hits": "{} old rate-limit records deleted",
    "purge_sms_reports": "{} old SMS delivery reports deleted",
}


def describe_job_result(name: str, counts: str | None) -> str:
    """A job's stored result (JSON from jobs.record_run) in words: "3 asked M-Pesa, 1 settled"."""
    if counts is None:
        return ""
    try:
        value = json.loads(counts)
    except ValueError:
        return counts  # cut at 500 characters, or written by an older version: show it as it is
    if isinstance(value, dict):
        parts = [JOB_COUNT_WORDS.get(key, f"{{}} {key.replace('_', ' ')}").format(n)
                 for key, n in value.items() if n]
        return ", ".join(parts) or "nothing to do"
    if isinstance(value, list):
        return "; ".join(str(item) for item in value) or "nothing to do"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return JOB_TOTAL_WORDS.get(name, "{} done").format(value) if value else "nothing to do"
    return str(value)

"""Payments whose callback never came, unpaid initiations, spent vouchers.

Each function claims its rows with a conditional UPDATE, so two workers running it at the same
moment never query or expire the same row twice; a final result goes through exactly the same
recording code as a callback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial

import sqlalchemy as sa
from flask import current_app

from . import activations, payments
from .extensions import db
from .models import Paybill, Payment, StkInitiation, Voucher, utcnow
from .mpesa.errors import DarajaError, DarajaRejected
from .paybills import DarajaCall, prepare_daraja_call

log = logging.getLogger(__name__)

QUERY_INTERVAL = timedelta(seconds=15)  # per initiation: Daraja spike-arrests fast pollers
QUERIES_PER_SECOND_PER_PAYBILL = 5.0


class PerPaybillRate:
    """Spaces out queries to one paybill's Daraja app; different paybills do not wait on each other."""

    def __init__(self, per_second: float, clock=time.monotonic, sleep=time.sleep) -> None:  # type: ignore[no-untyped-def]
        self.interval = 1.0 / per_second
        self.clock, self.sleep = clock, sleep
        self._next: dict[int, float] = defaultdict(float)
        self._lock = threading.Lock()

    def wait(self, paybill_id: int) -> None:
        with self._lock:
            now = self.clock()
            slot = max(now, self._next[paybill_id])
            self._next[paybill_id] = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


_rate = PerPaybillRate(QUERIES_PER_SECOND_PER_PAYBILL)


MAX_QUERIES_IN_FLIGHT = 48  # bounded; the per-paybill rate limit is what Daraja sees
RUN_BUDGET_S = 50.0  # one run stops in time for the next; what is left is still due then


def reconcile_stuck_initiations(
    batch: int = 1000, *, rate: PerPaybillRate | None = None, budget_s: float = RUN_BUDGET_S
) -> dict[str, int]:
    """STK-query initiations still ``initiated`` after ~30 s; record final answers like callbacks.

    Queries run in parallel: each paybill is its own Daraja app with its own rate limit, so the
    limiter spaces the queries of one paybill while others proceed. Rows are interleaved across
    paybills so one paybill's backlog never starves the rest. Every query is claimed first, so
    two workers never query the same initiation at once. A run keeps going while anything is due
    and its time budget lasts.
    """
    app = current_app._get_current_object()
    deadline = time.monotonic() + budget_s
    counts = {"queried": 0, "pending": 0, "settled": 0, "errors": 0}
    limiter = rate or _rate
    while time.monotonic() < deadline:
        due = _interleaved(_due_by_paybill(batch))
        db.session.commit()
        if not due:
            break
        calls: dict[int, DarajaCall] = {}
        with ThreadPoolExecutor(max_workers=min(MAX_QUERIES_IN_FLIGHT, len(due))) as pool:
            query = partial(_reconcile_one, app, rate=limiter, deadline=deadline, calls=calls)
            outcomes = list(pool.map(query, *zip(*due, strict=True)))
        round_queried = sum(1 for outcome in outcomes if outcome is not None)
        for outcome in outcomes:
            if outcome is not None:
                counts["queried"] += 1
                counts[outcome] += 1
        if round_queried == 0:
            break  # everything due this round was claimed by another worker
    return counts


def _interleaved(by_paybill: dict[int, list[tuple[int, str]]]) -> list[tuple[int, int, str]]:
    """(paybill, initiation, checkout) in round-robin order across paybills."""
    queues = [[(paybill_id, *row) for row in rows] for paybill_id, rows in by_paybill.items()]
    order: list[tuple[int, int, str]] = []
    for position in range(max((len(q) for q in queues), default=0)):
        order.extend(q[position] for q in queues if position < len(q))
    return order


def _due_by_paybill(limit: int) -> dict[int, list[tuple[int, str]]]:
    now = utcnow()
    older_than = now - timedelta(seconds=current_app.config["PORTAL_RECONCILE_AFTER_S"])
    rows = db.session.execute(
        sa.select(StkInitiation.id, StkInitiation.checkout_request_id, StkInitiation.paybill_id)
        .where(
            StkInitiation.status == "initiated",
            StkInitiation.checkout_request_id.is_not(None),
            StkInitiation.paybill_id.is_not(None),
            StkInitiation.created_at < older_than,
            sa.or_(StkInitiation.last_query_at.is_(None), StkInitiation.last_query_at < now - QUERY_INTERVAL),
        )
        .order_by(StkInitiation.last_query_at.is_not(None), StkInitiation.created_at)
        .limit(limit)
    ).all()
    grouped: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for initiation_id, checkout_id, paybill_id in rows:
        grouped[paybill_id].append((initiation_id, checkout_id))
    return grouped


def _reconcile_one(
    app, paybill_id: int, initiation_id: int, checkout_id: str, *, rate: PerPaybillRate, deadline: float,
    calls: dict[int, DarajaCall],
) -> str | None:  # type: ignore[no-untyped-def]
    """Claim, wait for the paybill's rate slot, query, record. None when not queried."""
    if time.monotonic() >= deadline:
        return None
    with app.app_context():
        try:
            if not _claim_query(initiation_id, utcnow()):
                return None
            rate.wait(paybill_id)
            return _query_one(checkout_id, paybill_id, calls)
        finally:
            db.session.remove()


def _claim_query(initiation_id: int, now) -> bool:  # type: ignore[no-untyped-def]
    won = db.session.execute(
        sa.update(StkInitiation)
        .where(
            StkInitiation.id == initiation_id,
            StkInitiation.status == "initiated",
            sa.or_(StkInitiation.last_query_at.is_(None), StkInitiation.last_query_at < now - QUERY_INTERVAL),
        )
        .values(last_query_at=now, query_count=StkInitiation.query_count + 1)
    ).rowcount == 1
    db.session.commit()
    return won


def _query_one(checkout_id: str, paybill_id: int | None, calls: dict[int, DarajaCall] | None = None) -> str:
    """Query one initiation and record a final answer. ``calls`` lets a run reuse each paybill's
    prepared credentials instead of loading and decrypting them for every query."""
    call = (calls or {}).get(paybill_id) if paybill_id else None
    if call is None:
        paybill = db.session.get(Paybill, paybill_id) if paybill_id else None
        if paybill is None:
            return "errors"
        call = prepare_daraja_call(paybill)
        if calls is not None:
            calls[paybill_id] = call
    try:
        answer = call.client.stk_query(call.account, call.tokens, checkout_id)
    except DarajaRejected as exc:
        log.warning("stk query refused checkout=%s: %s", checkout_id, exc)
        return "errors"
    except DarajaError as exc:
        log.info("stk query unavailable checkout=%s: %s", checkout_id, exc)
        return "errors"
    if answer.is_pending or answer.result_code is None:
        return "pending"
    outcome = payments.record_stk_result(checkout_id, answer.result_code, answer.result_desc, source="query")
    log.info("stk query checkout=%s result=%s → %s", checkout_id, answer.result_code, outcome.action)
    return "pending" if outcome.action == "ignored" else "settled"


def expire_unpaid_initiations() -> int:
    """Initiations nobody answered within PORTAL_STK_EXPIRY_S. A later success still wins."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["PORTAL_STK_EXPIRY_S"])
    expired_ids = db.session.scalars(
        sa.select(StkInitiation.id).where(StkInitiation.status == "initiated", StkInitiation.created_at < cutoff).limit(1000)
    ).all()
    count = 0
    for initiation_id in expired_ids:
        changed = db.session.execute(
            sa.update(StkInitiation)
            .where(StkInitiation.id == initiation_id, StkInitiation.status == "initiated")
            .values(status="expired", completed_at=utcnow())
        ).rowcount
        if changed:
            payment_id = db.session.scalar(sa.select(StkInitiation.payment_id).where(StkInitiation.id == initiation_id))
            db.session.execute(
                sa.update(Payment).where(Payment.id == payment_id, Payment.status == "pending").values(status="expired")
            )
        db.session.commit()
        count += changed
    return count


def expire_spent_vouchers() -> int:
    """Wall-clock vouchers past their end: mark expired and queue removal from the router."""
    now = utcnow()
    due = db.session.scalars(
        sa.select(Voucher).where(Voucher.status == "active", Voucher.expires_at.is_not(None), Voucher.expires_at < now).limit(500)
    ).all()
    count = _expire_vouchers([voucher.id for voucher in due])
    if count:
        activations.wake_worker()
    return count


def expire_used_up_vouchers() -> dict[str, int]:
    """Vouchers whose time or data the router has counted down to zero: mark expired, remove.

    Connected-time plans are measured by the router (``limit-uptime`` is cumulative online
    time), so only the router knows when they end. One print per router with such vouchers; a
    router that cannot be reached is skipped until the next run.
    """
    from .models import Plan, Router
    from .routeros import hotspot
    from .routeros.errors import RouterError
    from .routers import connection_for

    unstarted_cash = sa.and_(
        Voucher.source == "batch", Plan.validity_mode == "wall_clock", Voucher.expires_at.is_(None)
    )
    active = db.session.execute(
        sa.select(Voucher.id, Voucher.code, Voucher.router_id)
        .join(Plan, Voucher.plan_id == Plan.id)
        .where(
            Voucher.status == "active",
            sa.or_(Plan.validity_mode == "connected_time", Plan.data_limit_bytes.is_not(None), unstarted_cash),
        )
    ).all()
    by_router: dict[int, dict[str, int]] = defaultdict(dict)
    for voucher_id, code, router_id in active:
        by_router[router_id][code] = voucher_id
    counts = {"routers": 0, "expired": 0, "unreachable": 0, "started": 0}
    for router_id, vouchers in by_router.items():
        conn = connection_for(db.session.get(Router, router_id))
        db.session.commit()  # no transaction held across the router call
        try:
            usage = hotspot.list_user_usage(conn)
        except RouterError as exc:
            log.info("usage check skipped router=%s: %s", router_id, exc)
            counts["unreachable"] += 1
            continue
        counts["routers"] += 1
        mine = [u for u in usage if u.name in vouchers]
        counts["expired"] += _expire_vouchers([vouchers[u.name] for u in mine if u.is_used_up])
        counts["started"] += _start_cash_voucher_clocks({vouchers[u.name]: u.uptime_s for u in mine if u.uptime_s > 0})
    if counts["expired"]:
        activations.wake_worker()
    return counts


def _start_cash_voucher_clocks(uptime_by_voucher: dict[int, int]) -> int:
    """Printed wall-clock vouchers the router has seen in use: their validity runs from first use.

    First use is estimated as now minus the time online so far (checked every minute); the
    router's limit-uptime caps it meanwhile.
    """
    from .models import Plan

    now, started = utcnow(), 0
    for voucher_id, uptime_s in uptime_by_voucher.items():
        duration = db.session.scalar(
            sa.select(Plan.duration_s).join(Voucher, Voucher.plan_id == Plan.id).where(Voucher.id == voucher_id)
        )
        started += db.session.execute(
            sa.update(Voucher)
            .where(Voucher.id == voucher_id, Voucher.source == "batch", Voucher.expires_at.is_(None))
            .values(expires_at=now - timedelta(seconds=uptime_s) + timedelta(seconds=duration))
        ).rowcount
    db.session.commit()
    return started


def _expire_vouchers(voucher_ids: list[int]) -> int:
    count = 0
    for voucher_id in voucher_ids:
        changed = db.session.execute(
            sa.update(Voucher).where(Voucher.id == voucher_id, Voucher.status == "active").values(status="expired")
        ).rowcount
        if changed:
            activations.queue_removal(db.session.get(Voucher, voucher_id))
            count += 1
        db.session.commit()
    return count

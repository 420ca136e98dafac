"""Payments whose callback never came, unpaid initiations, spent vouchers.

Each function claims its rows with a conditional UPDATE, so two workers running it at the same
moment never query or expire the same row twice; a final result goes through exactly the same
recording code as a callback.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from ..core.extensions import db
from ..hotspot import activations, pull_sync
from ..hotspot.routers import connection_for
from ..models import Paybill, Payment, Plan, Router, StkInitiation, Voucher, utcnow
from ..mpesa.client import StkQueryAnswer
from ..mpesa.errors import DarajaError, DarajaRejected
from ..owners.paybills import DarajaCall, prepare_daraja_call
from ..routeros import hotspot
from ..routeros.errors import RouterError
from . import settlement

log = logging.getLogger(__name__)

QUERY_INTERVAL = timedelta(seconds=15)  # per initiation: Daraja spike-arrests fast pollers
QUERIES_PER_SECOND_PER_PAYBILL = 5.0


class PerPaybillRate:
    """Spaces out queries to one paybill's Daraja app; different paybills do not wait on each other."""

    def __init__(self, per_second: float, clock=time.monotonic, sleep=time.sleep) -> None:  # type: ignore[no-untyped-def]
        self.per_second = per_second
        self.interval = 1.0 / per_second
        self.clock, self.sleep = clock, sleep
        self._next: dict[int, float] = defaultdict(float)
        self._lock = threading.Lock()

    def wait(self, paybill_id: int) -> None:
        """Return when this paybill may send its next query. The next one is spaced from the moment
        this one goes, not from a slot booked in advance: a thread that wakes late (a busy
        process) must not leave the following query with a shorter gap."""
        while True:
            with self._lock:
                now = self.clock()
                due = self._next[paybill_id]
                if due <= now:
                    self._next[paybill_id] = now + self.interval
                    return
            self.sleep(due - now)


_rate = PerPaybillRate(QUERIES_PER_SECOND_PER_PAYBILL)


# Threads that wait for a rate slot or for Daraja's answer; they do no database work, so many
# are cheap. Enough for every paybill to have one query out and the next one waiting.
MAX_QUERIES_IN_FLIGHT = 100
ROUND_S = 10.0  # a round claims about this many seconds of each paybill's queries
RUN_BUDGET_S = 50.0  # one run stops in time for the next; what is left is still due then
RECORD_BATCH = 100  # answers recorded per transaction


def reconcile_stuck_initiations(
    batch: int = 5000, *, rate: PerPaybillRate | None = None, budget_s: float = RUN_BUDGET_S
) -> dict[str, int]:
    """STK-query initiations still ``initiated`` after ~30 s; record final answers like callbacks.

    Each round claims the due rows in one statement (so two workers never query the same
    initiation), a pool of threads asks Daraja, each paybill spaced by its own rate limit, and
    this thread records the answers in batches as they come back. Rows are interleaved across
    paybills so one paybill's backlog never starves the rest. A run keeps going while anything
    is due and its time budget lasts.
    """
    app = current_app._get_current_object()
    deadline = time.monotonic() + budget_s
    limiter = rate or _rate
    per_paybill = max(1, int(limiter.per_second * ROUND_S))
    counts = {"queried": 0, "pending": 0, "settled": 0, "errors": 0}
    with ThreadPoolExecutor(max_workers=MAX_QUERIES_IN_FLIGHT, thread_name_prefix="stk-query") as pool:
        while time.monotonic() < deadline:
            claimed = claim_due_queries(limit=batch, per_paybill=per_paybill)
            if not claimed:
                break  # nothing due, or everything due was claimed by another worker
            answers: queue.SimpleQueue[tuple[str, StkQueryAnswer | str]] = queue.SimpleQueue()
            all_sent = _send_round(app, pool, claimed, limiter, deadline, answers)
            _record_answers(answers, len(claimed), counts)
            if not all_sent:
                break
    return counts


def _send_round(app, pool: ThreadPoolExecutor, claimed: list[tuple[int, str]], limiter: PerPaybillRate,
                deadline: float, answers: queue.SimpleQueue) -> bool:  # type: ignore[no-untyped-def]
    """Hand every claimed query to the pool; False if the process began exiting meanwhile (the
    pool refuses new work then), in which case the rest count as skipped and are due again."""
    calls = _prepare_calls({paybill_id for paybill_id, _ in claimed})
    for position, (paybill_id, checkout_id) in enumerate(claimed):
        try:
            pool.submit(_ask_daraja, app, calls.get(paybill_id), paybill_id, checkout_id, limiter, deadline, answers)
        except RuntimeError:
            log.info("reconciliation stopping: the process is exiting")
            for _, skipped in claimed[position:]:
                answers.put((skipped, "skipped"))
            return False
    return True


def claim_due_queries(*, limit: int, per_paybill: int) -> list[tuple[int, str]]:
    """Claim up to ``per_paybill`` due initiations of every paybill (``limit`` in all) and commit;
    returns (paybill, CheckoutRequestID) interleaved across paybills, [] when nothing is due.

    The UPDATE re-checks that each row is still unclaimed, so a worker claiming at the same
    moment gets none of the same rows; one that lost every row it chose looks again.
    """
    for _attempt in range(5):
        chosen = _due_ids(limit, per_paybill)
        if not chosen:
            break
        rows = _claim_ids(chosen)
        if rows:
            by_paybill: dict[int, list[tuple[int, str]]] = defaultdict(list)
            for _initiation_id, paybill_id, checkout_id in sorted(rows):
                by_paybill[paybill_id].append((paybill_id, checkout_id))
            return _interleaved(list(by_paybill.values()))
    db.session.commit()
    return []


def _due_ids(limit: int, per_paybill: int) -> list[int]:
    now = utcnow()
    c = StkInitiation.__table__.c
    older_than = now - timedelta(seconds=current_app.config["PORTAL_RECONCILE_AFTER_S"])
    never_asked = sa.and_(c.status == "initiated", c.last_query_at.is_(None))
    position = sa.func.row_number().over(
        partition_by=c.paybill_id,
        # Never-asked initiations first, so late queries of expired ones never starve fresh ones.
        order_by=(sa.case((never_asked, 0), else_=1), c.created_at),
    )
    due = (
        sa.select(c.id, position.label("position"))
        .where(
            c.checkout_request_id.is_not(None),
            c.paybill_id.is_not(None),
            # Two branches, each an index range: (status, created_at) and (status, next_query_at).
            sa.or_(sa.and_(c.status == "initiated", c.created_at < older_than), _late_query_due(now)),
            _not_asked_lately(now),
        )
        .subquery()
    )
    return list(db.session.scalars(
        sa.select(due.c.id).where(due.c.position <= per_paybill).order_by(due.c.position).limit(limit)
    ))


def _claim_ids(chosen: list[int], *, by_owner: bool = False) -> list[tuple[int, int, str]]:
    # A separate UPDATE, not UPDATE … IN (window subquery): a plan that cannot go wrong on a
    # table whose statistics are stale; its own condition keeps the claim exclusive.
    now = utcnow()
    table = StkInitiation.__table__
    c = table.c
    is_late = sa.and_(c.status == "expired", c.query_given_up_at.is_(None))
    rows = db.session.execute(
        sa.update(table)
        .where(c.id.in_(sorted(chosen)), _askable_by_owner(now) if by_owner else _claimable(now))
        .values(
            last_query_at=now,
            query_count=c.query_count + 1,
            late_query_count=c.late_query_count + sa.case((c.status == "expired", 1), else_=0),
            next_query_at=sa.case((is_late, _next_late_query_at(now)), else_=c.next_query_at),
        )
        .returning(c.id, c.paybill_id, c.checkout_request_id)
    ).all()
    db.session.commit()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def late_query_steps() -> tuple[int, ...]:
    return tuple(current_app.config["PORTAL_LATE_QUERY_BACKOFF_S"])


def _next_late_query_at(now) -> sa.ColumnElement:  # type: ignore[no-untyped-def]
    """now + the backoff step after this late query (the row's count before it is counted)."""
    c, steps = StkInitiation.__table__.c, late_query_steps()
    when = [sa.bindparam(None, now + timedelta(seconds=s), type_=c.next_query_at.type) for s in steps]
    if len(steps) == 1:
        return when[0]
    return sa.case(
        *((c.late_query_count == count, when[count + 1]) for count in range(len(steps) - 1)), else_=when[-1]
    )


def claim_query(initiation_id: int) -> bool:
    """Claim one initiation for a query now (an owner's "ask M-Pesa" button); False if it was
    asked within QUERY_INTERVAL, by the job or a double click, or has a final answer. An expired
    initiation may be asked too, even after the late queries gave up: an owner asking is never wrong."""
    return bool(_claim_ids([initiation_id], by_owner=True))


def query_and_record(checkout_id: str, paybill_id: int | None) -> str:
    """Ask Daraja about one claimed initiation now and record a final answer: ``settled``,
    ``pending`` or ``errors``. The same steps as the job, for one."""
    paybill = db.session.get(Paybill, paybill_id) if paybill_id else None
    if paybill is None:
        return "errors"
    call = prepare_daraja_call(paybill)
    answer = _query(call, checkout_id)
    if isinstance(answer, str):
        return answer
    return _tally({checkout_id: answer}, settlement.record_stk_query_answers([_final(checkout_id, answer)]))[checkout_id]


def _claimable(now) -> sa.ColumnElement[bool]:  # type: ignore[no-untyped-def]
    """Waiting, or expired with a late query due (until the give-up time), and not asked within
    QUERY_INTERVAL (Daraja spike-arrests fast pollers)."""
    c = StkInitiation.__table__.c
    return sa.and_(sa.or_(c.status == "initiated", _late_query_due(now)), _not_asked_lately(now))


def _late_query_due(now) -> sa.ColumnElement[bool]:  # type: ignore[no-untyped-def]
    """Expired, its next late query due, and not yet PORTAL_LATE_QUERY_GIVE_UP_S after the push."""
    c = StkInitiation.__table__.c
    give_up_before = now - timedelta(seconds=current_app.config["PORTAL_LATE_QUERY_GIVE_UP_S"])
    return sa.and_(
        c.status == "expired", c.next_query_at <= now, c.query_given_up_at.is_(None), c.created_at >= give_up_before
    )


def _askable_by_owner(now) -> sa.ColumnElement[bool]:  # type: ignore[no-untyped-def]
    c = StkInitiation.__table__.c
    return sa.and_(c.status.in_(("initiated", "expired")), _not_asked_lately(now))


def _not_asked_lately(now) -> sa.ColumnElement[bool]:  # type: ignore[no-untyped-def]
    c = StkInitiation.__table__.c
    return sa.or_(c.last_query_at.is_(None), c.last_query_at < now - QUERY_INTERVAL)


def _interleaved(queues: list[list[tuple[int, str]]]) -> list[tuple[int, str]]:
    """Round-robin across paybills: everyone's first row, then everyone's second..."""
    order: list[tuple[int, str]] = []
    for position in range(max((len(q) for q in queues), default=0)):
        order.extend(q[position] for q in queues if position < len(q))
    return order


def _prepare_calls(paybill_ids: set[int]) -> dict[int, DarajaCall]:
    """Each paybill's client, credentials and token store, read once per round in this thread,
    so the query threads never touch the database for them."""
    paybills = db.session.scalars(sa.select(Paybill).where(Paybill.id.in_(paybill_ids))).all()
    calls = {paybill.id: prepare_daraja_call(paybill) for paybill in paybills}
    db.session.commit()
    return calls


def _ask_daraja(
    app, call: DarajaCall | None, paybill_id: int, checkout_id: str, rate: PerPaybillRate, deadline: float,
    answers: queue.SimpleQueue,
) -> None:  # type: ignore[no-untyped-def]
    """In a pool thread: wait for the paybill's slot, query, hand the answer back. Always answers
    exactly once, or the recording loop would wait for it."""
    answer: StkQueryAnswer | str = "errors"
    try:
        if time.monotonic() >= deadline:
            answer = "skipped"  # claimed but not asked: due again after QUERY_INTERVAL
        elif call is not None:
            with app.app_context():
                try:
                    _have_token(call)
                    rate.wait(paybill_id)
                    answer = _query(call, checkout_id)
                finally:
                    db.session.remove()
    except Exception:  # noqa: BLE001 - one bad query must not stall the run
        log.exception("stk query failed checkout=%s", checkout_id)
    finally:
        answers.put((checkout_id, answer))


def _have_token(call: DarajaCall) -> None:
    """Get the paybill's token before taking a rate slot, not after: a query that took its slot
    and then waited on a token fetch (or a database read) would go out late, on top of the
    next one's slot, and Daraja counts arrivals. One thread per Daraja app fetches; the rest wait
    for it. A failure here is the query's to report."""
    try:
        call.client.access_token(call.account, call.tokens)
    except DarajaError:
        pass


def _query(call: DarajaCall, checkout_id: str) -> StkQueryAnswer | str:
    try:
        return call.client.stk_query(call.account, call.tokens, checkout_id)
    except DarajaRejected as exc:
        log.warning("stk query refused checkout=%s: %s", checkout_id, exc)
    except DarajaError as exc:
        log.info("stk query unavailable checkout=%s: %s", checkout_id, exc)
    return "errors"


def _record_answers(answers: queue.SimpleQueue, expected: int, counts: dict[str, int]) -> None:
    """Record answers in batches as they arrive, until all ``expected`` are in."""
    received = 0
    while received < expected:
        batch = [answers.get()]
        while len(batch) < RECORD_BATCH and received + len(batch) < expected:
            try:
                batch.append(answers.get_nowait())
            except queue.Empty:
                break
        received += len(batch)
        asked = {checkout_id: answer for checkout_id, answer in batch if answer != "skipped"}
        final = [_final(checkout_id, answer) for checkout_id, answer in asked.items() if _is_final(answer)]
        for outcome in _tally(asked, settlement.record_stk_query_answers(final)).values():
            counts["queried"] += 1
            counts[outcome] += 1


def _is_final(answer: StkQueryAnswer | str) -> bool:
    return not isinstance(answer, str) and not answer.is_pending and answer.result_code is not None


def _final(checkout_id: str, answer: StkQueryAnswer) -> tuple[str, int | str, str]:
    return checkout_id, answer.result_code, answer.result_desc  # type: ignore[return-value]


def _tally(asked: dict[str, StkQueryAnswer | str], recorded: dict[str, settlement.RecordOutcome]) -> dict[str, str]:
    """Each asked initiation's count: ``errors``, ``pending`` (still processing, or nothing to
    record) or ``settled`` (a final answer recorded)."""
    tally = {}
    for checkout_id, answer in asked.items():
        if isinstance(answer, str):
            tally[checkout_id] = answer
        elif checkout_id not in recorded or recorded[checkout_id].action == "ignored":
            tally[checkout_id] = "pending"
        else:
            tally[checkout_id] = "settled"
    return tally


def expire_unpaid_initiations() -> int:
    """Initiations nobody answered within PORTAL_STK_EXPIRY_S. A later success still wins: one
    Daraja can be asked about gets its first late query due a backoff step from now."""
    now = utcnow()
    cutoff = now - timedelta(seconds=current_app.config["PORTAL_STK_EXPIRY_S"])
    c = StkInitiation.__table__.c
    first_late_query = sa.case(
        (sa.and_(c.checkout_request_id.is_not(None), c.paybill_id.is_not(None)),
         sa.bindparam(None, now + timedelta(seconds=late_query_steps()[0]), type_=c.next_query_at.type)),
        else_=None,
    )
    expired_ids = db.session.scalars(
        sa.select(StkInitiation.id).where(StkInitiation.status == "initiated", StkInitiation.created_at < cutoff).limit(1000)
    ).all()
    count = 0
    for initiation_id in expired_ids:
        changed = db.session.execute(
            sa.update(StkInitiation)
            .where(StkInitiation.id == initiation_id, StkInitiation.status == "initiated")
            .values(status="expired", completed_at=utcnow(), next_query_at=first_late_query)
        ).rowcount
        if changed:
            payment_id = db.session.scalar(sa.select(StkInitiation.payment_id).where(StkInitiation.id == initiation_id))
            db.session.execute(
                sa.update(Payment).where(Payment.id == payment_id, Payment.status == "pending").values(status="expired")
            )
            # The unpaid voucher goes with its prompt (no "pending payment" rows piling up on the
            # owner's list); settlement revives it if the money still comes (paid_at stays empty).
            db.session.execute(
                sa.update(Voucher)
                .where(Voucher.id == sa.select(StkInitiation.voucher_id).where(StkInitiation.id == initiation_id)
                       .scalar_subquery(), Voucher.status == "pending_payment")
                .values(status="expired")
            )
        db.session.commit()
        count += changed
    return count


def give_up_late_queries() -> int:
    """Expired initiations still without a final answer PORTAL_LATE_QUERY_GIVE_UP_S after their
    push: no more late queries. They stay on the owner's Problems page, and the owner's
    "ask M-Pesa" button still works on them. One conditional UPDATE; safe to run twice."""
    now = utcnow()
    c = StkInitiation.__table__.c
    give_up_before = now - timedelta(seconds=current_app.config["PORTAL_LATE_QUERY_GIVE_UP_S"])
    given_up = db.session.execute(
        sa.update(StkInitiation.__table__)
        .where(c.status == "expired", c.next_query_at.is_not(None), c.query_given_up_at.is_(None),
               c.created_at < give_up_before)
        .values(query_given_up_at=now, next_query_at=None)
        .returning(c.checkout_request_id, c.account_reference, c.late_query_count)
    ).all()
    db.session.commit()
    for checkout_id, code, late_queries in given_up:
        log.warning("stk query given up checkout=%s voucher=%s after %s late queries: no final answer",
                    checkout_id, code, late_queries)
    return len(given_up)


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
    time), so only the router knows when they end. One print per API router with such vouchers; a
    router that cannot be reached is skipped until the next run. A pull router is never called:
    its usage is what it reported at its last sync, held against the plan's limits.
    """
    unstarted_cash = sa.and_(
        Voucher.source == "batch", Plan.validity_mode == "wall_clock", Voucher.expires_at.is_(None)
    )
    active = db.session.execute(
        sa.select(Voucher.id, Voucher.code, Voucher.router_id, Plan.duration_s, Plan.data_limit_bytes)
        .join(Plan, Voucher.plan_id == Plan.id)
        .where(
            Voucher.status == "active",
            sa.or_(Plan.validity_mode == "connected_time", Plan.data_limit_bytes.is_not(None), unstarted_cash),
        )
    ).all()
    by_router: dict[int, dict[str, int]] = defaultdict(dict)
    limits: dict[str, tuple[int, int]] = {}
    for voucher_id, code, router_id, duration_s, data_limit in active:
        by_router[router_id][code] = voucher_id
        limits[code] = (duration_s, data_limit or 0)
    counts = {"routers": 0, "expired": 0, "unreachable": 0, "started": 0}
    for router_id, vouchers in by_router.items():
        router = db.session.get(Router, router_id)
        if router.transport == "pull":
            usage = _reported_usage(router_id, limits)
        else:
            conn = connection_for(router)
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


def _reported_usage(router_id: int, limits: dict[str, tuple[int, int]]) -> list[hotspot.UserUsage]:
    """A pull router's last reported usage, against the limits the portal gave each user."""
    return [
        hotspot.UserUsage(
            name=u.name, uptime_s=u.uptime_s, limit_uptime_s=limits[u.name][0],
            bytes_total=u.bytes_in + u.bytes_out, limit_bytes_total=limits[u.name][1],
        )
        for u in pull_sync.reported_usage(router_id).values()
        if u.name in limits
    ]


def _start_cash_voucher_clocks(uptime_by_voucher: dict[int, int]) -> int:
    """Printed vouchers the router has seen in use: each records its first use (so the owner's
    list reads "in use", not "unsold"), and a wall-clock one's validity runs from then.

    First use is estimated as now minus the time online so far (checked every minute); the
    router's limit-uptime caps it meanwhile. A connected-time voucher keeps no wall-clock end:
    the router counts its time.
    """
    now, started = utcnow(), 0
    for voucher_id, uptime_s in uptime_by_voucher.items():
        duration, mode = db.session.execute(
            sa.select(Plan.duration_s, Plan.validity_mode).join(Voucher, Voucher.plan_id == Plan.id)
            .where(Voucher.id == voucher_id)
        ).one()
        first_use = now - timedelta(seconds=uptime_s)
        started += db.session.execute(
            sa.update(Voucher)
            .where(Voucher.id == voucher_id, Voucher.source == "batch", Voucher.first_used_at.is_(None))
            .values(first_used_at=first_use)
        ).rowcount
        if mode == "wall_clock":
            db.session.execute(
                sa.update(Voucher)
                .where(Voucher.id == voucher_id, Voucher.source == "batch", Voucher.expires_at.is_(None))
                .values(expires_at=first_use + timedelta(seconds=duration))
            )
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

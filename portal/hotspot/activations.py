"""The activation outbox: router work that must happen after a payment, durably and exactly once.

A row is written in the payment's transaction (``queue_activation``). ``wake_worker`` runs after
the commit and wakes this process's worker at once (and, on PostgreSQL, any ``flask worker``
process through NOTIFY). Workers claim rows with a conditional UPDATE and a lease: the loser of a
race sees zero rows, and a worker killed mid-activation loses its lease, so another picks it up.
Router operations are idempotent (a user that already exists counts as done).

Delivery depends on the router's transport. Workers claim only rows of ``api`` routers (reached
directly or over the tunnel). A ``pull`` router's rows wait for its sync (``pull_sync``): a row is
*offered* in a sync answer and *done* when the router acknowledges it. The rows are the same.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import aliased

from ..core.extensions import db
from ..models import Activation, Plan, Router, UTCDateTime, Voucher, utcnow
from ..notify import outbox
from ..routeros import hotspot
from ..routeros.connection import RouterConnection
from ..routeros.errors import RouterCommandFailed, RouterError, RouterLoginFailed, RouterUnreachable
from ..tunnel.status import unreachable_reason
from .routers import connection_for

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "portal_activations"
_NOTIFY = sa.text(f"NOTIFY {NOTIFY_CHANNEL}")
RETRY_BASE_S = 2.0
RETRY_CAP_S = 15 * 60.0
MAC_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
GIVE_UP_AFTER = timedelta(hours=48)  # then the row stays failed for the owner, never silently dropped
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class Queued(NamedTuple):
    voucher_id: int
    router_id: int
    device_mac: str | None
    device_ip: str | None


def queue_activation(*, voucher_id: int, router_id: int, device_mac: str | None, device_ip: str | None) -> None:
    """Add the activation to the caller's transaction, once per voucher."""
    queue_activations([Queued(voucher_id, router_id, device_mac, device_ip)])


def queue_activations(rows: Sequence[Queued]) -> None:
    """Add activations to the caller's transaction in one statement, once per voucher.

    ON CONFLICT DO NOTHING rather than a plain insert: a voucher that already has its activation
    (queued by hand, say) must not make the payment's transaction fail, or real money would be
    rolled back and mistaken for a duplicate. Written as text, the same on PostgreSQL and
    SQLite: SQLAlchemy cannot cache its ON CONFLICT constructs (it compiled one per payment),
    and an executemany would cost extra round trips on the callback path.
    """
    if not rows:
        return
    params: dict[str, object] = {"now": utcnow()}
    for n, row in enumerate(rows):
        params.update({f"voucher_{n}": row.voucher_id, f"router_{n}": row.router_id,
                       f"mac_{n}": row.device_mac, f"ip_{n}": row.device_ip})
    db.session.execute(_insert_activations(len(rows)), params)
    _notify_other_processes()


@functools.lru_cache(maxsize=128)
def _insert_activations(count: int) -> sa.TextClause:
    """The INSERT for ``count`` rows, built once per size. Only these numbered names go into
    the SQL; every value is bound."""
    values = ", ".join(
        f"(:voucher_{n}, :router_{n}, 'activate', 'pending', 0, :mac_{n}, :ip_{n}, :now, :now)" for n in range(count)
    )
    return sa.text(
        "INSERT INTO activations (voucher_id, router_id, kind, status, attempts, device_mac, device_ip,"
        f" next_attempt_at, created_at) VALUES {values} ON CONFLICT (voucher_id, kind) DO NOTHING"
    ).bindparams(sa.bindparam("now", type_=UTCDateTime()))


def queue_removal(voucher: Voucher) -> bool:
    """Queue removing a voucher's user and session from its router; False if already queued."""
    exists = db.session.scalar(
        sa.select(Activation.id).where(Activation.voucher_id == voucher.id, Activation.kind == "remove")
    )
    if exists:
        return False
    db.session.add(Activation(voucher_id=voucher.id, router_id=voucher.router_id, kind="remove"))
    _notify_other_processes()
    return True


def _notify_other_processes() -> None:
    # NOTIFY is transactional in PostgreSQL: it is delivered only if the payment commits.
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(_NOTIFY)


def wake_worker() -> None:
    """Wake this process's worker now; call after the commit that added rows."""
    worker: ActivationWorker | None = current_app.extensions.get("portal_activation_worker")
    if worker is not None:
        worker.wake()


# ---------------------------------------------------------------------------------------------
# Claiming and running


def _due_condition(now: datetime) -> sa.ColumnElement[bool]:
    waiting = sa.and_(Activation.status.in_(("pending", "failed")), Activation.next_attempt_at <= now)
    abandoned = sa.and_(Activation.status == "running", Activation.lease_until < now)
    return sa.or_(waiting, abandoned)


def _delivered_by_api() -> sa.ColumnElement[bool]:
    # A pull router fetches its own work; a worker connecting to it would only time out.
    return Activation.router_id.in_(sa.select(Router.id).where(Router.transport == "api"))


ROUTER_READY_STATES = ("paid", "active")  # a voucher in any other state never goes onto its router
UNFINISHED = ("pending", "running", "failed", "offered")


def _may_run_now() -> sa.ColumnElement[bool]:
    """Re-checked inside the claim's UPDATE. An activation runs only while its voucher is still
    paid (a cancelled one is never added to the router). A removal waits until no activation of
    the same voucher is unfinished, so it can never run before or alongside one."""
    later = aliased(Activation)
    voucher_ready = sa.exists().where(Voucher.id == Activation.voucher_id, Voucher.status.in_(ROUTER_READY_STATES))
    activation_unfinished = sa.exists().where(
        later.voucher_id == Activation.voucher_id, later.kind == "activate", later.status.in_(UNFINISHED)
    )
    return sa.or_(
        sa.and_(Activation.kind == "activate", voucher_ready),
        sa.and_(Activation.kind == "remove", ~activation_unfinished),
    )


class Claimed(NamedTuple):
    activation_id: int
    router_id: int


def claim_due_activations(
    limit: int = 50, *, worker_id: str = WORKER_ID, per_router: int | None = None,
    busy_routers: dict[int, int] | None = None,
) -> list[int]:
    """Claim up to ``limit`` due rows; each claim is a conditional UPDATE, so two workers never share one.

    ``per_router`` caps how many rows of one router may run at once (``busy_routers`` counts
    those already running here), so one slow or offline router, or one router's 500-voucher
    batch, never takes every thread from the customers of healthy routers."""
    return [claimed.activation_id for claimed in claim_due(limit, worker_id=worker_id, per_router=per_router,
                                                           busy_routers=busy_routers)]


def claim_due(
    limit: int, *, worker_id: str = WORKER_ID, per_router: int | None = None,
    busy_routers: dict[int, int] | None = None,
) -> list[Claimed]:
    """``claim_due_activations`` with each row's router, for the worker's per-router bookkeeping."""
    if limit <= 0:
        return []
    now = utcnow()
    if retire_cancelled_activations(now):
        db.session.commit()
    candidates = _fair_candidates(now, limit, per_router, busy_routers or {})
    if not candidates:
        db.session.commit()
        return []
    lease_until = now + timedelta(seconds=current_app.config["PORTAL_ACTIVATION_LEASE_S"])
    # One conditional UPDATE for all candidates: each row is re-checked as it is written, so a
    # row another worker took meanwhile (or whose voucher was cancelled) is simply not returned.
    # Rows another worker is claiming right now are skipped, not waited on (PostgreSQL; SQLite
    # has one writer at a time anyway), so two dispatchers never deadlock over overlapping sets.
    unlocked = (
        sa.select(Activation.id)
        .where(Activation.id.in_(sorted(activation_id for activation_id, _ in candidates)))
        .with_for_update(skip_locked=True)
    )
    won = db.session.execute(
        sa.update(Activation)
        .where(Activation.id.in_(unlocked), _due_condition(now), _may_run_now())
        .values(status="running", lease_until=lease_until, claimed_by=worker_id, attempts=Activation.attempts + 1)
        .returning(Activation.id)
        .execution_options(synchronize_session=False)
    ).scalars().all()
    db.session.commit()
    won_ids = set(won)
    return [Claimed(activation_id, router_id) for activation_id, router_id in candidates if activation_id in won_ids]


def _fair_candidates(now: datetime, limit: int, per_router: int | None,
                     busy_routers: dict[int, int]) -> list[tuple[int, int]]:
    """Due rows, oldest first, at most ``per_router`` of each router (less what is busy here)."""
    due = sa.and_(_due_condition(now), _delivered_by_api())
    if per_router is None:
        rows = db.session.execute(
            sa.select(Activation.id, Activation.router_id).where(due).order_by(Activation.next_attempt_at).limit(limit)
        ).all()
        return [tuple(row) for row in rows]  # type: ignore[misc]
    position = sa.func.row_number().over(partition_by=Activation.router_id, order_by=Activation.next_attempt_at)
    ranked = sa.select(Activation.id, Activation.router_id, Activation.next_attempt_at,
                       position.label("position")).where(due).subquery()
    rows = db.session.execute(
        sa.select(ranked.c.id, ranked.c.router_id).where(ranked.c.position <= per_router)
        .order_by(ranked.c.next_attempt_at).limit(limit + len(busy_routers) * per_router)
    ).all()
    chosen: list[tuple[int, int]] = []
    taken = dict(busy_routers)
    for activation_id, router_id in rows:
        if taken.get(router_id, 0) < per_router and len(chosen) < limit:
            taken[router_id] = taken.get(router_id, 0) + 1
            chosen.append((activation_id, router_id))
    return chosen


def retire_cancelled_activations(now: datetime) -> int:
    """Activations still waiting whose voucher was cancelled (or otherwise left ``paid``) before
    they reached the router: closed, so the voucher's removal may run. Caller's transaction."""
    return db.session.execute(
        sa.update(Activation)
        .where(
            Activation.kind == "activate",
            Activation.status.in_(("pending", "failed")),
            Activation.voucher_id.in_(sa.select(Voucher.id).where(Voucher.status == "cancelled")),
        )
        .values(status="done", done_at=now, lease_until=None,
                last_error="voucher cancelled before it reached the router")
        .execution_options(synchronize_session=False)
    ).rowcount


def renew_leases(activation_ids: Sequence[int], worker_id: str) -> int:
    """Extend the lease of rows this worker is still running, so that a slow router call does
    not let another worker take the row over; commits. A row whose lease was lost stays lost."""
    if not activation_ids:
        return 0
    lease_until = utcnow() + timedelta(seconds=current_app.config["PORTAL_ACTIVATION_LEASE_S"])
    renewed = db.session.execute(
        sa.update(Activation)
        .where(Activation.id.in_(sorted(activation_ids)), Activation.status == "running",
               Activation.claimed_by == worker_id)
        .values(lease_until=lease_until)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return renewed


@dataclass(frozen=True)
class ActivationWork:
    """Everything the router call needs, read before the call so no transaction stays open across it."""

    activation_id: int
    kind: str
    claimed_by: str | None  # with ``attempt``, the claim this work runs under: a stale worker's
    attempt: int  # result (its lease lost, the row claimed again) must not overwrite the new one
    router_id: int
    router_slug: str
    voucher_id: int
    code: str
    profile: str
    rate_limit: str | None
    limit_uptime_s: int | None
    limit_bytes_total: int | None
    comment: str
    hotspot_server: str | None
    device_mac: str | None
    device_ip: str | None
    # Seconds of validity that start at activation; None when the clock starts later or never
    # (connected-time plans are counted by the router; printed cash vouchers start at first use).
    valid_for_s: int | None = None
    shared_users: int = 1  # the plan's devices per voucher
    locked_mac: str | None = None  # the buying device's MAC when the plan locks the user to it
    unreachable: str | None = None  # issue 13: a stale tunnel, so the router is not even tried


def run_activation(activation_id: int, *, worker_id: str | None = None) -> bool:
    """Do one claimed row's router work and record the result. True when done. With
    ``worker_id``, only a row this worker holds is run (the worker passes its own)."""
    loaded = _load_work(activation_id, worker_id)
    if loaded is None:
        return False
    work, conn = loaded
    try:
        _do_router_work(work, conn)
    except RouterError as exc:
        _record_failure(work, exc)
        return False
    except Exception as exc:  # a bug must not leave the row running forever; it retries and shows
        log.exception("activation %s crashed", activation_id)
        _record_failure(work, exc)
        return False
    done = _record_success(work)
    if done and work.kind == "activate":
        # After the voucher counts as active, not before: the customer's page moves on after one
        # router command (the user added), and logging the device in is a convenience on top.
        _login_device_if_known(conn, work)
    return done


def _load_work(activation_id: int, worker_id: str | None) -> tuple[ActivationWork, RouterConnection] | None:
    activation = db.session.get(Activation, activation_id)
    if activation is None or activation.status != "running":
        return None
    if worker_id is not None and activation.claimed_by != worker_id:
        log.info("activation %s was claimed by %s meanwhile; not ours to run", activation_id, activation.claimed_by)
        return None
    voucher = db.session.get(Voucher, activation.voucher_id)
    if activation.kind == "activate" and voucher.status not in ROUTER_READY_STATES:
        _close_unrun(activation, f"voucher {voucher.status} before it reached the router")
        return None
    plan = db.session.get(Plan, voucher.plan_id)
    router = db.session.get(Router, activation.router_id)
    work = ActivationWork(
        activation_id=activation.id,
        kind=activation.kind,
        claimed_by=activation.claimed_by,
        attempt=activation.attempts,
        router_id=router.id,
        router_slug=router.slug,
        voucher_id=voucher.id,
        code=voucher.code,
        profile=plan.profile_name,
        rate_limit=plan.rate_limit,
        # Connected-time plans are capped by the router; wall-clock plans by our expiry job,
        # with limit-uptime as a backstop so a voucher never outlives its plan on the router.
        limit_uptime_s=plan.duration_s,
        limit_bytes_total=plan.data_limit_bytes,
        comment=f"portal voucher {voucher.code} plan {plan.id}",
        hotspot_server=router.hotspot_server,
        device_mac=activation.device_mac,
        device_ip=activation.device_ip,
        valid_for_s=validity_from_activation(plan.validity_mode, plan.duration_s, voucher.source),
        shared_users=plan.devices,
        locked_mac=locked_mac(plan.lock_to_device, activation.device_mac),
        unreachable=unreachable_reason(router),
    )
    conn = connection_for(router)
    db.session.commit()  # end the read transaction before talking to the router
    return work, conn


def _do_router_work(work: ActivationWork, conn: RouterConnection) -> None:
    if work.unreachable:  # today's retry path, with the reason the owner reads in last_error
        raise RouterUnreachable(work.unreachable, router_label=work.router_slug)
    if work.kind == "remove":
        hotspot.remove_hotspot_user(conn, work.code)
        return
    profiles = _profile_cache()
    profiles.ensure(conn, work)
    try:
        _add_user(conn, work)
    except RouterCommandFailed as exc:
        if "profile" not in exc.trap_message:
            raise
        profiles.forget(work.router_id)  # our profile is gone from the router (reset?): recreate it
        profiles.ensure(conn, work)
        _add_user(conn, work)


def _add_user(conn: object, work: ActivationWork) -> None:
    hotspot.add_hotspot_user(
        conn,
        work.code,
        work.code,
        profile=work.profile,
        limit_uptime_s=work.limit_uptime_s,
        limit_bytes_total=work.limit_bytes_total,
        comment=work.comment,
        server=work.hotspot_server,
        mac_address=work.locked_mac,
    )


def locked_mac(lock_to_device: bool, device_mac: str | None) -> str | None:
    """The MAC the hotspot user is locked to, or None (a plan that does not lock, or no buying device:
    a printed voucher, or a purchase whose page came without the router's ``mac``)."""
    if not lock_to_device or not device_mac or not MAC_ADDRESS.fullmatch(device_mac):
        return None
    return device_mac.upper()


class ProfileCache:
    """Profiles this app has already made match their plan, per router.

    The profile rarely changes; checking it on every activation would double the router calls.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[int, str], tuple[str | None, int]] = {}
        self._lock = threading.Lock()

    def ensure(self, conn: object, work: ActivationWork) -> None:
        key = (work.router_id, work.profile)
        wanted = (work.rate_limit, work.shared_users)
        with self._lock:
            if self._known.get(key) == wanted:
                return
        hotspot.ensure_profile(conn, work.profile, rate_limit=work.rate_limit, shared_users=work.shared_users)
        with self._lock:
            self._known[key] = wanted

    def forget(self, router_id: int) -> None:
        with self._lock:
            for key in [k for k in self._known if k[0] == router_id]:
                del self._known[key]


def _profile_cache() -> ProfileCache:
    return current_app.extensions.setdefault("portal_profile_cache", ProfileCache())


def _login_device_if_known(conn: object, work: ActivationWork) -> None:
    if not work.device_ip:
        return
    try:
        hotspot.login_device(conn, work.code, work.code, ip=work.device_ip, mac=work.device_mac)
    except RouterError as exc:
        # Not fatal: the device may have moved on; the wait page still logs the browser in.
        log.info("device login skipped voucher=%s router=%s: %s", work.code, work.router_slug, exc)


def _held(work: ActivationWork) -> sa.ColumnElement[bool]:
    """This work's claim still holds: the row is running under the same claim it was loaded with."""
    return sa.and_(
        Activation.id == work.activation_id, Activation.status == "running",
        Activation.claimed_by == work.claimed_by, Activation.attempts == work.attempt,
    )


def _record_success(work: ActivationWork) -> bool:
    now = utcnow()
    held = db.session.execute(
        sa.update(Activation).where(_held(work))
        .values(status="done", done_at=now, lease_until=None, last_error=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not held:
        db.session.rollback()  # another worker holds the row now; its result is the one that counts
        log.warning("activation %s lost its lease before recording; voucher=%s router=%s",
                    work.activation_id, work.code, work.router_slug)
        return False
    if work.kind == "activate":
        mark_voucher_active(work.voucher_id, work.valid_for_s, now)
    db.session.execute(
        sa.update(Router).where(Router.id == work.router_id).values(last_seen_at=now, last_error=None, login_refused_at=None)
    )
    db.session.commit()
    log.info("activation %s done voucher=%s router=%s", work.kind, work.code, work.router_slug)
    return True


def _close_unrun(activation: Activation, reason: str) -> None:
    """A claimed activation whose voucher left ``paid`` (cancelled meanwhile): closed without
    touching the router, so the voucher's removal may run. Commits."""
    db.session.execute(
        sa.update(Activation)
        .where(Activation.id == activation.id, Activation.status == "running",
               Activation.attempts == activation.attempts)
        .values(status="done", done_at=utcnow(), lease_until=None, last_error=reason[:500])
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    log.info("activation %s closed unrun: %s", activation.id, reason)


def validity_from_activation(validity_mode: str, duration_s: int, voucher_source: str) -> int | None:
    """Seconds of validity that start when the voucher reaches the router, or None."""
    # A bought voucher is used at once; a printed cash voucher may sit in a drawer for days, so
    # its wall clock starts at first use (reconciliation.expire_used_up_vouchers sets it).
    return duration_s if validity_mode == "wall_clock" and voucher_source != "batch" else None


def mark_voucher_active(voucher_id: int, valid_for_s: int | None, now: datetime) -> None:
    """The voucher is on its router: paid → active (a cancelled one stays cancelled). Caller commits."""
    expires_at = now + timedelta(seconds=valid_for_s) if valid_for_s else None
    became_active = db.session.execute(
        sa.update(Voucher)
        .where(Voucher.id == voucher_id, Voucher.status == "paid")
        .values(status="active", activated_at=now, expires_at=expires_at)
    ).rowcount
    if became_active:
        outbox.queue_receipt(voucher_id, now)  # issue 17: one receipt SMS row, sent later by the notify worker


def _record_failure(work: ActivationWork, exc: Exception) -> None:
    db.session.rollback()
    activation = db.session.get(Activation, work.activation_id)
    if activation is None or activation.status != "running" or activation.claimed_by != work.claimed_by \
            or activation.attempts != work.attempt:
        log.warning("activation %s failed after losing its lease (%s); the new holder decides", work.activation_id, exc)
        db.session.rollback()
        return
    now = utcnow()
    error = f"{type(exc).__name__}: {exc}"[:500]
    cancelled = work.kind == "activate" and db.session.scalar(
        sa.select(Voucher.status).where(Voucher.id == work.voucher_id)) not in ROUTER_READY_STATES
    delay = retry_delay(activation.attempts)
    give_up = now - activation.created_at > GIVE_UP_AFTER
    activation.lease_until = None
    activation.last_error = error
    if cancelled:
        # Cancelled while we tried: never retried, and the queued removal may now run (it takes
        # away the user in case the router added it before the error).
        activation.status, activation.done_at = "done", now
    else:
        activation.status = "failed"
        # A row past the give-up horizon is retried rarely (hourly) rather than dropped: someone paid.
        activation.next_attempt_at = now + (timedelta(hours=1) if give_up else timedelta(seconds=delay))
    router = db.session.get(Router, work.router_id)
    router.last_error = error
    if isinstance(exc, RouterLoginFailed):
        router.login_refused_at = now
    db.session.commit()
    log.warning(
        "activation %s failed voucher=%s router=%s attempt=%s retry_in=%s: %s",
        work.kind, work.code, work.router_slug, activation.attempts,
        "never (voucher cancelled)" if cancelled else f"{delay:.0f}s", exc,
    )


def retry_delay(attempts: int) -> float:
    """Capped exponential backoff with jitter: seconds at first, then minutes, at most 15 minutes."""
    return min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)


def run_due_activations(limit: int = 50) -> int:
    """Claim and run due rows one after another (the CLI and tests use this; the worker parallelises)."""
    done = 0
    for activation_id in claim_due_activations(limit):
        done += run_activation(activation_id)
    return done


# ---------------------------------------------------------------------------------------------
# The in-process worker


class ActivationWorker:
    """Runs activations as soon as they are queued: one dispatcher thread and a small pool.

    Work for different routers runs in parallel; each router's connection lock serialises its own.
    The dispatcher claims only what its threads can start now, and at most ``per_router`` rows
    of one router, so a slow or offline router (or one router's big batch) holds a few threads
    while customers of healthy routers go online at once; the rest of its rows stay unclaimed,
    free for any worker. It renews the leases of the rows it is running, so a slow router call
    is never mistaken for a dead worker. A poll every few seconds is only the safety net for rows
    woken in another process.
    """

    _instances = 0

    def __init__(self, app: Flask, *, threads: int = 8, poll_interval_s: float = 2.0,
                 per_router: int | None = None) -> None:
        self.app = app
        self.threads = threads
        self.per_router = per_router or max(1, threads // 4)
        self.poll_interval_s = poll_interval_s
        ActivationWorker._instances += 1
        # Never shared by two workers, even in one process (the claim fence); ends in the pid.
        self.worker_id = f"{socket.gethostname()[:40]}/{ActivationWorker._instances}:{os.getpid()}"
        self._lease_s = float(app.config["PORTAL_ACTIVATION_LEASE_S"])
        self._event = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activation")
        self._in_flight: dict[int, int] = {}  # activation id -> router id
        self._lock = threading.Lock()
        self._renewed_at = 0.0
        self._thread = threading.Thread(target=self._loop, name="activation-dispatcher", daemon=True)

    def start(self) -> ActivationWorker:
        self.app.extensions["portal_activation_worker"] = self
        self._thread.start()
        return self

    def wake(self) -> None:
        self._event.set()

    def stop(self) -> None:
        self._stop.set()
        self._event.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.app.extensions.get("portal_activation_worker") is self:
            del self.app.extensions["portal_activation_worker"]

    def _loop(self) -> None:
        # Wake often enough to renew leases well before they run out.
        wait_s = min(self.poll_interval_s, max(0.2, self._lease_s / 3))
        while not self._stop.is_set():
            self._event.wait(wait_s)
            self._event.clear()
            if self._stop.is_set():
                return
            try:
                with self.app.app_context():
                    try:
                        self._renew_leases()
                        self._dispatch()
                    finally:
                        db.session.remove()
            except Exception:
                log.exception("activation dispatcher pass failed")

    def _renew_leases(self) -> None:
        now = time.monotonic()
        with self._lock:
            running = list(self._in_flight)
        if running and now - self._renewed_at >= self._lease_s / 3:
            renew_leases(running, self.worker_id)
            self._renewed_at = now

    def _dispatch(self) -> None:
        with self._lock:
            free = self.threads - len(self._in_flight)
            busy: dict[int, int] = {}
            for router_id in self._in_flight.values():
                busy[router_id] = busy.get(router_id, 0) + 1
        if free <= 0:
            return  # a finishing thread wakes the dispatcher again
        for claimed in claim_due(free, worker_id=self.worker_id, per_router=self.per_router, busy_routers=busy):
            with self._lock:
                self._in_flight[claimed.activation_id] = claimed.router_id
            self._pool.submit(self._run_one, claimed.activation_id)

    def _run_one(self, activation_id: int) -> None:
        try:
            with self.app.app_context():
                try:
                    run_activation(activation_id, worker_id=self.worker_id)
                finally:
                    db.session.remove()
        finally:
            with self._lock:
                self._in_flight.pop(activation_id, None)
            self._event.set()  # a thread is free: claim what waited for it

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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from flask import Flask, current_app

from ..core.extensions import db
from ..models import Activation, Plan, Router, UTCDateTime, Voucher, utcnow
from ..routeros import hotspot
from ..routeros.connection import RouterConnection
from ..routeros.errors import RouterCommandFailed, RouterError, RouterLoginFailed
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


def claim_due_activations(limit: int = 50, *, worker_id: str = WORKER_ID) -> list[int]:
    """Claim up to ``limit`` due rows; each claim is a conditional UPDATE, so two workers never share one."""
    now = utcnow()
    lease_until = now + timedelta(seconds=current_app.config["PORTAL_ACTIVATION_LEASE_S"])
    candidates = db.session.scalars(
        sa.select(Activation.id).where(_due_condition(now), _delivered_by_api())
        .order_by(Activation.next_attempt_at).limit(limit)
    ).all()
    claimed = []
    for activation_id in candidates:
        won = db.session.execute(
            sa.update(Activation)
            .where(Activation.id == activation_id, _due_condition(now))
            .values(status="running", lease_until=lease_until, claimed_by=worker_id, attempts=Activation.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        if won:
            claimed.append(activation_id)
    return claimed


@dataclass(frozen=True)
class ActivationWork:
    """Everything the router call needs, read before the call so no transaction stays open across it."""

    activation_id: int
    kind: str
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


def run_activation(activation_id: int) -> bool:
    """Do one claimed row's router work and record the result. True when done."""
    loaded = _load_work(activation_id)
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
    _record_success(work)
    return True


def _load_work(activation_id: int) -> tuple[ActivationWork, RouterConnection] | None:
    activation = db.session.get(Activation, activation_id)
    if activation is None or activation.status != "running":
        return None
    voucher = db.session.get(Voucher, activation.voucher_id)
    plan = db.session.get(Plan, voucher.plan_id)
    router = db.session.get(Router, activation.router_id)
    work = ActivationWork(
        activation_id=activation.id,
        kind=activation.kind,
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
    )
    conn = connection_for(router)
    db.session.commit()  # end the read transaction before talking to the router
    return work, conn


def _do_router_work(work: ActivationWork, conn: RouterConnection) -> None:
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
    _login_device_if_known(conn, work)


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


def _record_success(work: ActivationWork) -> None:
    now = utcnow()
    db.session.execute(
        sa.update(Activation)
        .where(Activation.id == work.activation_id)
        .values(status="done", done_at=now, lease_until=None, last_error=None)
    )
    if work.kind == "activate":
        mark_voucher_active(work.voucher_id, work.valid_for_s, now)
    db.session.execute(
        sa.update(Router).where(Router.id == work.router_id).values(last_seen_at=now, last_error=None, login_refused_at=None)
    )
    db.session.commit()
    log.info("activation %s done voucher=%s router=%s", work.kind, work.code, work.router_slug)


def validity_from_activation(validity_mode: str, duration_s: int, voucher_source: str) -> int | None:
    """Seconds of validity that start when the voucher reaches the router, or None."""
    # A bought voucher is used at once; a printed cash voucher may sit in a drawer for days, so
    # its wall clock starts at first use (reconciliation.expire_used_up_vouchers sets it).
    return duration_s if validity_mode == "wall_clock" and voucher_source != "batch" else None


def mark_voucher_active(voucher_id: int, valid_for_s: int | None, now: datetime) -> None:
    """The voucher is on its router: paid → active (a cancelled one stays cancelled). Caller commits."""
    expires_at = now + timedelta(seconds=valid_for_s) if valid_for_s else None
    db.session.execute(
        sa.update(Voucher)
        .where(Voucher.id == voucher_id, Voucher.status == "paid")
        .values(status="active", activated_at=now, expires_at=expires_at)
    )


def _record_failure(work: ActivationWork, exc: Exception) -> None:
    db.session.rollback()
    activation = db.session.get(Activation, work.activation_id)
    now = utcnow()
    delay = retry_delay(activation.attempts)
    give_up = now - activation.created_at > GIVE_UP_AFTER
    activation.status = "failed"
    activation.lease_until = None
    activation.last_error = f"{type(exc).__name__}: {exc}"[:500]
    # A row past the give-up horizon is retried rarely (hourly) rather than dropped: someone paid.
    activation.next_attempt_at = now + (timedelta(hours=1) if give_up else timedelta(seconds=delay))
    router = db.session.get(Router, work.router_id)
    router.last_error = activation.last_error
    if isinstance(exc, RouterLoginFailed):
        router.login_refused_at = now
    db.session.commit()
    log.warning(
        "activation %s failed voucher=%s router=%s attempt=%s retry_in=%.0fs: %s",
        work.kind, work.code, work.router_slug, activation.attempts, delay, exc,
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
    A poll every few seconds is only the safety net for rows woken in another process.
    """

    def __init__(self, app: Flask, *, threads: int = 8, poll_interval_s: float = 2.0) -> None:
        self.app = app
        self.poll_interval_s = poll_interval_s
        self._event = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activation")
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
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
        while not self._stop.is_set():
            self._event.wait(self.poll_interval_s)
            self._event.clear()
            if self._stop.is_set():
                return
            try:
                self._dispatch()
            except Exception:
                log.exception("activation dispatcher pass failed")

    def _dispatch(self) -> None:
        with self.app.app_context():
            try:
                claimed = claim_due_activations()
            finally:
                db.session.remove()
        for activation_id in claimed:
            with self._lock:
                self._in_flight.add(activation_id)
            self._pool.submit(self._run_one, activation_id)

    def _run_one(self, activation_id: int) -> None:
        try:
            with self.app.app_context():
                try:
                    run_activation(activation_id)
                finally:
                    db.session.remove()
        finally:
            with self._lock:
                self._in_flight.discard(activation_id)

"""Scheduler wiring only: each job is a few lines that call a service and record its run."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from .core import rate_limits
from .core.extensions import db
from .hotspot.activations import NOTIFY_CHANNEL, ActivationWorker
from .hotspot.routers import probe_quiet_routers
from .models import JobRun, utcnow
from .money import b2c_transfers, ledger, payouts, reconciliation, refunds, webhook_log
from .notify import alerts, delivery, outbox
from .owners import tokens

log = logging.getLogger(__name__)


def record_run(name: str, func: Callable[[], Any]) -> Any:
    """Run a job body, logging counts and duration and keeping its last run for /healthz."""
    started = utcnow()
    t0 = time.monotonic()
    status, error, result = "ok", None, None
    try:
        result = func()
    except Exception as exc:
        db.session.rollback()
        status, error = "error", f"{type(exc).__name__}: {exc}"[:500]
        log.exception("job %s failed", name)
    duration_ms = int((time.monotonic() - t0) * 1000)
    counts = json.dumps(result, default=str)[:500] if result is not None else None
    _save_run(name, started, status, error, counts, duration_ms)
    if status == "ok" and result:
        log.info("job %s done in %d ms: %s", name, duration_ms, counts)
    return result


def _save_run(name: str, started, status, error, counts, duration_ms) -> None:  # type: ignore[no-untyped-def]
    values = dict(last_started_at=started, last_finished_at=utcnow(), last_status=status,
                  last_error=error, last_counts=counts, duration_ms=duration_ms)
    try:
        if db.session.execute(sa.update(JobRun).where(JobRun.name == name).values(**values)).rowcount == 0:
            db.session.add(JobRun(name=name, **values))
        db.session.commit()
    except Exception:  # two workers inserting the first row at once; the other one's row is fine
        db.session.rollback()


JOBS: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
    "refresh_tokens": (lambda: [r.line() for r in tokens.refresh_due_tokens()], {"minutes": 2}),
    "reconcile_initiations": (reconciliation.reconcile_stuck_initiations, {"seconds": 10}),
    "expire_initiations": (reconciliation.expire_unpaid_initiations, {"seconds": 30}),
    "give_up_late_queries": (reconciliation.give_up_late_queries, {"minutes": 1}),
    "expire_vouchers": (reconciliation.expire_spent_vouchers, {"seconds": 30}),
    "expire_used_up_vouchers": (reconciliation.expire_used_up_vouchers, {"minutes": 1}),
    "reprocess_webhooks": (webhook_log.reprocess_failed, {"seconds": 30}),
    "settle_early_callbacks": (webhook_log.settle_early_leftovers, {"minutes": 1}),
    "purge_webhook_logs": (webhook_log.purge_old, {"hours": 6}),
    "prune_rate_limit_hits": (rate_limits.prune_old_hits, {"minutes": 15}),
    # Issue 17: SMS to customers and alerts to owners.
    "send_sms": (outbox.send_due_sms, {"seconds": 2}),
    "probe_quiet_routers": (probe_quiet_routers, {"minutes": 1}),
    "check_alerts": (alerts.check_alerts, {"minutes": 1}),
    "purge_sms_reports": (delivery.purge_old_reports, {"hours": 6}),
}
# Issue 15: sales into the ledger, B2C transfers whose outcome is unknown, the weekly payouts.
JOBS.update({
    "post_ledger_sales": (ledger.post_sales, {"minutes": 1}),
    "checkpoint_ledger": (ledger.checkpoint_balances, {"minutes": 10}),
    "query_unknown_b2c": (b2c_transfers.query_unknown_transfers, {"seconds": 30}),
    "send_approved_b2c": (lambda: {"sent": len(payouts.send_approved())}, {"minutes": 1}),
    "send_approved_refunds": (refunds.send_approved_refunds, {"minutes": 1}),
    "scheduled_payouts": (payouts.scheduled_run, {"hours": 24}),
})


def in_app_context(app: Flask, name: str, func: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with app.app_context():
            try:
                return record_run(name, func)
            finally:
                db.session.remove()

    return run


def build_scheduler(app: Flask) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    tick = app.config["PORTAL_JOB_TICK_S"]
    for name, (func, interval) in JOBS.items():
        if tick:
            interval = {"seconds": tick}
        scheduler.add_job(
            in_app_context(app, name, func), "interval", id=name, max_instances=1, coalesce=True,
            misfire_grace_time=60, **interval,
        )
    return scheduler


def start_background(app: Flask) -> tuple[BackgroundScheduler, ActivationWorker]:
    """Start the activation worker and the scheduler inside this process."""
    worker = ActivationWorker(app, threads=app.config["PORTAL_ACTIVATION_THREADS"]).start()
    scheduler = build_scheduler(app)
    scheduler.start()
    app.extensions["portal_scheduler"] = scheduler
    return scheduler, worker


def run_worker_forever(app: Flask) -> None:
    """`flask worker`: jobs and activations in the foreground until SIGTERM/SIGINT."""
    scheduler, worker = start_background(app)
    listener = _start_pg_listener(app, worker)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("worker running: %s", ", ".join(JOBS))
    worker.wake()
    stop.wait()
    scheduler.shutdown(wait=False)
    worker.stop()
    if listener:
        listener.set()


def _start_pg_listener(app: Flask, worker: ActivationWorker) -> threading.Event | None:
    """On PostgreSQL, payments recorded by web processes wake this worker at once (LISTEN/NOTIFY)."""

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        return None
    import psycopg

    stop = threading.Event()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")

    def listen() -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=5.0):
                            worker.wake()
            except Exception:
                log.exception("LISTEN connection lost; retrying")
                stop.wait(2)

    threading.Thread(target=listen, name="activation-listener", daemon=True).start()
    return stop

"""`scripts/bench --only sms`: receipts by SMS never slow activation down (issue 17).

On PostgreSQL, gunicorn in production mode and one `flask worker`, twice: without SMS, then with
PORTAL_SMS_* pointed at the sandbox Africa's Talking gateway (in this process), which refuses any
send over ``PROVIDER_RATE`` per second (HTTP 429). Each run sends N success callbacks spread over
a few seconds across the routers and times callback → user on the router, as the router figure
does. With SMS on, each activation writes one outbox row in its own transaction, and the worker's
send_sms job sends them later at PORTAL_SMS_RATE_PER_S. Figures: activation p95 with and without
SMS (bar: within 20 % + 20 ms), and the N receipts: all sent, once each, none refused for rate,
the busiest second at most the provider's rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal.sandbox.sms import SANDBOX_API_KEY, SANDBOX_USERNAME, SandboxSmsGateway

from . import procs, seed
from .figures import Findings, _max_in_window, _send_and_wait
from .sandboxes import TimedRouter
from .table import Row, median, ms, percentile

PROVIDER_RATE = 50  # what the stand-in allows per second (Africa's Talking publishes no figure)
PORTAL_RATE = 40  # PORTAL_SMS_RATE_PER_S: the portal stays below it


@dataclass(frozen=True)
class SmsScale:
    quick: bool
    activations: int
    spread_s: float
    routers: int


FULL = SmsScale(False, 1000, 20.0, 10)
QUICK = SmsScale(True, 60, 3.0, 3)


def figures(gunicorn: Any, scale: SmsScale, log_dir: Path, broken: Findings) -> list[Row]:
    pg_url = procs.recreate_pg_database("bench_sms")
    app = seed.bench_app(pg_url)
    boxes = [TimedRouter(identity=f"SMS bench router {i}").start() for i in range(scale.routers)]
    gateway = SandboxSmsGateway(rate_per_s=PROVIDER_RATE, report_delay_s=0.5).start()
    try:
        shop = seed.make_shop(app, boxes, email="sms@bench.example")
        off = _run(gunicorn, app, pg_url, shop, boxes, scale, log_dir, broken, gateway=None)
        on = _run(gunicorn, app, pg_url, shop, boxes, scale, log_dir, broken, gateway=gateway)
        sent = _wait_for_receipts(gateway, scale.activations + len(boxes), broken)
    finally:
        gateway.stop()
        for box in boxes:
            box.stop()
    p95_off, p95_on = percentile(off, 95), percentile(on, 95)
    allowed = p95_off * 1.2 + 0.020
    rows = [
        Row(
            "callback → user on router p95, SMS on vs off",
            f"{ms(p95_on)} vs {ms(p95_off)}",
            f"≤ {ms(allowed)} (off +20 % +20 ms)",
            p95_on <= allowed,
            [
                f"{scale.activations} callbacks over {scale.spread_s:.0f} s across {scale.routers} routers, each way; "
                f"medians {ms(median(on))} on, {ms(median(off))} off; the SMS is an outbox row in the activation's "
                "transaction, sent later by the worker"
            ],
        )
    ]
    rows.append(_sending_row(gateway, sent, scale))
    return rows


def _run(
    gunicorn: Any,
    app: Any,
    pg_url: str,
    shop: seed.Shop,
    boxes: list[TimedRouter],
    scale: SmsScale,
    log_dir: Path,
    broken: Findings,
    *,
    gateway: SandboxSmsGateway | None,
) -> list[float]:
    label = "on" if gateway else "off"
    extra: dict[str, str] = {}
    if gateway is not None:
        extra = {
            "PORTAL_SMS_USERNAME": SANDBOX_USERNAME,
            "PORTAL_SMS_API_KEY": SANDBOX_API_KEY,
            "PORTAL_SMS_BASE_URL": gateway.base_url,
            "PORTAL_SMS_RATE_PER_S": str(PORTAL_RATE),
        }
    env = procs.portal_env(pg_url, production=True, **extra)
    portal = gunicorn("wsgi:app", env, f"portal-sms-{label}").start()
    if gateway is not None:
        with app.app_context():
            from portal.notify.delivery import report_token

            gateway.report_url = f"{portal.url}/hooks/sms/{report_token()}/delivery"
    worker = procs.start_flask_worker(env, log_dir / f"flask-worker-sms-{label}.log")
    try:
        _send_and_wait(portal, app, shop, boxes, list(range(len(boxes))), 0.05, f"SW{label}", broken, timeout=30)
        latencies = _send_and_wait(
            portal,
            app,
            shop,
            boxes,
            list(range(scale.activations)),
            scale.spread_s / scale.activations,
            f"SA{label}",
            broken,
            timeout=60,
        )
        if gateway is not None:  # keep the worker until every receipt went out, the portal until its reports came
            _wait_for_receipts(gateway, scale.activations + len(boxes), broken)
            _wait_for_reports(gateway, broken)
    finally:
        procs.stop_process(worker)
        portal.stop()
    if "Traceback" in (log_dir / f"flask-worker-sms-{label}.log").read_text():
        broken.append(f"flask worker (SMS {label}) logged a traceback")
    return latencies


def _wait_for_receipts(gateway: SandboxSmsGateway, expected: int, broken: Findings) -> list[Any]:
    deadline = time.monotonic() + expected / PORTAL_RATE * 1.5 + 30
    while time.monotonic() < deadline and len(gateway.messages) < expected:
        time.sleep(0.2)
    if len(gateway.messages) < expected:
        broken.append(f"only {len(gateway.messages)} of {expected} receipts reached the SMS gateway")
    return list(gateway.messages)


def _wait_for_reports(gateway: SandboxSmsGateway, broken: Findings) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = [m for m in gateway.messages if m.outcome in ("delivered", "failed") and m.report_answer is None]
        if not waiting:
            return
        time.sleep(0.2)
    broken.append(f"{len(waiting)} delivery reports were not answered by the portal")


def _sending_row(gateway: SandboxSmsGateway, sent: list[Any], scale: SmsScale) -> Row:
    times = sorted(m.sent_at for m in sent)
    busiest = _max_in_window(times, 1.0) if times else 0
    numbers = [m.to for m in sent]
    once_each = len(numbers) == len(set(numbers))
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    met = bool(sent) and once_each and gateway.refused_for_rate == 0 and busiest <= PROVIDER_RATE
    return Row(
        f"{scale.activations:,} receipts by SMS after {scale.activations:,} activations",
        f"{len(sent)} sent in {span:.1f} s, busiest second {busiest}, {gateway.refused_for_rate} refused",
        f"all, once each, ≤ {PROVIDER_RATE}/s, none refused",
        met,
        [
            f"portal sends at PORTAL_SMS_RATE_PER_S={PORTAL_RATE} (the stand-in refuses over {PROVIDER_RATE}/s with 429); "
            f"{'once per number' if once_each else 'DUPLICATES'}; includes the warm-up activations"
        ],
    )

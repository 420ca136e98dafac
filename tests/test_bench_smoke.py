"""`scripts/bench --quick` runs end to end: it fails only when something is broken, not on timing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_exits_zero_and_prints_the_table():
    env = dict(os.environ)
    if "BENCH_PG_URL" not in env and env.get("TEST_DATABASE_URL"):
        env["BENCH_PG_URL"] = env["TEST_DATABASE_URL"]
    done = subprocess.run([str(ROOT / "scripts" / "bench"), "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=420)  # every group at --quick, tunnel, money and SMS included
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "| figure" in done.stdout and "| met" in done.stdout, output[-4000:]
    for figure in ("STK callback handling p95 (PostgreSQL)", "callbacks/s sustained", "callback → user on router p95",
                   "plans page TTFB p95", "customer page weight", "token refresh", "reconciliation of",
                   "callback → user on a pull router p95", "pull sync p95",
                   "hub sync, 100 peers", "callback → user on router over the tunnel p95",
                   "callback → user on router p95, SMS on vs off", "receipts by SMS after"):
        assert figure in done.stdout, f"{figure!r} missing from the table:\n{done.stdout}"

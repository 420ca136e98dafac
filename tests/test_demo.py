"""The README's first command: the demo starts, and a newcomer's purchase goes through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_smoke_buys_a_voucher_end_to_end(tmp_path):
    # --smoke walks the newcomer's path over HTTP: the router's login page → plans → buy
    # "1 Hour – KES 10" with 0712 345 678 → wait page → voucher active on the sandbox router.
    result = subprocess.run(
        [sys.executable, "-m", "portal.sandbox.demo", "--smoke", "--port", "0", "--instance", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "smoke: ok (demo-cafe)" in result.stdout
    assert "smoke: ok (demo-kiosk)" in result.stdout  # the demo router that syncs by pull


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert first_block.strip().splitlines()[0].startswith("scripts/demo")
    assert first_block.strip().splitlines()[1].startswith("scripts/test")
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()

"""The README's first command: the demo starts, and a newcomer's purchase goes through."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One `scripts/demo --smoke` run (its output and its instance folder), shared by the tests below."""
    instance = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "portal.sandbox.demo", "--smoke", "--port", "0", "--instance", str(instance)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    return result, instance


def test_demo_smoke_buys_a_voucher_end_to_end(smoke):
    # --smoke walks the newcomer's path over HTTP: the router's login page → plans → buy
    # "1 Hour – KES 10" with 0712 345 678 → wait page → voucher active on the sandbox router.
    result, _ = smoke
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "smoke: ok" in result.stdout
    assert "pull router demo-kiosk: True" in result.stdout  # the demo router that syncs by pull


def test_demo_sends_the_receipt_through_the_sandbox_sms_gateway(smoke):
    # Issue 17: the approved purchase's code reaches the sandbox Africa's Talking gateway by SMS.
    result, _ = smoke
    assert "SMS receipt: True" in result.stdout
    assert re.search(r"smoke: SMS to \+254712345678: Demo Cafe WiFi code: \w+\. 1 Hour, valid until", result.stdout)


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert first_block.strip().splitlines()[0].startswith("scripts/demo")
    assert first_block.strip().splitlines()[1].startswith("scripts/test")
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_demo_smoke_also_settles_an_unanswered_prompt_by_c2b_from_the_control_page(smoke):
    result, instance = smoke
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "C2B from the control page: True" in result.stdout
    # The terminal shows one line per purchase; requests and jobs went to the log file.
    purchases = [line for line in result.stdout.splitlines() if "→" in line]
    assert len(purchases) == 3 and any(" c2b " in line for line in purchases), purchases  # the third: on the kiosk
    assert "GET /" not in result.stdout + result.stderr and "apscheduler" not in result.stdout + result.stderr
    log = (instance / "demo.log").read_text()
    assert "GET /r/demo-cafe" in log and "/c2b/confirm" in log


def test_the_readme_lists_the_numbers_the_demo_prints():
    from portal.sandbox.demo import TEST_NUMBERS

    readme = (ROOT / "README.md").read_text()
    listed = dict(re.findall(r"^\| `(0[\d ]+)` \| (.+?) \|$", readme, flags=re.M))
    assert listed == {number: outcome for number, outcome in TEST_NUMBERS}


def test_after_the_router_login_the_demo_lands_on_a_you_are_online_page(router_box):
    from portal.sandbox.hotspot import ROUTER_PAGES, SandboxHotspot

    with SandboxHotspot(router_box, pages_dir=ROUTER_PAGES, default_link_orig="/status") as hotspot:
        hotspot.status_extra_html = '<p>see the <a href="http://127.0.0.1:1/">sandbox SMS gateway</a></p>'  # as the demo sets it
        router_box.users["ABCD2345XY"] = {".id": "*1", "name": "ABCD2345XY", "password": "ABCD2345XY", "profile": "default"}
        login = requests.get(hotspot.login_url, timeout=5)
        link_orig = re.search(r"<dt>link-orig</dt><dd>([^<]+)</dd>", login.text).group(1)
        landed = requests.post(
            hotspot.login_url, data={"username": "ABCD2345XY", "password": "ABCD2345XY", "dst": link_orig}, timeout=5
        )
    assert hotspot.logins[-1]["error"] is None, hotspot.logins
    assert link_orig == f"{hotspot.base_url}/status"
    assert landed.url == link_orig and "You are online" in landed.text
    assert 'sandbox SMS gateway</a>' in landed.text  # issue 17: the demo's success page links the SMS it "sent"


def test_the_demo_shows_a_router_reached_over_the_wireguard_tunnel(smoke):
    import sqlite3

    _, instance = smoke
    with sqlite3.connect(instance / "demo.db") as conn:
        row = conn.execute(
            "SELECT connection_mode, tunnel_address, host, wg_public_key FROM routers WHERE slug = 'demo-rooftop'").fetchone()
    assert row[0] == "tunnel" and row[1] == row[2] == "10.77.0.2" and len(row[3]) == 44
def test_demo_pays_the_platform_paybill_owner_out_end_to_end(smoke):
    # Issue 15: a week of sales on the platform's paybill, less 5 % commission, paid out by B2C
    # through the sandbox after the phone check payout and an admin's approval.
    result, _ = smoke
    assert "smoke: payout completed KES 1316 receipt " in result.stdout

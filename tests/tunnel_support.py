"""A real WireGuard tunnel on this machine: network namespaces the test makes and always removes.

The hub namespace holds the portal's hub interface (made by `flask tunnel apply` itself) and the
portal's activation worker; each router site is a namespace of its own with a wireguard-go device
configured from the generated setup script's WireGuard lines, and the sandbox RouterOS API
listening only on its tunnel address. Sites reach the hub's endpoint over a veth pair; no address
of any namespace exists outside them, and the root namespace gets no route to any of them.

Needs root, /dev/net/tun, iproute2, wireguard-tools and wireguard-go: scripts/install-wireguard
installs the last two when they are missing. When something cannot be had the tests FAIL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.sandbox.tunnel_lab import (  # noqa: F401  (re-exported for the tests)
    HUB_ENDPOINT,
    HUB_PORT,
    PYTHON,
    ROOT,
    TUNNEL_NETWORK,
    ScriptTunnel,
    Site,
    TunnelLab,
    run,
)
from tests.conftest import TEST_FERNET_KEY

INSTALL_SCRIPT = ROOT / "scripts" / "install-wireguard"


def ensure_wireguard() -> None:
    """The tools, installed if missing; the run FAILS (not skips) when they or the privileges are missing."""
    if os.geteuid() != 0:
        pytest.fail("the tunnel tests need root (network namespaces, WireGuard devices)", pytrace=False)
    if not os.path.exists("/dev/net/tun"):
        pytest.fail("/dev/net/tun is missing: wireguard-go cannot make a device here", pytrace=False)
    if not (shutil.which("wg") and shutil.which("wireguard-go") and shutil.which("ip")):
        result = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
        if not (shutil.which("wg") and shutil.which("wireguard-go") and shutil.which("ip")):
            pytest.fail(f"wireguard-tools/wireguard-go missing and scripts/install-wireguard failed "
                        f"(exit {result.returncode}): {result.stderr[-2000:]}", pytrace=False)
    probe = f"t13probe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.fail(f"cannot create a network namespace: {made.stderr.strip()}", pytrace=False)
    subprocess.run(["ip", "netns", "del", probe], check=False)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[TunnelLab]:
    ensure_wireguard()
    made = TunnelLab(tmp_path)
    try:
        yield made
    finally:
        made.close()
    leftover = [n for n in run("ip", "netns", "list").stdout.split() if n.endswith(made.tag) or made.tag + "x" in n]
    assert leftover == [], f"namespaces left behind: {leftover}"


def portal_env(app: Any, **extra: str) -> dict[str, str]:
    """The environment for a portal process (hub, worker) sharing the test app's SQLite database."""
    cfg = app.config
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "TEST_DATABASE"))}
    env.update(
        DATABASE_URL=cfg["DATABASE_URL"], SECRET_KEY=cfg["SECRET_KEY"], PORTAL_ENCRYPTION_KEYS=TEST_FERNET_KEY,
        PORTAL_BASE_URL=cfg["PORTAL_BASE_URL"], DARAJA_BASE_URL=cfg["DARAJA_BASE_URL"], PORTAL_SCHEDULER="off",
        PORTAL_TUNNEL_ENDPOINT=cfg["PORTAL_TUNNEL_ENDPOINT"], PORTAL_TUNNEL_NETWORK=cfg["PORTAL_TUNNEL_NETWORK"],
        PORTAL_TUNNEL_INTERFACE=cfg["PORTAL_TUNNEL_INTERFACE"], PORTAL_TUNNEL_SYNC_INTERVAL_S="0.5",
        PORTAL_ROUTER_CONNECT_TIMEOUT_S="3", PORTAL_ROUTER_COMMAND_TIMEOUT_S="10", PYTHONPATH=str(ROOT),
        FLASK_APP="wsgi",
    )
    env.update(extra)
    return env


def flask_args(*args: str) -> list[str]:
    return [PYTHON, "-m", "flask", "--app", "wsgi", *args]


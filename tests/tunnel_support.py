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

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_FERNET_KEY

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
INSTALL_SCRIPT = ROOT / "scripts" / "install-wireguard"
HUB_ENDPOINT = "198.51.100.1"  # on the hub namespace's loopback only
HUB_PORT = 51820
TUNNEL_NETWORK = "10.77.0.0/24"
_counter = itertools.count(1)


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


def run(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result


# ---------------------------------------------------------------------------------------------
# Reading the generated script


def _ros_unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@dataclass(frozen=True)
class ScriptTunnel:
    """The router's WireGuard and API settings, read back out of the generated setup script."""

    private_key: str
    hub_public_key: str
    endpoint: str
    allowed_address: str
    keepalive_s: int
    address: str
    api_user: str
    api_password: str
    api_port: int

    @classmethod
    def parse(cls, script: str) -> ScriptTunnel:
        def one(pattern: str) -> re.Match[str]:
            found = re.findall(pattern, script, re.M)
            assert len(found) == 1, f"expected one line matching {pattern!r} in the script, found {len(found)}"
            return re.search(pattern, script, re.M)  # type: ignore[return-value]

        key = one(r'^/interface wireguard set \[find name="[^"]+"\] private-key="([^"]+)"$')
        peer = one(r'^/interface wireguard peers set \[find interface="[^"]+" public-key="([^"]+)"\] '
                   r'endpoint-address="((?:[^"\\]|\\.)*)" endpoint-port=(\d+) allowed-address=(\S+) persistent-keepalive=(\d+)s$')
        address = one(r'^:if .* do=\{ /ip address add address=(\S+) interface="[^"]+"')
        user = one(r'^:if \(\[:len \[/user find name="([^"]+)"\]\] = 0\) do=\{ /user add .* password="((?:[^"\\]|\\.)*)"')
        port = one(r"^/ip service set api disabled=no port=(\d+)")
        return cls(
            private_key=key[1], hub_public_key=peer[1], endpoint=f"{_ros_unquote(peer[2])}:{peer[3]}",
            allowed_address=peer[4], keepalive_s=int(peer[5]), address=address[1],
            api_user=user[1], api_password=_ros_unquote(user[2]), api_port=int(port[1]),
        )

    @property
    def tunnel_ip(self) -> str:
        return self.address.split("/")[0]

    def wg_set_args(self, interface: str) -> list[str]:
        """`wg set` with the script's values; the private key goes on standard input."""
        return ["wg", "set", interface, "private-key", "/dev/stdin", "peer", self.hub_public_key,
                "endpoint", self.endpoint, "allowed-ips", self.allowed_address,
                "persistent-keepalive", str(self.keepalive_s)]


# ---------------------------------------------------------------------------------------------
# Namespaces


@dataclass
class Site:
    netns: str
    interface: str  # its WireGuard device
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    state_file: Path | None = None

    def exec(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.netns, *args, stdin=stdin, check=check, timeout=timeout)

    def start(self, *args: str, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[str]:
        out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *args], stdout=out, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=ROOT, start_new_session=True)
        self.processes.append(proc)
        return proc

    def users(self) -> dict[str, Any]:
        assert self.state_file is not None
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}


class TunnelLab:
    """The hub namespace and any number of router sites; ``close`` removes everything it made."""

    def __init__(self, tmp: Path) -> None:
        tag = f"{os.getpid() % 100000}{next(_counter)}"
        self.tag, self.tmp = tag, tmp
        self.hub = Site(f"t13hub{tag}", f"wh{tag}")
        self.sites: list[Site] = []
        self._netns = [self.hub.netns]
        run("ip", "netns", "add", self.hub.netns)
        self.hub.exec("ip", "link", "set", "lo", "up")
        self.hub.exec("ip", "address", "add", f"{HUB_ENDPOINT}/32", "dev", "lo")

    def add_site(self) -> Site:
        n = len(self.sites) + 1
        site = Site(f"t13site{self.tag}x{n}", f"wr{self.tag}x{n}")
        self._netns.append(site.netns)
        run("ip", "netns", "add", site.netns)
        hub_if, site_if = f"vh{self.tag}x{n}", f"vs{self.tag}x{n}"
        # veths are made inside the hub namespace, so not even for a moment do they exist outside.
        self.hub.exec("ip", "link", "add", hub_if, "type", "veth", "peer", "name", site_if)
        self.hub.exec("ip", "link", "set", site_if, "netns", site.netns)
        base = 4 * n
        self.hub.exec("ip", "address", "add", f"198.18.0.{base + 1}/30", "dev", hub_if)
        self.hub.exec("ip", "link", "set", hub_if, "up")
        site.exec("ip", "link", "set", "lo", "up")
        site.exec("ip", "address", "add", f"198.18.0.{base + 2}/30", "dev", site_if)
        site.exec("ip", "link", "set", site_if, "up")
        site.exec("ip", "route", "add", f"{HUB_ENDPOINT}/32", "via", f"198.18.0.{base + 1}")
        self.sites.append(site)
        return site

    def configure_router(self, site: Site, script: str, *, lax_allowed_ips: str | None = None, delay_s: float = 0.0) -> ScriptTunnel:
        """Bring the site's router up as the pasted script would: WireGuard, its address, its API."""
        tun = ScriptTunnel.parse(script)
        env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
        proc = subprocess.run(["ip", "netns", "exec", site.netns, "wireguard-go", site.interface],
                              capture_output=True, text=True, env=env, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        args = tun.wg_set_args(site.interface)
        if lax_allowed_ips:  # a careless router that would route the whole pool to the hub
            args[args.index("allowed-ips") + 1] = lax_allowed_ips
        site.exec(*args, stdin=tun.private_key + "\n")
        site.exec("ip", "address", "add", tun.address, "dev", site.interface)
        site.exec("ip", "link", "set", site.interface, "up")
        site.state_file = self.tmp / f"{site.netns}-users.json"
        site.start(PYTHON, "-m", "tests.tunnel_site", "router", "--host", tun.tunnel_ip, "--port", str(tun.api_port),
                   "--username", tun.api_user, "--password", tun.api_password, "--delay", str(delay_s),
                   "--state", str(site.state_file), "--identity", f"router-{site.netns}",
                   log=self.tmp / f"{site.netns}-router.log")
        deadline = time.monotonic() + 15
        while not site.state_file.exists():
            assert time.monotonic() < deadline, "the site's sandbox router did not start"
            time.sleep(0.1)
        return tun

    def rekey_router(self, site: Site, script: str) -> ScriptTunnel:
        """What pasting a new script does to the router's WireGuard: a new private key, same peer."""
        tun = ScriptTunnel.parse(script)
        site.exec(*tun.wg_set_args(site.interface), stdin=tun.private_key + "\n")
        return tun

    def close(self) -> None:
        for site in [self.hub, *self.sites]:
            for proc in site.processes:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in site.processes:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        for netns in self._netns:
            pids = run("ip", "netns", "pids", netns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for site in [self.hub, *self.sites]:
            run("ip", "netns", "exec", site.netns, "ip", "link", "del", site.interface, check=False)
            Path(f"/var/run/wireguard/{site.interface}.sock").unlink(missing_ok=True)
        for netns in self._netns:
            run("ip", "netns", "del", netns, check=False)


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


__all__ = ["HUB_ENDPOINT", "HUB_PORT", "TUNNEL_NETWORK", "ScriptTunnel", "Site", "TunnelLab", "flask_args",
           "lab", "portal_env", "run", "sys"]

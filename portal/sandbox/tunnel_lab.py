"""A real WireGuard tunnel on one machine, for the tests and the bench: network namespaces made
and always removed by their user, wireguard-go devices, and router sites configured from the
portal's own setup script.

The hub namespace holds the portal's hub interface (made by `flask tunnel apply` / `tunnel run`
themselves) and whatever portal process must reach routers; each router site is a namespace of
its own, wired to the hub by a veth pair, with a wireguard-go device set up from the generated
script's WireGuard lines and a sandbox RouterOS API listening only on its tunnel address. No
address of any namespace exists outside them, so nothing is routed out of them. Needs root,
/dev/net/tun, iproute2, wireguard-tools and wireguard-go (scripts/install-wireguard).
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
HUB_ENDPOINT = "198.51.100.1"  # on the hub namespace's loopback only
HUB_PORT = 51820
TUNNEL_NETWORK = "10.77.0.0/24"
_counter = itertools.count(1)
T = TypeVar("T")


def run(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 30,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
                            env=env, cwd=ROOT)
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

    def exec(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 30,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.netns, *args, stdin=stdin, check=check, timeout=timeout, env=env)

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
        tun = self.configure_wireguard(site, script, lax_allowed_ips=lax_allowed_ips)
        site.state_file = self.tmp / f"{site.netns}-users.json"
        site.start(PYTHON, "-m", "portal.sandbox.tunnel_lab", "router", "--host", tun.tunnel_ip, "--port", str(tun.api_port),
                   f"--username={tun.api_user}", f"--password={tun.api_password}", "--delay", str(delay_s),
                   "--state", str(site.state_file), "--identity", f"router-{site.netns}",
                   log=self.tmp / f"{site.netns}-router.log")
        router_log = self.tmp / f"{site.netns}-router.log"
        deadline = time.monotonic() + 40  # a loaded CI machine starts Python slowly
        while not site.state_file.exists():
            process = site.processes[-1]
            if process.poll() is not None or time.monotonic() > deadline:
                words = router_log.read_text()[-2000:] if router_log.exists() else "(no log)"
                raise AssertionError(f"the site's sandbox router did not start (exit {process.poll()}): {words}")
            time.sleep(0.1)
        return tun

    def configure_wireguard(self, site: Site, script: str, *, lax_allowed_ips: str | None = None) -> ScriptTunnel:
        """Only the script's WireGuard lines: the device, its key, the hub peer, the tunnel address."""
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




_CLONE_NEWNET = 0x40000000


def call_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a thread that has joined ``netns``: sockets it makes (a listener) live there.
    Threads it starts inherit the namespace too; the caller's own thread is untouched."""
    result: dict[str, Any] = {}

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/var/run/netns/{netns}") as handle:
            if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                result["error"] = OSError(ctypes.get_errno(), f"setns into {netns} failed")
                return
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


# ---------------------------------------------------------------------------------------------
# The processes run inside the namespaces: `python -m portal.sandbox.tunnel_lab router|probe|connect`
#   router:  the sandbox RouterOS API on the router's tunnel address only; its hotspot users are
#            written to a JSON file every 0.2 s, so the caller (outside the namespace) can read them.
#   probe:   from the hub's namespace, log in to a router's API over the tunnel, print its identity
#            (exit 1 when it cannot).
#   connect: a bare TCP connect; exit 0 when it connects, 1 when it cannot.


def _router(args: argparse.Namespace) -> int:
    from .router import SandboxRouter

    box = SandboxRouter(host=args.host, port=args.port, username=args.username, password=args.password,
                        identity=args.identity).start()
    box.command_delay_s = args.delay
    out = Path(args.state)
    print("listening", flush=True)
    while True:
        with box.lock:
            users = {name: dict(row) for name, row in box.users.items()}
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(users))
        tmp.replace(out)
        time.sleep(0.2)


def _probe(args: argparse.Namespace) -> int:
    from ..routeros import RouterConnection, RouterCredentials, RouterError
    from ..routeros.hotspot import read_identity

    conn = RouterConnection(RouterCredentials(args.host, args.port, args.username, args.password, label="probe"),
                            connect_timeout=args.timeout, command_timeout=args.timeout)
    try:
        print(read_identity(conn))
    except RouterError as exc:
        print(f"unreachable: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return 0


def _watch(args: argparse.Namespace) -> int:
    """One API connection, kept open, asked for the identity every 0.2 s for --seconds: prints the
    number of commands answered and failed (exit 0 only when none failed)."""
    from ..routeros import RouterConnection, RouterCredentials, RouterError
    from ..routeros.hotspot import read_identity

    conn = RouterConnection(RouterCredentials(args.host, args.port, args.username, args.password, label="watch"),
                            connect_timeout=args.timeout, command_timeout=args.timeout)
    answered = failed = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        try:
            read_identity(conn)
            answered += 1
        except RouterError as exc:
            failed += 1
            print(f"failed: {exc}", file=sys.stderr, flush=True)
        time.sleep(0.2)
    conn.close()
    print(f"answered {answered} failed {failed}", flush=True)
    return 1 if failed else 0


def _connect(args: argparse.Namespace) -> int:
    try:
        socket.create_connection((args.host, args.port), timeout=args.timeout).close()
    except OSError as exc:
        print(f"no connection: {exc}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("router")
    for p in (r, sub.add_parser("probe"), sub.add_parser("connect"), sub.add_parser("watch")):
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, default=8728)
    for p in (r, sub.choices["probe"], sub.choices["watch"]):
        p.add_argument("--username", default="portal")
        p.add_argument("--password", default="sandbox-router-pass")
    r.add_argument("--identity", default="SiteRouter")
    r.add_argument("--delay", type=float, default=0.0, help="seconds per command")
    r.add_argument("--state", required=True)
    for name in ("probe", "connect", "watch"):
        sub.choices[name].add_argument("--timeout", type=float, default=3.0)
    sub.choices["watch"].add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    return {"router": _router, "probe": _probe, "connect": _connect, "watch": _watch}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())

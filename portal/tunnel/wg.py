"""The only code that runs `wg`, `ip` and `wireguard-go`: timeouts on every call, typed errors.

Private keys go to `wg` on standard input, never on a command line (where `ps` would show them)
and never into a file. Errors carry the tool's own words, which never include a key.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TIMEOUT_S = 20.0  # a syncconf of thousands of peers over wireguard-go's socket takes well under this


class WgError(RuntimeError):
    """A WireGuard or iproute2 command failed or did not answer in time."""


class WgToolMissing(WgError):
    """`wg`, `ip` or `wireguard-go` is not installed (scripts/install-wireguard installs them)."""


@dataclass(frozen=True)
class PeerStats:
    public_key: str
    latest_handshake: int  # Unix seconds; 0 = never
    rx_bytes: int
    tx_bytes: int
    allowed_ips: tuple[str, ...]
    endpoint: str | None


def _run(args: list[str], *, stdin: str | None = None, timeout: float = TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise WgToolMissing(f"{args[0]} is not installed; run scripts/install-wireguard") from exc
    except subprocess.TimeoutExpired as exc:
        raise WgError(f"`{' '.join(args[:3])}` did not finish within {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        raise WgError(f"`{' '.join(args[:3])}` failed: {result.stderr.strip()[:300] or f'exit {result.returncode}'}")
    return result


def interface_exists(name: str) -> bool:
    return _run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def create_interface(name: str) -> str:
    """Create the WireGuard device: kernel WireGuard where there is one, wireguard-go otherwise.

    Returns "kernel" or "wireguard-go". wireguard-go forks into the background once the device exists
    (it lives until the link is deleted), so it outlives the `flask tunnel run` that started it.
    """
    if _run(["ip", "link", "add", "dev", name, "type", "wireguard"], check=False).returncode == 0:
        return "kernel"
    if shutil.which("wireguard-go") is None:
        raise WgToolMissing("this kernel has no WireGuard and wireguard-go is not installed; run scripts/install-wireguard")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WG_")}
    env["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1"  # wireguard-go refuses to start on Linux without it
    try:
        result = subprocess.run(["wireguard-go", name], capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WgError("wireguard-go did not start within the timeout") from exc
    if result.returncode != 0 or not interface_exists(name):
        raise WgError(f"wireguard-go could not create {name}: {(result.stderr or result.stdout).strip()[-300:]}")
    return "wireguard-go"


def interface_kind(name: str) -> str:
    result = _run(["ip", "-d", "link", "show", "dev", name], check=False)
    return "kernel" if " wireguard " in result.stdout else "wireguard-go"


def prepare_interface(name: str, address_cidr: str) -> None:
    """Isolation rules, address on, link up, and no forwarding of packets that arrive on it (routers
    never reach each other nor the host's services).

    Each step leaves a correct interface as it is: `ip address replace` and `ip link set up` change
    nothing that is already so, so the tunnels keep running.
    """
    guard_host(name)  # before the link is up: never a moment when routers could reach the host
    _run(["ip", "address", "replace", address_cidr, "dev", name])
    _run(["ip", "link", "set", "dev", name, "up"])
    disable_forwarding(name)


def disable_forwarding(name: str) -> None:
    # IPv4 forwards a packet only when the interface it arrived on has forwarding on. Turning it
    # off here holds even when something (Docker) turns net.ipv4.ip_forward on for the host;
    # writing the global switch resets every interface, so each pass writes this again.
    path = Path("/proc/sys/net/ipv4/conf") / name / "forwarding"
    try:
        if path.read_text().strip() != "0":
            path.write_text("0\n")
    except OSError as exc:
        raise WgError(f"cannot turn forwarding off on {name}: {exc.strerror}") from exc


_SAFE_INTERFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # Linux IFNAMSIZ; nothing that could end a quoted string


def guard_table(name: str) -> str:
    return "portal_tunnel_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def guard_ruleset(name: str) -> str:
    """nftables rules for the hub interface: what arrives on it reaches this host only as an answer
    to a connection the portal opened (the API client's), and nothing is forwarded to or from it.
    So a router reaches neither another router nor any service on the portal host (the web app,
    PostgreSQL, SSH), whatever the host's other firewall says. The first two lines make the
    replacement atomic: the table is never absent, even for a moment."""
    if not _SAFE_INTERFACE.match(name):
        raise WgError(f"interface name {name[:20]!r} is not a plain interface name")
    table = guard_table(name)
    return "\n".join([
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f'    iifname "{name}" ct state established,related accept',
        f'    iifname "{name}" counter drop',
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        f'    iifname "{name}" counter drop',
        f'    oifname "{name}" counter drop',
        "  }",
        "}",
        "",
    ])


def guard_host(name: str) -> None:
    """Install (or put back) the rules of ``guard_ruleset``; every pass, so a flushed ruleset heals."""
    if shutil.which("nft") is None:
        raise WgToolMissing("nft is not installed: the hub will not run without its isolation rules; run scripts/install-wireguard")
    _run(["nft", "-f", "-"], stdin=guard_ruleset(name))


def forwarding_enabled(name: str) -> bool | None:
    try:
        return (Path("/proc/sys/net/ipv4/conf") / name / "forwarding").read_text().strip() != "0"
    except OSError:
        return None


def syncconf(name: str, conf: str) -> None:
    """Make the device match ``conf`` (wg-quick strip format) without touching unchanged peers' sessions."""
    _run(["wg", "syncconf", name, "/dev/stdin"], stdin=conf)


def dump(name: str) -> list[PeerStats]:
    """Every peer of the device, from `wg show NAME dump` (tab separated; first line is the interface)."""
    lines = _run(["wg", "show", name, "dump"]).stdout.splitlines()
    peers = []
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) < 8:
            continue
        allowed = tuple(a for a in parts[3].split(",") if a and a != "(none)")
        peers.append(PeerStats(
            public_key=parts[0],
            endpoint=None if parts[2] == "(none)" else parts[2],
            allowed_ips=allowed,
            latest_handshake=int(parts[4]),
            rx_bytes=int(parts[5]),
            tx_bytes=int(parts[6]),
        ))
    return peers


def delete_interface(name: str) -> None:
    """Only for tests and benches: production never brings the hub down."""
    _run(["ip", "link", "del", "dev", name], check=False)

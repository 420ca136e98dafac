"""Hotspot operations on one router. Each is idempotent, so the outbox may repeat any of them.

Every function takes a RouterConnection and raises RouterUnreachable, RouterLoginFailed or
RouterCommandFailed (see errors.py). Values read back are always ``str``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .connection import RouterConnection, Row
from .errors import RouterCommandFailed

USER_MENU = "/ip/hotspot/user"
PROFILE_MENU = "/ip/hotspot/user/profile"
ACTIVE_MENU = "/ip/hotspot/active"

_ALREADY_EXISTS = "already have"  # "failure: already have user with this name for this server"
_NO_SUCH_ITEM = "no such item"


def ensure_profile(conn: RouterConnection, name: str, *, rate_limit: str | None, shared_users: int = 1) -> None:
    """Create the user profile ``name`` or change it so its rate limit and shared users match.

    ``rate_limit=None`` means no limit (the profile's rate-limit is cleared).
    """
    wanted = {"rate-limit": rate_limit or "", "shared-users": str(shared_users)}
    existing = _find_one(conn, PROFILE_MENU, name)
    if existing is None:
        try:
            conn.run(f"{PROFILE_MENU}/add", name=name, **_non_empty(wanted))
            return
        except RouterCommandFailed:
            existing = _find_one(conn, PROFILE_MENU, name)  # created by someone else meanwhile?
            if existing is None:
                raise
    changes = {key: value for key, value in wanted.items() if existing.get(key, "") != value}
    if changes:
        conn.run(f"{PROFILE_MENU}/set", **{".id": existing[".id"]}, **changes)


def add_hotspot_user(
    conn: RouterConnection,
    name: str,
    password: str,
    *,
    profile: str,
    limit_uptime_s: int | None = None,
    limit_bytes_total: int | None = None,
    comment: str = "",
    server: str | None = None,
    mac_address: str | None = None,
) -> bool:
    """Add a hotspot user. True if created; False if a user with that name was already there.

    An existing user counts as done (its attributes are not compared): after a lost reply the
    first attempt may well have created it. Attributes left as None are not sent, because
    RouterOS rejects empty time values.
    """
    attributes: dict[str, str | int] = {"name": name, "password": password, "profile": profile}
    if limit_uptime_s is not None:
        attributes["limit-uptime"] = format_routeros_duration(limit_uptime_s)
    if limit_bytes_total is not None:
        attributes["limit-bytes-total"] = limit_bytes_total
    if comment:
        attributes["comment"] = comment
    if server is not None:
        attributes["server"] = server
    if mac_address:
        attributes["mac-address"] = mac_address  # only this device may log in as the user
    try:
        conn.run(f"{USER_MENU}/add", **attributes)
    except RouterCommandFailed as exc:
        # Trap wording differs between versions, so confirm by looking before calling it done.
        if _ALREADY_EXISTS in exc.trap_message or get_hotspot_user(conn, name) is not None:
            return False
        raise
    return True


def login_device(conn: RouterConnection, user: str, password: str, *, ip: str, mac: str | None) -> None:
    """Log the device with this IP (and MAC) in as ``user``; the hotspot must already know the host."""
    attributes = {"user": user, "password": password, "ip": ip}
    if mac:
        attributes["mac-address"] = mac
    conn.run(f"{ACTIVE_MENU}/login", **attributes)


def remove_hotspot_user(conn: RouterConnection, name: str) -> bool:
    """Remove the user and log out its sessions. False if there was no such user.

    The user goes first so a device cannot log back in between the two steps; the sessions are
    removed even when the user is already gone, so a repeat finishes an interrupted removal.
    """
    user = get_hotspot_user(conn, name)
    was_removed = user is not None and _remove_by_id(conn, USER_MENU, user[".id"])
    for session in conn.run(f"{ACTIVE_MENU}/print", f"?=user={name}", "=.proplist=.id"):
        _remove_by_id(conn, ACTIVE_MENU, session[".id"])
    return was_removed


def get_hotspot_user(conn: RouterConnection, name: str) -> Row | None:
    """The user's attributes as the router prints them (``.id``, ``profile``, ``limit-uptime``…)."""
    return _find_one(conn, USER_MENU, name)


def read_identity(conn: RouterConnection) -> str:
    rows = conn.run("/system/identity/print")
    return rows[0].get("name", "") if rows else ""


def list_hotspot_servers(conn: RouterConnection) -> list[str]:
    return [row["name"] for row in conn.run("/ip/hotspot/print", "=.proplist=name") if "name" in row]


def hotspot_dns_names(conn: RouterConnection, server: str | None = None) -> list[str]:
    """The DNS names set on the hotspot profiles the router's servers use (``server`` only, when
    given): the host a genuine login page of this router posts to. Empty names are left out."""
    servers = conn.run("/ip/hotspot/print", "=.proplist=name,profile")
    used = {row.get("profile") for row in servers if server is None or row.get("name") == server}
    names = []
    for profile in conn.run("/ip/hotspot/profile/print", "=.proplist=name,dns-name"):
        dns_name = (profile.get("dns-name") or "").strip().rstrip(".").lower()
        if profile.get("name") in used and dns_name and dns_name not in names:
            names.append(dns_name)
    return names


@dataclass
class ActiveSession:
    id: str
    user: str
    address: str
    mac_address: str
    uptime: str
    bytes_in: int
    bytes_out: int


def list_active_sessions(conn: RouterConnection) -> list[ActiveSession]:
    rows = conn.run(f"{ACTIVE_MENU}/print", "=.proplist=.id,user,address,mac-address,uptime,bytes-in,bytes-out")
    return [
        ActiveSession(
            id=row.get(".id", ""),
            user=row.get("user", ""),
            address=row.get("address", ""),
            mac_address=row.get("mac-address", ""),
            uptime=row.get("uptime", ""),
            bytes_in=_as_int(row.get("bytes-in")),
            bytes_out=_as_int(row.get("bytes-out")),
        )
        for row in rows
    ]


def disconnect_session(conn: RouterConnection, session_id: str) -> None:
    """Log one active session out; a session that is already gone counts as done."""
    _remove_by_id(conn, ACTIVE_MENU, session_id)


def _find_one(conn: RouterConnection, menu: str, name: str) -> Row | None:
    rows = conn.run(f"{menu}/print", f"?=name={name}")
    return rows[0] if rows else None


def _remove_by_id(conn: RouterConnection, menu: str, item_id: str) -> bool:
    """Remove one item; False if it was already gone (another worker, or the router, got there first)."""
    try:
        conn.run(f"{menu}/remove", **{".id": item_id})
    except RouterCommandFailed as exc:
        if _NO_SUCH_ITEM in exc.trap_message:
            return False
        raise
    return True


def _non_empty(attributes: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in attributes.items() if value != ""}


def _as_int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


# --- RouterOS time values -------------------------------------------------------------------

_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}

# "1w2d3h4m5s" (RouterOS 7), "1d02:03:04" / "00:30:00" (older prints), "0", "1s500ms".
_DURATION = re.compile(
    r"(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?"
    r"(?:(?P<clock_h>\d+):(?P<clock_m>\d{1,2}):(?P<clock_s>\d{1,2})(?:\.\d+)?"
    r"|(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?(?:(?P<s>\d+)s)?(?:\d+ms)?)"
)


def format_routeros_duration(seconds: int) -> str:
    """3600 → "1h", 5400 → "1h30m", 90 → "1m30s", 0 → "0s" (RouterOS reads 0 as "no limit")."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    parts = []
    remaining = seconds
    for unit, size in _UNIT_SECONDS.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_routeros_duration(text: str) -> int:
    """Whole seconds in a RouterOS time value ("1w2d3h4m5s", "1d02:03:04", "00:30:00", "0s", "0")."""
    text = text.strip()
    if text.isdigit():
        return int(text)  # a bare number is seconds
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a RouterOS time value: {text!r}")
    found = {key: int(value) for key, value in match.groupdict().items() if value}
    clock = found.pop("clock_h", 0) * 3600 + found.pop("clock_m", 0) * 60 + found.pop("clock_s", 0)
    return clock + sum(_UNIT_SECONDS[unit] * count for unit, count in found.items())


@dataclass(frozen=True)
class UserUsage:
    """What a hotspot user has used so far, against its limits (0 = no limit)."""

    name: str
    uptime_s: int
    limit_uptime_s: int
    bytes_total: int
    limit_bytes_total: int

    @property
    def is_used_up(self) -> bool:
        out_of_time = self.limit_uptime_s > 0 and self.uptime_s >= self.limit_uptime_s
        out_of_data = self.limit_bytes_total > 0 and self.bytes_total >= self.limit_bytes_total
        return out_of_time or out_of_data


def list_user_usage(conn: RouterConnection) -> list[UserUsage]:
    """Every hotspot user's counters in one print (limits are totals across sessions)."""
    rows = conn.run(
        "/ip/hotspot/user/print", "=.proplist=name,uptime,limit-uptime,bytes-in,bytes-out,limit-bytes-total"
    )
    return [
        UserUsage(
            name=str(row["name"]),
            uptime_s=parse_routeros_duration(str(row.get("uptime") or "0s")),
            limit_uptime_s=parse_routeros_duration(str(row.get("limit-uptime") or "0s")),
            bytes_total=_int(row.get("bytes-in")) + _int(row.get("bytes-out")),
            limit_bytes_total=_int(row.get("limit-bytes-total")),
        )
        for row in rows
        if "name" in row
    ]


def _int(value: object) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0

"""A local stand-in for a MikroTik router's API service, speaking the real RouterOS binary protocol.

Demo mode and the tests point the portal's RouterOS client at it over TCP on 127.0.0.1. It keeps
hotspot users, profiles, active sessions and hosts in memory, answers with RouterOS's own trap
texts where they are known, and can be told to be slow, to drop connections or to refuse them.

The framing is written here rather than borrowed from librouteros, so the client is tested
against an independent reading of the protocol (and only portal/routeros imports librouteros).
Invented behaviour (traps whose real text is unknown) is marked "invented" below.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

Sentence = list[str]
Row = dict[str, str]

USER_PROPERTIES = frozenset(
    "name password profile server mac-address address limit-uptime limit-bytes-in limit-bytes-out "
    "limit-bytes-total comment email routes disabled otp-secret".split()
)
PROFILE_PROPERTIES = frozenset(
    "name rate-limit shared-users session-timeout idle-timeout keepalive-timeout status-autorefresh "
    "add-mac-cookie mac-cookie-timeout address-list address-pool incoming-filter outgoing-filter "
    "incoming-packet-mark outgoing-packet-mark on-login on-logout open-status-page transparent-proxy "
    "advertise parent-queue insert-queue-before comment".split()
)
_ADDRESSING = frozenset({".id", "numbers"})
_TIME_PROPERTIES = frozenset({"limit-uptime", "session-timeout", "mac-cookie-timeout"})
_TIME_OR_NONE_PROPERTIES = frozenset({"idle-timeout", "keepalive-timeout", "status-autorefresh"})
_INTEGER_PROPERTIES = frozenset({"limit-bytes-in", "limit-bytes-out", "limit-bytes-total"})
_BOOLEAN_PROPERTIES = frozenset({"disabled", "add-mac-cookie", "transparent-proxy", "advertise"})
_RATE_LIMIT = re.compile(r"\d+[kKmMgG]?(/\d+[kKmMgG]?)?(\s.*)?")
_NO_MAC = "00:00:00:00:00:00"


class SandboxTrap(Exception):
    """A command failure, answered as ``!trap =message=… [=category=…]`` then ``!done``."""

    def __init__(self, message: str, category: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.category = category


class _ProtocolViolation(Exception):
    """The client sent bytes that are not RouterOS API framing; the connection is closed."""


# --- wire format ------------------------------------------------------------------------------


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return length.to_bytes(1, "big")
    if length < 0x4000:
        return (length | 0x8000).to_bytes(2, "big")
    if length < 0x200000:
        return (length | 0xC00000).to_bytes(3, "big")
    if length < 0x10000000:
        return (length | 0xE0000000).to_bytes(4, "big")
    return b"\xf0" + length.to_bytes(4, "big")


def encode_sentence(words: Iterable[str]) -> bytes:
    encoded = b""
    for word in words:
        data = word.encode("utf-8")
        encoded += encode_length(len(data)) + data
    return encoded + b"\x00"


def read_sentence(stream: BinaryIO) -> Sentence:
    """Read words up to the empty word. Raises EOFError when the peer has closed."""
    words = []
    while (length := _read_length(stream)) != 0:
        words.append(_read_exactly(stream, length).decode("utf-8", errors="replace"))
    return words


def _read_length(stream: BinaryIO) -> int:
    first = _read_exactly(stream, 1)[0]
    if first < 0x80:
        return first
    if first >= 0xF8:
        raise _ProtocolViolation(f"reserved control byte 0x{first:02x}")
    if first == 0xF0:
        return int.from_bytes(_read_exactly(stream, 4), "big")
    extra = 1 if first < 0xC0 else 2 if first < 0xE0 else 3
    mask = (0x3F, 0x1F, 0x0F)[extra - 1]
    return int.from_bytes(bytes([first & mask]) + _read_exactly(stream, extra), "big")


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    data = stream.read(count)
    if len(data) < count:
        raise EOFError("client closed the connection")
    return data


# --- requests, queries and time values ---------------------------------------------------------


@dataclass
class _Request:
    command: str
    attributes: dict[str, str] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    tag: str | None = None

    @classmethod
    def parse(cls, sentence: Sentence) -> _Request:
        request = cls(command=sentence[0])
        for word in sentence[1:]:
            if word.startswith("="):
                key, _, value = word[1:].partition("=")
                request.attributes[key] = value
            elif word.startswith("?"):
                request.queries.append(word[1:])
            elif word.startswith(".tag="):
                request.tag = word[len(".tag=") :]
        return request


def _row_matches(row: Row, queries: list[str]) -> bool:
    """RouterOS query semantics: a stack of booleans, the row is kept if none is false."""
    stack: list[bool] = []
    for query in queries:
        if query.startswith("#"):
            _apply_query_operations(stack, query[1:])
        elif query.startswith("-"):
            stack.append(query[1:] not in row)
        elif query[:1] in ("<", ">"):
            key, _, value = query[1:].partition("=")
            stack.append(_compare(row.get(key), value, query[0]))
        elif "=" in query:
            key, _, value = query.removeprefix("=").partition("=")
            stack.append(row.get(key, "") == value)
        else:
            stack.append(query in row)
    return all(stack)


def _apply_query_operations(stack: list[bool], operations: str) -> None:
    def pop() -> bool:
        return stack.pop() if stack else True  # the stack starts as infinitely many trues

    for operation in operations:
        if operation == "!":
            stack.append(not pop())
        elif operation in "&|":
            left, right = pop(), pop()
            stack.append(left and right if operation == "&" else left or right)
        elif operation == ".":
            stack.extend([pop()] * 2)
        elif operation.isdigit():
            depth = int(operation)
            stack.append(stack[-1 - depth] if depth < len(stack) else True)
        else:
            raise SandboxTrap(f"unknown query operation {operation}")  # invented text


def _compare(actual: str | None, wanted: str, operator: str) -> bool:
    if actual is None:
        return False
    if actual.isdigit() and wanted.isdigit():
        left, right = int(actual), int(wanted)
        return left < right if operator == "<" else left > right
    return actual < wanted if operator == "<" else actual > wanted


_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_TIME_WITH_UNITS = re.compile(r"(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?")
_TIME_WITH_CLOCK = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(\d+):(\d{1,2}):(\d{1,2})")


def normalise_time(text: str, argument: str) -> str:
    """Validate a RouterOS time value and return it the way RouterOS 7 prints it ("1h30m")."""
    seconds = _time_seconds(text)
    if seconds is None:
        raise SandboxTrap(f"invalid time value for argument {argument}", category=1)
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _time_seconds(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    if text and (match := _TIME_WITH_UNITS.fullmatch(text)):
        return sum(int(part[:-1]) * _UNITS[part[-1]] for part in match.groups() if part)
    if match := _TIME_WITH_CLOCK.fullmatch(text):
        weeks, days, hours, minutes, secs = (int(part or 0) for part in match.groups())
        return weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + secs
    return None


# --- the router ----------------------------------------------------------------------------------


@dataclass
class _Session:
    """Per-connection state."""

    is_logged_in: bool = False


class SandboxRouter:
    """A RouterOS API server on 127.0.0.1 with an in-memory hotspot. Use ``with SandboxRouter() as r:``.

    State (guard multi-step reads with ``router.lock``): ``users`` (name → row), ``profiles``
    (name → row), ``active`` (.id → session row), ``hosts`` (MAC → host row), ``command_log``
    (every sentence received, passwords masked). All values are strings, as on the wire.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "portal",
        password: str = "sandbox-router-pass",
        identity: str = "SandboxRouter",
        hotspot_server: str = "hotspot1",
        hotspot_dns_name: str = "",
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.identity = identity
        self.hotspot_server = hotspot_server
        # The server profile's dns-name (empty, as on a new RouterOS hotspot, until set).
        self.hotspot_dns_name = hotspot_dns_name
        self.tls_context = tls_context  # server-side context: serve api-ssl instead of plain api
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.users: dict[str, Row] = {}
        self.profiles: dict[str, Row] = {"default": self._default_profile()}
        self.active: dict[str, Row] = {}
        self.hosts: dict[str, Row] = {}
        self.command_log: list[Sentence] = []
        self._command_delay_s = 0.0
        self._drops_pending = 0
        self._drop_after_executing = False
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._handlers: dict[str, Callable[[_Request], tuple[list[Row], Row]]] = {
            "/system/identity/print": self._print_identity,
            "/system/identity/set": self._set_identity,
            "/ip/hotspot/print": self._print_servers,
            "/ip/hotspot/profile/print": self._print_server_profiles,
            "/ip/hotspot/user/print": lambda request: self._print(self.users.values(), request),
            "/ip/hotspot/user/add": self._add_user,
            "/ip/hotspot/user/set": self._set_user,
            "/ip/hotspot/user/remove": lambda request: self._remove(self.users, request),
            "/ip/hotspot/user/profile/print": lambda request: self._print(self.profiles.values(), request),
            "/ip/hotspot/user/profile/add": self._add_profile,
            "/ip/hotspot/user/profile/set": self._set_profile,
            "/ip/hotspot/user/profile/remove": self._remove_profile,
            "/ip/hotspot/active/print": lambda request: self._print(self.active.values(), request),
            "/ip/hotspot/active/remove": lambda request: self._remove(self.active, request),
            "/ip/hotspot/active/login": self._login_from_api,
            "/ip/hotspot/host/print": lambda request: self._print(self._host_rows(), request),
        }

    # --- lifecycle

    def start(self) -> SandboxRouter:
        self._open_listener()
        return self

    def stop(self) -> None:
        self._close_listener()
        self._drop_clients()

    def __enter__(self) -> SandboxRouter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- fault injection and test helpers

    @property
    def command_delay_s(self) -> float:
        """Seconds to sleep before answering each sentence (login included): a slow router."""
        with self.lock:
            return self._command_delay_s

    @command_delay_s.setter
    def command_delay_s(self, seconds: float) -> None:
        with self.lock:
            self._command_delay_s = seconds

    def refuse_connections(self, refuse: bool) -> None:
        """True: the router goes away (listener closed so connects are refused, open connections
        dropped). False: listen again on the same port."""
        if refuse:
            self._close_listener()
            self._drop_clients()
        elif self._listener is None:
            self._open_listener()

    def drop_connections_on_next_command(self, count: int = 1, *, after_executing: bool = False) -> None:
        """The next ``count`` sentences (a ``/login`` counts) are read, then the connection is closed
        without an answer. ``after_executing=True`` applies the command first, as when a reply is
        lost on the way back."""
        with self.lock:
            self._drops_pending = count
            self._drop_after_executing = after_executing

    def set_password(self, password: str) -> None:
        """Change the API account's password (open connections stay logged in, as on RouterOS)."""
        with self.lock:
            self.password = password

    def add_host(self, mac: str, ip: str) -> None:
        """Register a device the hotspot has seen (needed before /ip/hotspot/active/login)."""
        mac = mac.upper()
        with self.lock:
            row = self.hosts.get(mac) or {".id": self._new_id()}
            row.update({"mac-address": mac, "address": ip, "to-address": ip, "server": self.hotspot_server})
            row.update({"uptime": "0s", "idle-time": "0s", "bytes-in": "0", "bytes-out": "0"})
            self.hosts[mac] = row

    def count_commands(self, command: str) -> int:
        with self.lock:
            return sum(1 for sentence in self.command_log if sentence and sentence[0] == command)

    def session_for_mac(self, mac: str) -> Row | None:
        with self.lock:
            return next((s for s in self.active.values() if s["mac-address"] == mac.upper()), None)

    def log_in_host(
        self, *, user: str, password_matches: Callable[[str], bool], ip: str, mac: str | None, login_by: str
    ) -> Row:
        """Log a known host in as ``user`` (shared by the API login and the HTTP login servlet).

        A host already logged in as the same user stays as it is; as another user, it is logged out
        first (invented: RouterOS's behaviour here is undocumented). Raises SandboxTrap.
        """
        with self.lock:
            account = self.users.get(user)
            if account is None or account.get("disabled") == "true" or not password_matches(account["password"]):
                raise SandboxTrap("invalid username or password")
            host = self._find_host(ip, mac)
            if account.get("mac-address", _NO_MAC) not in (_NO_MAC, host["mac-address"]):
                raise SandboxTrap(f"user {user} is not allowed to log in from this MAC address")
            current = self.session_for_mac(host["mac-address"])
            if current is not None and current["user"] == user:
                return current
            if current is not None:
                del self.active[current[".id"]]
            self._check_shared_users(account)
            session_id = self._new_id()
            self.active[session_id] = {
                ".id": session_id,
                "server": self.hotspot_server,
                "user": user,
                "domain": "",
                "address": host["address"],
                "mac-address": host["mac-address"],
                "login-by": login_by,
                "uptime": "0s",
                "idle-time": "0s",
                "bytes-in": "0",
                "bytes-out": "0",
                "packets-in": "0",
                "packets-out": "0",
                "radius": "false",
            }
            return self.active[session_id]

    def log_out_mac(self, mac: str) -> bool:
        with self.lock:
            session = self.session_for_mac(mac)
            if session is not None:
                del self.active[session[".id"]]
            return session is not None

    # --- network

    def _open_listener(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR lets refuse_connections(False) bind the same port again despite TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"sandbox-router-{self.port}", daemon=True
        )
        self._accept_thread.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=2)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed
            threading.Thread(target=self._serve_client, args=(client,), daemon=True).start()

    def _drop_clients(self) -> None:
        with self.lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)  # the serving thread closes it

    def _serve_client(self, client: socket.socket) -> None:
        self._track_client(client)
        try:
            if self.tls_context is not None:
                # wrap_socket detaches ``client``: from here on the TLS socket owns the connection.
                client = self._track_client(self.tls_context.wrap_socket(client, server_side=True), replacing=client)
            self._converse(client)
        except (OSError, EOFError, _ProtocolViolation):
            pass  # the client went away or spoke nonsense: nothing to answer
        finally:
            with self.lock:
                self._clients.discard(client)
            client.close()

    def _track_client(self, client: socket.socket, *, replacing: socket.socket | None = None) -> socket.socket:
        with self.lock:
            self._clients.discard(replacing)
            self._clients.add(client)
        return client

    def _converse(self, sock: socket.socket) -> None:
        session = _Session()
        with sock.makefile("rb") as stream:
            while True:
                sentence = read_sentence(stream)
                if not sentence:
                    continue  # RouterOS ignores empty sentences
                self._log(sentence)
                drop, after_executing = self._take_drop()
                if drop:
                    if after_executing:
                        self._answer(session, sentence)
                    return
                if delay := self.command_delay_s:
                    time.sleep(delay)
                replies, must_close = self._answer(session, sentence)
                sock.sendall(b"".join(encode_sentence(reply) for reply in replies))
                if must_close:
                    return

    def _take_drop(self) -> tuple[bool, bool]:
        with self.lock:
            if self._drops_pending <= 0:
                return False, False
            self._drops_pending -= 1
            return True, self._drop_after_executing

    def _log(self, sentence: Sentence) -> None:
        masked = ["=password=***" if word.startswith("=password=") else word for word in sentence]
        with self.lock:
            self.command_log.append(masked)

    # --- dispatch

    def _answer(self, session: _Session, sentence: Sentence) -> tuple[list[Sentence], bool]:
        """The reply sentences for one command, and whether to close the connection afterwards."""
        request = _Request.parse(sentence)
        if request.command == "/quit":
            return [["!fatal", "session terminated on request"]], True
        try:
            with self.lock:
                rows, done = self._execute(session, request)
        except SandboxTrap as trap:
            replies = [_trap_sentence(trap), ["!done"]]
        else:
            replies = [["!re", *_attribute_words(row)] for row in rows]
            if not rows and request.command.endswith("/print"):
                replies.append(["!empty"])  # RouterOS 7.18+
            replies.append(["!done", *_attribute_words(done)])
        if request.tag is not None:
            replies = [[*reply, f".tag={request.tag}"] for reply in replies]
        return replies, False

    def _execute(self, session: _Session, request: _Request) -> tuple[list[Row], Row]:
        if request.command == "/login":
            self._log_in_api_user(session, request)
            return [], {}
        if not session.is_logged_in:
            raise SandboxTrap("not logged in", category=0)  # invented text
        handler = self._handlers.get(request.command)
        if handler is None:
            raise SandboxTrap("no such command prefix", category=0)
        return handler(request)

    def _log_in_api_user(self, session: _Session, request: _Request) -> None:
        name = request.attributes.get("name")
        password = request.attributes.get("password")
        if name != self.username or password != self.password:
            raise SandboxTrap("invalid user name or password (6)")
        session.is_logged_in = True

    # --- generic menu operations

    def _print(self, rows: Iterable[Row], request: _Request) -> tuple[list[Row], Row]:
        proplist = request.attributes.get(".proplist")
        wanted = proplist.split(",") if proplist else None
        selected = [row for row in rows if _row_matches(row, request.queries)]
        if wanted is not None:
            selected = [{key: row[key] for key in wanted if key in row} for row in selected]
        return [dict(row) for row in selected], {}

    def _resolve(self, table: dict[str, Row], request: _Request) -> list[str]:
        """Keys of the items named by ``=.id=`` or ``=numbers=`` (ids or names, comma-separated)."""
        wanted = request.attributes.get(".id") or request.attributes.get("numbers")
        if not wanted:
            raise SandboxTrap("no such item", category=0)
        keys = []
        for token in wanted.split(","):
            key = next((k for k, row in table.items() if token in (row[".id"], row.get("name"))), None)
            if key is None:
                raise SandboxTrap("no such item", category=0)
            keys.append(key)
        return keys

    def _remove(self, table: dict[str, Row], request: _Request) -> tuple[list[Row], Row]:
        for key in self._resolve(table, request):
            del table[key]
        return [], {}

    def _new_id(self) -> str:
        return f"*{next(self._ids):X}"

    def _validated(self, attributes: dict[str, str], allowed: frozenset[str]) -> Row:
        """Check every attribute the way RouterOS would and return them as RouterOS prints them."""
        clean: Row = {}
        for key, value in attributes.items():
            if key in _ADDRESSING or key == ".proplist":
                continue
            if key not in allowed:
                raise SandboxTrap(f"unknown parameter {key}")
            clean[key] = self._validated_value(key, value)
        return clean

    def _validated_value(self, key: str, value: str) -> str:
        if key in _TIME_PROPERTIES or (key in _TIME_OR_NONE_PROPERTIES and value != "none"):
            return normalise_time(value, key)
        if key in _INTEGER_PROPERTIES and not value.isdigit():
            raise SandboxTrap(f"invalid value for argument {key}", category=1)  # invented text
        if key in _BOOLEAN_PROPERTIES:
            if value not in ("yes", "no", "true", "false"):
                raise SandboxTrap(f"invalid value for argument {key}", category=1)  # invented text
            return "true" if value in ("yes", "true") else "false"
        if key == "profile" and value not in self.profiles:
            raise SandboxTrap("input does not match any value of profile", category=1)
        if key == "server" and value not in ("all", self.hotspot_server):
            raise SandboxTrap("input does not match any value of server", category=1)
        if key == "rate-limit" and value and not _RATE_LIMIT.fullmatch(value):
            raise SandboxTrap("invalid value for argument rate-limit", category=1)  # invented text
        if key == "shared-users" and not (value.isdigit() or value == "unlimited"):
            raise SandboxTrap("invalid value for argument shared-users", category=1)  # invented text
        return value

    # --- menus

    def _print_identity(self, request: _Request) -> tuple[list[Row], Row]:
        return self._print([{"name": self.identity}], request)

    def _set_identity(self, request: _Request) -> tuple[list[Row], Row]:
        self.identity = request.attributes.get("name", self.identity)
        return [], {}

    def _print_servers(self, request: _Request) -> tuple[list[Row], Row]:
        server = {
            ".id": "*1",
            "name": self.hotspot_server,
            "interface": "bridge-hotspot",
            "address-pool": "hs-pool-1",
            "profile": "hsprof1",
            "idle-timeout": "5m",
            "keepalive-timeout": "none",
            "addresses-per-mac": "2",
            "disabled": "false",
            "invalid": "false",
            "HTTPS": "false",
        }
        return self._print([server], request)

    def _print_server_profiles(self, request: _Request) -> tuple[list[Row], Row]:
        profiles = [
            {".id": "*0", "name": "default", "dns-name": "", "hotspot-address": "0.0.0.0", "login-by": "cookie,http-chap",
             "default": "true"},
            {".id": "*1", "name": "hsprof1", "dns-name": self.hotspot_dns_name, "hotspot-address": "10.5.50.1",
             "login-by": "cookie,http-chap,http-pap", "default": "false"},
        ]
        return self._print(profiles, request)

    def _add_user(self, request: _Request) -> tuple[list[Row], Row]:
        attributes = self._validated(request.attributes, USER_PROPERTIES)
        name = attributes.get("name", "")
        if not name:
            raise SandboxTrap("missing value for name", category=1)  # invented text
        if name in self.users:
            raise SandboxTrap("failure: already have user with this name for this server")
        user_id = self._new_id()
        self.users[name] = {
            ".id": user_id,
            "name": name,
            "server": "all",
            "profile": "default",
            "password": "",
            "disabled": "false",
            "dynamic": "false",
            "uptime": "0s",
            "bytes-in": "0",
            "bytes-out": "0",
            "packets-in": "0",
            "packets-out": "0",
            **attributes,
        }
        return [], {"ret": user_id}

    def _set_user(self, request: _Request) -> tuple[list[Row], Row]:
        changes = self._validated(request.attributes, USER_PROPERTIES)
        for name in self._resolve(self.users, request):
            new_name = changes.get("name", name)
            if new_name != name and new_name in self.users:
                raise SandboxTrap("failure: already have user with this name for this server")
            row = self.users.pop(name)
            row.update(changes)
            self.users[new_name] = row
        return [], {}

    @staticmethod
    def _default_profile() -> Row:
        return {
            ".id": "*0",
            "name": "default",
            "shared-users": "1",
            "idle-timeout": "none",
            "keepalive-timeout": "2m",
            "status-autorefresh": "1m",
            "add-mac-cookie": "true",
            "mac-cookie-timeout": "3d",
            "transparent-proxy": "true",
            "open-status-page": "always",
            "default": "true",
        }

    def _add_profile(self, request: _Request) -> tuple[list[Row], Row]:
        attributes = self._validated(request.attributes, PROFILE_PROPERTIES)
        name = attributes.get("name", "")
        if not name:
            raise SandboxTrap("missing value for name", category=1)  # invented text
        if name in self.profiles:
            raise SandboxTrap("failure: profile with the same name already exists")  # invented text
        profile_id = self._new_id()
        row = {**self._default_profile(), ".id": profile_id, "default": "false", **attributes}
        self.profiles[name] = _without_empty(row, "rate-limit")
        return [], {"ret": profile_id}

    def _set_profile(self, request: _Request) -> tuple[list[Row], Row]:
        changes = self._validated(request.attributes, PROFILE_PROPERTIES)
        for name in self._resolve(self.profiles, request):
            new_name = changes.get("name", name)
            if new_name != name and (new_name in self.profiles or name == "default"):
                raise SandboxTrap("failure: cannot rename this profile")  # invented text
            row = self.profiles.pop(name)
            row.update(changes)
            self.profiles[new_name] = _without_empty(row, "rate-limit")  # an empty value unsets it
        return [], {}

    def _remove_profile(self, request: _Request) -> tuple[list[Row], Row]:
        if "default" in self._resolve(self.profiles, request):
            raise SandboxTrap("failure: can not remove default profile")  # invented text
        return self._remove(self.profiles, request)

    def _login_from_api(self, request: _Request) -> tuple[list[Row], Row]:
        attributes = request.attributes
        password = attributes.get("password", "")
        self.log_in_host(
            user=attributes.get("user", ""),
            password_matches=lambda stored: stored == password,
            ip=attributes.get("ip", ""),
            mac=attributes.get("mac-address"),
            login_by="api",
        )
        return [], {}

    def _find_host(self, ip: str, mac: str | None) -> Row:
        for host in self.hosts.values():
            if host["address"] == ip and (not mac or host["mac-address"] == mac.upper()):
                return host
        raise SandboxTrap("host not found")  # invented text: the real one is undocumented

    def _host_rows(self) -> list[Row]:
        logged_in = {session["mac-address"] for session in self.active.values()}
        return [
            {**host, "authorized": "true" if mac in logged_in else "false", "bypassed": "false"}
            for mac, host in self.hosts.items()
        ]

    def _check_shared_users(self, account: Row) -> None:
        limit = self.profiles.get(account["profile"], {}).get("shared-users", "1")
        sessions = sum(1 for session in self.active.values() if session["user"] == account["name"])
        if limit != "unlimited" and sessions >= int(limit):
            raise SandboxTrap(f"no more sessions are allowed for user {account['name']}")


def _attribute_words(row: Row) -> list[str]:
    return [f"={key}={value}" for key, value in row.items()]


def _trap_sentence(trap: SandboxTrap) -> Sentence:
    words = ["!trap", f"=message={trap.message}"]
    if trap.category is not None:
        words.append(f"=category={trap.category}")
    return words


def _without_empty(row: Row, key: str) -> Row:
    if row.get(key) == "":
        del row[key]
    return row

"""One reused, locked RouterOS API connection per router, and a process-wide pool of them.

librouteros has no lock, no reconnect and no keepalive, and after a timeout a late reply can be
read as the answer to the next command. So: one connection per router behind a lock, the whole
reply read while holding it, and the socket thrown away on any error other than a ``!trap``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import librouteros
from librouteros.api import Api
from librouteros.exceptions import (
    ConnectionClosed,
    FatalError,
    LibRouterosError,
    MultiTrapError,
    TrapError,
)
from librouteros.protocol import compose_word

from .errors import RouterCommandFailed, RouterLoginFailed, RouterUnreachable

log = logging.getLogger(__name__)

# librouteros defaults to strict ASCII, which raises on an en dash in a comment.
API_ENCODING = "utf-8"

# The peer went away. On a reused connection that usually means the router dropped an idle
# socket (reboot, NAT timeout), so the command is worth one more try on a fresh connection.
_DEAD_CONNECTION_ERRORS = (
    ConnectionClosed,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    EOFError,
    ssl.SSLEOFError,
)

Row = dict[str, str]


@dataclass(frozen=True)
class RouterCredentials:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    use_tls: bool = False
    label: str = ""  # router slug, for logs and errors


class _UncastApi(Api):
    """An ``Api`` that returns reply values exactly as the router sent them.

    Stock librouteros turns ``"yes"`` into ``True`` and ``"123456"`` into ``123456``, so a voucher
    named 123456 or a comment "yes" would come back changed. Every value here stays ``str``
    (RouterOS itself writes booleans as ``"true"``/``"false"``).
    """

    def readSentence(self) -> tuple[str, Row]:  # noqa: N802 (overrides librouteros)
        reply_word, words = self.protocol.readSentence()
        return reply_word, dict(_split_attribute_word(word) for word in words)


def _split_attribute_word(word: str) -> tuple[str, str]:
    _, key, value = word.split("=", 2)
    return key, value


class _ConnectionDropped(Exception):
    """Internal: the socket died under a command (maybe retried once on a fresh connection)."""


class RouterConnection:
    """One reused API connection to one router, guarded by a lock (librouteros is not thread-safe)."""

    def __init__(
        self,
        credentials: RouterCredentials,
        *,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
    ) -> None:
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._lock = threading.Lock()
        self._api: Api | None = None

    @property
    def label(self) -> str:
        return self.credentials.label or f"{self.credentials.host}:{self.credentials.port}"

    def run(self, command: str, *words: str, **attributes: str | int | bool) -> list[Row]:
        """Send one command and return every reply row as ``{name: text}``.

        ``words`` are sent as given (``"?=name=ABC"``, ``"=.proplist=.id,name"``); ``attributes``
        become ``=key=value`` words (``True`` → ``yes``). The rows are the ``!re`` rows followed by
        the ``!done`` attributes if any (an ``add`` ends with ``{"ret": "*1A"}``).

        Connects lazily. A dead reused connection is retried once on a fresh one; a timeout is not
        (the command may have run). Raises RouterUnreachable, RouterLoginFailed, RouterCommandFailed.
        """
        sentence = [*words, *(compose_word(key, value) for key, value in attributes.items())]
        with self._lock:
            return self._run_locked(command, sentence)

    def close(self) -> None:
        with self._lock:
            self._discard()

    def _run_locked(self, command: str, words: list[str]) -> list[Row]:
        is_reused = self._api is not None
        try:
            return self._send(command, words)
        except _ConnectionDropped as exc:
            if not is_reused:
                raise self._dropped(command, exc) from exc.__cause__
            log.info("router %s: reused connection was dead (%s); resending %s", self.label, exc, command)
        try:
            return self._send(command, words)
        except _ConnectionDropped as exc:
            raise self._dropped(command, exc) from exc.__cause__

    def _send(self, command: str, words: list[str]) -> list[Row]:
        api = self._api or self._connect()
        try:
            # rawCmd is a generator: nothing is sent until it is consumed.
            return list(api.rawCmd(command, *words))
        except TrapError as exc:
            raise self._command_failed(command, [exc]) from exc
        except MultiTrapError as exc:
            raise self._command_failed(command, list(exc.traps)) from exc
        except _DEAD_CONNECTION_ERRORS as exc:
            self._discard()
            raise _ConnectionDropped(_describe(exc)) from exc
        except TimeoutError as exc:
            self._discard()  # a late reply would otherwise answer the next command
            raise self._unreachable(f"no answer to {command} within {self.command_timeout:g}s") from exc
        except FatalError as exc:
            self._discard()
            raise self._unreachable(f"router ended the session during {command}: {exc}") from exc
        except (LibRouterosError, OSError, ValueError, IndexError) as exc:
            self._discard()
            raise self._unreachable(f"{command} failed: {_describe(exc)}") from exc
        except BaseException:
            self._discard()
            raise

    def _connect(self) -> Api:
        creds = self.credentials
        where = f"{creds.host}:{creds.port}"
        try:
            api = librouteros.connect(
                creds.host,
                creds.username,
                creds.password,
                port=creds.port,
                timeout=self.connect_timeout,
                encoding=API_ENCODING,
                ssl_wrapper=_tls_wrapper(creds.host) if creds.use_tls else None,
                subclass=_UncastApi,
            )
        except (TrapError, MultiTrapError) as exc:
            raise RouterLoginFailed(f"API login as {creds.username!r} refused: {exc}", router_label=self.label) from exc
        except TimeoutError as exc:
            raise self._unreachable(f"no answer from {where} within {self.connect_timeout:g}s") from exc
        except socket.gaierror as exc:
            raise self._unreachable(f"cannot resolve {creds.host}: {_describe(exc)}") from exc
        except ConnectionRefusedError as exc:
            raise self._unreachable(f"connection to {where} refused") from exc
        except (LibRouterosError, OSError, ValueError, IndexError) as exc:
            raise self._unreachable(f"cannot connect to {where}: {_describe(exc)}") from exc
        # The connect timeout stays on the socket unless replaced; commands get their own.
        api.protocol.transport.sock.settimeout(self.command_timeout)
        self._api = api
        return api

    def _discard(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            with contextlib.suppress(OSError):  # librouteros closes the socket itself on !fatal
                api.close()

    def _unreachable(self, reason: str) -> RouterUnreachable:
        return RouterUnreachable(reason, router_label=self.label)

    def _dropped(self, command: str, exc: _ConnectionDropped) -> RouterUnreachable:
        return self._unreachable(f"connection lost during {command}: {exc}")

    def _command_failed(self, command: str, traps: list[TrapError]) -> RouterCommandFailed:
        message = "; ".join(str(trap.message) for trap in traps)
        return RouterCommandFailed(
            f"{command} refused: {message}",
            router_label=self.label,
            trap_message=message,
            category=_as_category(traps[0].category),
        )


class RouterPool:
    """Process-wide registry: one RouterConnection per router key; replaced when credentials change."""

    def __init__(self, *, connect_timeout: float = 5.0, command_timeout: float = 10.0) -> None:
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._lock = threading.Lock()
        self._connections: dict[Hashable, RouterConnection] = {}

    def get(self, key: Hashable, credentials: RouterCredentials) -> RouterConnection:
        with self._lock:
            current = self._connections.get(key)
            if current is not None and current.credentials == credentials:
                return current
            fresh = RouterConnection(
                credentials,
                connect_timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
            )
            self._connections[key] = fresh
        if current is not None:
            current.close()  # outside the pool lock: it waits for a command in flight
        return fresh

    def discard(self, key: Hashable) -> None:
        with self._lock:
            connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()

    def close_all(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for connection in connections:
            connection.close()


def _tls_wrapper(host: str) -> Callable[[socket.socket], socket.socket]:
    # Routers serve api-ssl with self-signed certificates, so the certificate is not verified:
    # this protects against eavesdropping, not against a man in the middle. Anonymous-DH api-ssl
    # (no certificate assigned to the service) is not supported; assign one on the router.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return functools.partial(context.wrap_socket, server_hostname=host)


def _as_category(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

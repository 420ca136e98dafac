"""A sandbox pulling router: what the ``portal-sync`` script does on a real router, in Python.

It runs the pull-sync protocol over real HTTP against the portal, and applies each answer to a
``SandboxRouter``'s state (its users, profiles and sessions, through the same handlers the
sandbox API uses, so values are validated the same way). Two forms, as on real routers:

- ``json`` (RouterOS 7.13+): POST JSON, apply the JSON answer;
- ``rsc`` (RouterOS 6): POST the hand-built body, fetch ``?format=rsc`` and ``/import`` it with a
  small interpreter that understands exactly the lines the portal writes (anything else fails
  loudly, so a change to the .rsc cannot slip by untested).

Like the script it acknowledges an item only after it applied, syncs again at once when an answer
held work (three rounds at most), and keeps its acks when a sync fails. Faults for tests:
``lose_next_answers`` (the portal answered, the router never got it), ``forget_acks`` (as after a
reboot, which clears RouterOS globals).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from .router import SandboxRouter, SandboxTrap, _Request

FOLLOW_UP_ROUNDS = 3


class SyncFailed(Exception):
    """The sync request failed (network, or a non-2xx answer): what /tool fetch raises."""


class SandboxPullingRouter:
    def __init__(
        self,
        box: SandboxRouter,
        sync_url: str,
        token: str,
        *,
        form: str = "json",
        interval_s: float = 15.0,
        version: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        if form not in ("json", "rsc"):
            raise ValueError(f"unknown form {form!r}")
        self.box = box
        self.sync_url = sync_url
        self.token = token
        self.form = form
        self.interval_s = interval_s
        self.version = version or ("7.16 (stable)" if form == "json" else "6.49.10 (long-term)")
        self.timeout_s = timeout_s
        self.acks: list[str] = []
        self.log: list[str] = []  # the router's log: warnings, as ":log warning" writes them
        self.syncs = 0
        self.applied = 0  # items applied (an add of an existing user counts: it is a no-op that is acked)
        self.last_answer: dict[str, Any] | str | None = None
        # /system scheduler as the answers leave it (the loop itself keeps interval_s, so tests stay fast).
        self.scheduler = {"portal-sync": {"name": "portal-sync", "interval": f"{int(interval_s)}s"}}
        self._lose_answers = 0
        self._lock = threading.Lock()  # "refuses to run twice at once"
        self._http = requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- faults

    def lose_next_answers(self, count: int = 1) -> None:
        """The next ``count`` answers are dropped on the way back: the portal saw the request (and
        its acks), the router applies nothing and keeps no acks from them."""
        self._lose_answers = count

    def forget_acks(self) -> list[str]:
        """Drop the acks not yet sent, as a reboot does. Returns what was dropped."""
        dropped, self.acks = self.acks, []
        return dropped

    # --- running

    def sync_once(self) -> int:
        """One run of the script: sync, apply, and sync again at once while answers hold work.
        Returns the items applied. A failed sync is logged, not raised (as on the router)."""
        if not self._lock.acquire(blocking=False):
            self.log.append("portal-sync: already running")
            return 0
        try:
            applied = 0
            for _ in range(FOLLOW_UP_ROUNDS):
                try:
                    answer = self._exchange()
                except SyncFailed as exc:
                    self.log.append(f"portal-sync: sync with the portal failed ({exc})")
                    break
                if answer is None:
                    break
                done = self._apply(answer)
                applied += done
                if not done:
                    break
            return applied
        finally:
            self._lock.release()

    def start(self, *, first_delay_s: float | None = None) -> SandboxPullingRouter:
        """Sync every ``interval_s`` on a thread, the first one after ``first_delay_s`` (default:
        a random point in the first interval, as routers' schedulers start at different times)."""
        delay = random.uniform(0, self.interval_s) if first_delay_s is None else first_delay_s
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(delay,), name="sandbox-pulling-router", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 2)
        self._http.close()

    def __enter__(self) -> SandboxPullingRouter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _loop(self, delay: float) -> None:
        next_run = time.monotonic() + delay
        while not self._stop.wait(max(0.0, next_run - time.monotonic())):
            next_run += self.interval_s
            try:
                self.sync_once()
            except Exception as exc:  # the scheduler keeps going, as on the router
                self.log.append(f"portal-sync: crashed ({type(exc).__name__}: {exc})")

    # --- one exchange

    def _exchange(self) -> dict[str, Any] | str | None:
        acks, usage = list(self.acks), self._usage()
        body = self._body(acks, usage)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        url = self.sync_url + ("?format=rsc" if self.form == "rsc" else "")
        try:
            response = self._http.post(url, data=body, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise SyncFailed(type(exc).__name__) from exc
        if response.status_code != 200:
            raise SyncFailed(f"Fetch failed with status {response.status_code}")
        self.syncs += 1
        self.acks = self.acks[len(acks):]  # the portal has these now
        if self._lose_answers > 0:
            self._lose_answers -= 1
            return None
        self.last_answer = response.json() if self.form == "json" else response.text
        return self.last_answer

    def _body(self, acks: list[str], usage: list[dict[str, Any]]) -> bytes:
        if self.form == "json":  # :serialize to=json of the request array
            return json.dumps({"version": self.version, "acks": acks, "usage": usage}).encode()
        # RouterOS 6 builds the same JSON by string concatenation (the values are its own counters).
        items = "".join(
            f',{{"name":"{u["name"]}","uptime":"{u["uptime"]}","bytes-in":{u["bytes-in"]},"bytes-out":{u["bytes-out"]},'
            f'"active":{"true" if u["active"] else "false"}}}'
            for u in usage
        )
        ack_list = "".join(f',"{a}"' for a in acks)
        return f'{{"version":"{self.version}","acks":[{ack_list[1:]}],"usage":[{items[1:]}]}}'.encode()

    def _usage(self) -> list[dict[str, Any]]:
        with self.box.lock:
            online = {session["user"] for session in self.box.active.values()}
            return [
                {"name": row["name"], "uptime": row.get("uptime", "0s"),
                 "bytes-in": int(row.get("bytes-in", "0")), "bytes-out": int(row.get("bytes-out", "0")),
                 "active": row["name"] in online}
                for row in self.box.users.values()
                if row.get("comment", "").startswith("portal voucher ")
            ]

    # --- applying an answer

    def _apply(self, answer: dict[str, Any] | str) -> int:
        if isinstance(answer, str):
            return RscImport(self).run(answer)
        applied = 0
        if isinstance(answer.get("interval"), int):
            self.scheduler["portal-sync"]["interval"] = f"{answer['interval']}s"
        for profile in answer.get("profiles", []):
            self._guarded(f"set up profile {profile.get('name')}", self.ensure_profile,
                          profile["name"], profile.get("rate-limit", ""), profile.get("shared-users", 1))
        for item in answer.get("add", []):
            if self._guarded(f"add user {item.get('name')}", self.add_user_if_missing, item):
                self.acks.append(item["id"])
                applied += 1
        for item in answer.get("remove", []):
            if self._guarded(f"remove user {item.get('name')}", self.remove_user, item["name"]):
                self.acks.append(item["id"])
                applied += 1
        self.applied += applied
        return applied

    def _guarded(self, what: str, action: Any, *args: Any) -> bool:
        try:
            action(*args)
        except (SandboxTrap, KeyError, TypeError, ValueError) as exc:
            self.log.append(f"portal-sync: could not {what} ({exc})")
            return False
        return True

    # The router operations, idempotent as in the script: add if missing, remove if present.

    def _run(self, command: str, **attributes: Any) -> None:
        request = _Request(command, {k: str(v) for k, v in attributes.items()})
        with self.box.lock:
            self.box._handlers[command](request)

    def ensure_profile(self, name: str, rate_limit: str, shared_users: Any) -> None:
        with self.box.lock:
            if name not in self.box.profiles:
                self._run("/ip/hotspot/user/profile/add", name=name)
            self._run("/ip/hotspot/user/profile/set", numbers=name, **{"shared-users": shared_users, "rate-limit": rate_limit})

    def add_user_if_missing(self, item: dict[str, Any]) -> None:
        with self.box.lock:
            name = item["name"]
            if name not in self.box.users:
                attributes = {
                    "name": name, "password": item["password"], "profile": item["profile"],
                    "limit-uptime": item["limit-uptime"], "limit-bytes-total": item["limit-bytes-total"],
                    "comment": f"portal voucher {name}",
                }
                if item.get("server"):
                    attributes["server"] = item["server"]
                self._run("/ip/hotspot/user/add", **attributes)
            if isinstance(item.get("mac-address"), str):
                self._run("/ip/hotspot/user/set", numbers=name, **{"mac-address": item["mac-address"]})

    def remove_user(self, name: str) -> None:
        with self.box.lock:
            self.box.users.pop(name, None)
            for session_id in [k for k, s in self.box.active.items() if s["user"] == name]:
                del self.box.active[session_id]


# ---------------------------------------------------------------------------------------------
# /import of the portal's .rsc answer


class RscUnsupported(Exception):
    """A line the interpreter does not know: the portal wrote something new. Never caught."""


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<punct>[{}\[\]();])|(?P<word>[^\s{}\[\]();"]+))')
_ESCAPE = re.compile(r'\\([0-9A-F]{2}|.)')
_NAMED = {"n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class Str:
    """A quoted string, decoded."""

    value: str


def tokenize(line: str) -> list[Any]:
    """RouterOS tokens: decoded quoted strings (``Str``), brackets and ``;``, and bare words."""
    tokens: list[Any] = []
    pos = 0
    while pos < len(line):
        if line[pos:].strip() == "":
            break
        match = _TOKEN.match(line, pos)
        if match is None:
            raise RscUnsupported(f"cannot read {line[pos:pos + 30]!r}")
        pos = match.end()
        if match["str"] is not None:
            tokens.append(Str(_decode(match["str"][1:-1])))
        else:
            tokens.append(match["punct"] or match["word"])
    return tokens


def _decode(body: str) -> str:
    if re.search(r'(?<!\\)(?:\\\\)*\$', body):
        raise RscUnsupported(f"unescaped $ in a string: {body!r}")  # RouterOS would expand a variable

    def unescape(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) == 2:
            return chr(int(code, 16))
        return _NAMED.get(code, code)

    return _ESCAPE.sub(unescape, body)


class RscImport:
    """Runs the answer file's lines against the sandbox router. Globals live on the pulling router."""

    def __init__(self, router: SandboxPullingRouter) -> None:
        self.router = router
        self.more = False
        self.applied = 0

    def run(self, text: str) -> int:
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            tokens = tokenize(line)
            self._statements(tokens)
        self.router.applied += self.applied
        return self.applied

    # statements are separated by ";" and grouped in { }
    def _statements(self, tokens: list[Any]) -> None:
        for statement in _split(tokens):
            self._statement(statement)

    def _statement(self, t: list[Any]) -> None:
        head = t[0]
        if head == ":global":
            return
        if head == ":do":
            body, rest = _block(t[1:])
            if len(rest) < 2 or rest[0] != "on-error=":
                raise RscUnsupported(f":do without on-error: {t}")
            handler, _ = _block(rest[1:])
            try:
                self._statements(body)
            except (SandboxTrap, KeyError, ValueError) as exc:
                self.router.log.append(f"({exc})")
                self._statements(handler)
            return
        if head == ":if":
            condition, rest = _group(t[1:], "(", ")")
            if rest[0] != "do=":
                raise RscUnsupported(f":if without do=: {t}")
            body, _ = _block(rest[1:])
            if self._condition(condition):
                self._statements(body)
            return
        if head == ":set":
            self._set(t[1:])
            return
        if head == ":log":
            self.router.log.append(t[2].value)
            return
        if head == ":put":
            return
        if isinstance(head, str) and head.startswith("/"):
            self._command(t)
            return
        raise RscUnsupported(f"unknown statement {t}")

    def _set(self, t: list[Any]) -> None:
        if t == ["portalMore", "true"]:
            self.more = True
            return
        # :set portalAcks ($portalAcks . ",\"w17\"")
        if t[0] == "portalAcks" and t[1:4] == ["(", "$portalAcks", "."] and isinstance(t[4], Str) and t[5] == ")":
            self.router.acks += re.findall(r'"([^"]*)"', t[4].value)
            self.applied += 1
            return
        raise RscUnsupported(f":set {t}")

    def _condition(self, t: list[Any]) -> bool:
        # [:len [<menu> find where <filter>]] = 0
        outer, rest = _group(t, "[", "]")
        if outer[0] != ":len" or rest != ["=", "0"]:
            raise RscUnsupported(f"condition {t}")
        inner, _ = _group(outer[1:], "[", "]")
        return len(self._find(inner)) == 0

    def _find(self, t: list[Any]) -> list[str]:
        """``<menu words> find where k=v [&& k!=v]`` → the matching keys of that table."""
        split = t.index("find")
        table = self._table(t[:split])
        return self._matching(table, t[split + 1:])

    def _matching(self, table: dict[str, dict[str, str]], t: list[Any]) -> list[str]:
        if not t or t[0] != "where":
            raise RscUnsupported(f"find without where: {t}")
        tests, current = [], []
        for token in t[1:] + ["&&"]:
            if token == "&&":
                tests.append(current)
                current = []
            else:
                current.append(token)
        keys = []
        for key, row in table.items():
            if all(self._holds(row, test) for test in tests):
                keys.append(key)
        return keys

    @staticmethod
    def _holds(row: dict[str, str], test: list[Any]) -> bool:
        if len(test) == 2 and isinstance(test[0], str) and test[0].endswith("=") and isinstance(test[1], Str):
            return row.get(test[0][:-1]) == test[1].value
        if len(test) == 1 and "!=" in test[0]:
            key, value = test[0].split("!=", 1)
            return row.get(key) != value
        raise RscUnsupported(f"filter {test}")

    def _table(self, path: list[Any]) -> dict[str, dict[str, str]]:
        box = self.router.box
        menus = {
            ("/ip", "hotspot", "user"): box.users,
            ("/ip", "hotspot", "user", "profile"): box.profiles,
            ("/ip", "hotspot", "active"): box.active,
            ("/system", "scheduler"): self.router.scheduler,
        }
        table = menus.get(tuple(path))
        if table is None:
            raise RscUnsupported(f"menu {path}")
        return table

    def _command(self, t: list[Any]) -> None:
        verbs = ("add", "set", "remove")
        split = next(i for i, token in enumerate(t) if token in verbs)
        path, verb, args = t[:split], t[split], t[split + 1:]
        table = self._table(path)
        targets = None
        if args and args[0] == "[":
            selector, args = _group(args, "[", "]")
            targets = self._matching(table, selector[1:]) if selector[0] == "find" else None
            if targets is None:
                raise RscUnsupported(f"selector {selector}")
        attributes = _attributes(args)
        if tuple(path) == ("/system", "scheduler"):
            for key in targets or []:
                table[key].update(attributes)
            return
        command = "/" + "/".join(word.strip("/") for word in path) + "/" + verb
        if verb == "add":
            self.router._run(command, **attributes)
        elif verb == "set":
            for key in targets or []:
                self.router._run(command, numbers=table[key].get("name", key), **attributes)
        else:
            for key in targets or []:
                del table[key]


def _attributes(tokens: list[Any]) -> dict[str, str]:
    attributes, i = {}, 0
    while i < len(tokens):
        word = tokens[i]
        if not isinstance(word, str) or "=" not in word:
            raise RscUnsupported(f"argument {word!r}")
        key, _, value = word.partition("=")
        if value == "" and i + 1 < len(tokens) and isinstance(tokens[i + 1], Str):
            attributes[key] = tokens[i + 1].value
            i += 2
            continue
        if any(ch in value for ch in '$[('):
            raise RscUnsupported(f"computed value {word!r}")
        attributes[key] = value
        i += 1
    return attributes


def _split(tokens: list[Any]) -> list[list[Any]]:
    """Top-level statements, split at ";" outside brackets."""
    statements, current, depth = [], [], 0
    for token in tokens:
        if token in ("{", "[", "("):
            depth += 1
        elif token in ("}", "]", ")"):
            depth -= 1
        if token == ";" and depth == 0:
            if current:
                statements.append(current)
            current = []
            continue
        current.append(token)
    if current:
        statements.append(current)
    return statements


def _group(tokens: list[Any], opening: str, closing: str) -> tuple[list[Any], list[Any]]:
    """The tokens inside the bracket that opens ``tokens``, and what follows it."""
    if not tokens or tokens[0] != opening:
        raise RscUnsupported(f"expected {opening} in {tokens}")
    depth = 0
    for i, token in enumerate(tokens):
        if token in ("{", "[", "("):
            depth += 1
        elif token in ("}", "]", ")"):
            depth -= 1
            if depth == 0:
                return tokens[1:i], tokens[i + 1:]
    raise RscUnsupported(f"unclosed {opening} in {tokens}")


def _block(tokens: list[Any]) -> tuple[list[Any], list[Any]]:
    return _group(tokens, "{", "}")

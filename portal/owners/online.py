"""Customers online now: the routers' own live hotspot sessions, kept a few seconds.

The overview used to count active vouchers, which counts a printed voucher still in a drawer and
a customer who went home hours ago. Only the router knows who is on the Wi-Fi, so each of the
owner's routers is asked (``/ip/hotspot/active/print``) over its pooled connection.

A router that syncs by pull is never asked: its count is the sessions its last sync reported
(``pull_sync.reported_online``), unknown once that sync is over two minutes old.

A page never waits long for this: routers are asked in parallel on a small thread pool, the page
waits at most ``ASK_BUDGET_S`` for a cold answer, and every answer (an error too) is kept for
``ONLINE_CACHE_S``. A router still answering when the budget runs out is shown as "not answered
yet"; its answer lands in the cache for the next view, and no second question is sent meanwhile.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from ..core.cache import LockedTTLCache
from ..core.extensions import db
from ..hotspot import pull_sync
from ..hotspot.routers import connection_for
from ..models import Router, User
from ..routeros import hotspot
from ..routeros.errors import RouterError
from .scope import owned

ONLINE_CACHE_S = 10.0
ASK_BUDGET_S = 1.5
ASK_THREADS = 8


@dataclass(frozen=True)
class RouterAnswer:
    sessions: int | None  # None: the router did not answer
    error: str | None = None


@dataclass(frozen=True)
class RouterOnline:
    router_id: int
    name: str
    sessions: int | None
    error: str | None


@dataclass(frozen=True)
class OnlineNow:
    routers: list[RouterOnline]

    @property
    def customers(self) -> int:
        """Devices logged in to the hotspot on the routers that answered."""
        return sum(r.sessions or 0 for r in self.routers)

    @property
    def silent(self) -> list[RouterOnline]:
        return [r for r in self.routers if r.sessions is None]


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _ask_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=ASK_THREADS, thread_name_prefix="online-now")
        return _pool


class _Answers:
    """Per app: the cached answers, and the questions still out (so none is asked twice at once)."""

    def __init__(self) -> None:
        self.cache: LockedTTLCache[RouterAnswer] = LockedTTLCache(ONLINE_CACHE_S, max_entries=20_000,
                                                                  remember_none=False)
        self.in_flight: dict[int, Future[RouterAnswer]] = {}
        self.lock = threading.Lock()


def _answers() -> _Answers:
    return current_app.extensions.setdefault("portal_online_now", _Answers())


def online_now(user: User, *, budget_s: float = ASK_BUDGET_S) -> OnlineNow:
    """Live session counts of ``user``'s active routers (every owner's, for an admin)."""
    routers = db.session.execute(
        sa.select(Router.id, Router.name, Router.transport)
        .where(owned(Router.owner_id, user), Router.status == "active")
        .order_by(Router.name, Router.id)
    ).all()
    answers = _answers()
    found: dict[int, RouterAnswer] = {}
    waiting: dict[int, Future[RouterAnswer]] = {}
    for router_id, _, transport in routers:
        if transport == "pull":
            found[router_id] = RouterAnswer(*pull_sync.reported_online(router_id))
            continue
        cached = answers.cache.get(router_id, lambda: None)
        if cached is not None:
            found[router_id] = cached
        else:
            waiting[router_id] = _ask(answers, router_id)
    db.session.commit()  # no transaction held while routers answer
    if waiting:
        wait(list(waiting.values()), timeout=budget_s)
    for router_id, future in waiting.items():
        found[router_id] = future.result() if future.done() else RouterAnswer(None, "not answered yet")
    return OnlineNow([RouterOnline(rid, name, found[rid].sessions, found[rid].error) for rid, name, _ in routers])


def _ask(answers: _Answers, router_id: int) -> Future[RouterAnswer]:
    with answers.lock:
        future = answers.in_flight.get(router_id)
        if future is not None:
            return future
        try:
            conn = connection_for(db.session.get(Router, router_id))
        except Exception as exc:  # e.g. a password that no longer decrypts: say so, never fail the page
            done: Future[RouterAnswer] = Future()
            done.set_result(RouterAnswer(None, f"{type(exc).__name__}"))
            answers.cache.put(router_id, done.result())
            return done
        future = _ask_pool().submit(_count_sessions, conn)
        answers.in_flight[router_id] = future

    def remember(finished: Future[RouterAnswer]) -> None:
        answers.cache.put(router_id, finished.result())
        with answers.lock:
            answers.in_flight.pop(router_id, None)

    future.add_done_callback(remember)
    return future


def _count_sessions(conn: object) -> RouterAnswer:
    # Runs on the pool: router bytes only, no database and no app context.
    try:
        return RouterAnswer(len(hotspot.list_active_sessions(conn)))  # type: ignore[arg-type]
    except RouterError as exc:
        return RouterAnswer(None, str(exc)[:200])


def forget_answers() -> None:
    """Drop the cached answers, so the next view asks every router again (tests use it)."""
    _answers().cache.clear()

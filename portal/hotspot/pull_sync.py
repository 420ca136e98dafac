"""Pull sync: a router that cannot be reached fetches its own work over HTTPS.

On a schedule the router POSTs to ``/routers/<slug>/sync`` with its bearer token, the ids of the
work it applied since the last sync (acks), the usage of the portal's hotspot users and its
RouterOS version. The answer holds this router's work only: profiles to ensure, users to add, users
and sessions to remove. The outbox is the same as for API routers; only delivery differs:

- an unfinished row is *offered* in every answer until the router acknowledges it, then *done*;
- the router applies each item idempotently (add if missing, remove if present), so a lost answer
  or a lost ack ends, at the next sync, in the same single user;
- a removal is offered only once its voucher's activation is done ("a removal never runs before
  its activation"), and an activation whose voucher was cancelled before the ack is not offered
  again: its removal (remove if present) is offered instead, so a disable always ends in no user.

One sync is one transaction. A wrong token, an unknown slug or a router not set to pull gets
``SyncRefused`` before anything is written. The token is stored only as its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from ..core.extensions import db
from ..models import Activation, Plan, Router, User, UTCDateTime, Voucher, utcnow
from ..owners.scope import owned
from ..routeros.hotspot import format_routeros_duration, parse_routeros_duration
from . import activations
from .routers import new_router_slug, router_pool

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 15
MIN_INTERVAL_S, MAX_INTERVAL_S = 5, 60
SYNCS_PER_MINUTE = 60  # a 5 s schedule with an immediate follow-up after each applied answer fits
MAX_ITEMS_PER_ANSWER = 100  # keeps a JSON answer well under /tool fetch's 64 KB output=user
MAX_ACKS, MAX_USAGE = 1000, 2000
OFFLINE_AFTER = timedelta(minutes=2)  # shown offline on the dashboard
PROBLEM_AFTER = timedelta(minutes=10)  # listed on the Problems page
TOKEN_BYTES = 32

# Only validated values go into an answer (and so into a RouterOS 6 .rsc): never free text.
VOUCHER_NAME = re.compile(r"[A-Z0-9]{1,12}")
PROFILE_NAME = re.compile(r"portal-plan-[0-9]{1,12}")
MAC_ADDRESS = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}")
_RATE = r"[0-9]{1,9}(\.[0-9]{1,3})?[kKmMgG]?"
RATE_LIMIT = re.compile(rf"{_RATE}(/{_RATE})?( {_RATE}(/{_RATE})?){{0,3}}( [0-9]{{1,3}}(/[0-9]{{1,3}})?)?")
_ACK = re.compile(r"w([0-9]{1,18})")
_VERSION_JUNK = re.compile(r"[^0-9A-Za-z .()_+-]")


class SyncRefused(Exception):
    """Unknown slug, wrong token, or a router that is not set to pull. Nothing was changed."""


class SyncRateLimited(Exception):
    """More syncs this minute than any schedule needs. Nothing was changed."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many syncs; retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class SyncRequestInvalid(ValueError):
    """The body is not the sync protocol's JSON object; the message says what is wrong."""


class TransportError(ValueError):
    """The router cannot be switched to that transport yet; the message is for the owner."""


# ---------------------------------------------------------------------------------------------
# The request


@dataclass(frozen=True)
class ReportedUsage:
    name: str
    uptime_s: int
    bytes_in: int
    bytes_out: int
    # Optional in the protocol ("active": true): the user has a session in /ip hotspot active.
    # It is what the overview's "online now" counts for a pull router.
    active: bool = False


@dataclass(frozen=True)
class SyncRequest:
    version: str | None
    acks: tuple[int, ...]  # activation ids
    usage: tuple[ReportedUsage, ...]


def parse_sync_request(data: Any) -> SyncRequest:
    """The protocol's body → a SyncRequest. Items that are not ours (bad ids, other users) are
    skipped with a log line rather than failing the sync: a router whose every sync fails would
    keep its acks forever."""
    if not isinstance(data, dict):
        raise SyncRequestInvalid("the body must be a JSON object")
    acks = _as_list(data.get("acks"), "acks")
    usage = _as_list(data.get("usage"), "usage")
    if len(acks) > MAX_ACKS or len(usage) > MAX_USAGE:
        raise SyncRequestInvalid(f"at most {MAX_ACKS} acks and {MAX_USAGE} usage entries per sync")
    ids, skipped = [], 0
    for ack in acks:
        match = _ACK.fullmatch(ack) if isinstance(ack, str) else None
        if match:
            ids.append(int(match.group(1)))
        else:
            skipped += 1
    reported = [entry for entry in map(_usage_entry, usage) if entry is not None]
    if skipped or len(reported) < len(usage):
        log.info("sync body: %d acks and %d usage entries not understood, skipped", skipped, len(usage) - len(reported))
    return SyncRequest(version=_version(data.get("version")), acks=tuple(dict.fromkeys(ids)), usage=tuple(reported))


def _as_list(value: Any, name: str) -> list[Any]:
    # RouterOS may serialise an empty array as "" and a one-element array as the element itself.
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str | dict):
        return [value]
    raise SyncRequestInvalid(f"{name} must be a list")


def _usage_entry(item: Any) -> ReportedUsage | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    name = item["name"]
    if not VOUCHER_NAME.fullmatch(name):
        return None
    try:
        uptime = item.get("uptime", 0)
        uptime_s = uptime if isinstance(uptime, int) else parse_routeros_duration(str(uptime))
        active = item.get("active") in (True, "true", "yes")
        return ReportedUsage(name, max(0, uptime_s), _counter(item.get("bytes-in")), _counter(item.get("bytes-out")), active)
    except (TypeError, ValueError):
        return None


def _counter(value: Any) -> int:
    if value is None or value == "":
        return 0
    number = int(value)  # ValueError/TypeError for junk: the entry is skipped
    if number < 0:
        raise ValueError("negative counter")
    return number


def _version(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return _VERSION_JUNK.sub("", str(value))[:40] or None


# ---------------------------------------------------------------------------------------------
# The answer


@dataclass(frozen=True)
class ProfileItem:
    name: str
    rate_limit: str | None
    shared_users: int = 1

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name, "shared-users": self.shared_users}
        if self.rate_limit:
            item["rate-limit"] = self.rate_limit
        return item


@dataclass(frozen=True)
class AddItem:
    id: str
    name: str
    profile: str
    limit_uptime_s: int
    limit_bytes_total: int
    mac_address: str | None = None

    @property
    def password(self) -> str:
        return self.name  # the voucher code is both the user name and the password

    @property
    def limit_uptime(self) -> str:
        return format_routeros_duration(self.limit_uptime_s)

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.id, "name": self.name, "password": self.password, "profile": self.profile,
            "limit-uptime": self.limit_uptime, "limit-bytes-total": self.limit_bytes_total,
        }
        if self.mac_address:
            item["mac-address"] = self.mac_address
        return item


@dataclass(frozen=True)
class RemoveItem:
    id: str
    name: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class SyncAnswer:
    interval: int
    profiles: list[ProfileItem] = field(default_factory=list)
    add: list[AddItem] = field(default_factory=list)
    remove: list[RemoveItem] = field(default_factory=list)
    # Not part of the JSON: what the .rsc form needs to word its lines.
    router_slug: str = ""
    hotspot_server: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "profiles": [p.as_json() for p in self.profiles],
            "add": [a.as_json() for a in self.add],
            "remove": [r.as_json() for r in self.remove],
        }


def work_id(activation_id: int) -> str:
    # Never all digits: RouterOS's :deserialize would turn "17" into a number.
    return f"w{activation_id}"


# ---------------------------------------------------------------------------------------------
# One sync


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SyncingRouter:
    id: int
    slug: str
    interval: int
    hotspot_server: str | None


_AUTH = sa.select(Router.id, Router.sync_token_hash, Router.transport).where(Router.slug == sa.bindparam("slug"))


def authenticate(slug: str, token: str | None) -> int:
    """The id of the pull router whose token this is; SyncRefused otherwise. Reads only."""
    row = db.session.execute(_AUTH, {"slug": slug[:64]}).first() if slug and token else None
    db.session.rollback()
    expected = row.sync_token_hash if row is not None else None
    # Compared in constant time even when there is nothing to compare with.
    matches = hmac.compare_digest(expected or "0" * 64, token_hash(token or "")) and expected is not None
    if row is None or not matches or row.transport != "pull":
        raise SyncRefused("unknown router or wrong token")
    return row.id


def sync(slug: str, token: str | None, body: Any, *, now: datetime | None = None) -> SyncAnswer:
    """Authenticate, record the contact, apply the acks, and answer with the router's work.

    Refusals change nothing: SyncRefused (unknown slug, wrong token, not a pull router; checked
    before the body is judged), SyncRequestInvalid, SyncRateLimited. The common sync (no acks,
    nothing to do) is one autocommitted statement on PostgreSQL; anything that changes the outbox
    is one transaction, committed here.
    """
    now = now or utcnow()
    try:
        request = parse_sync_request(body)
    except SyncRequestInvalid:
        authenticate(slug, token)  # a stranger learns nothing about what a good body looks like
        raise
    params = _contact_params(slug, token, request, now)
    if not request.acks and db.engine.dialect.name == "postgresql":
        router, work = _record_and_read_at_once(slug, token, params)
        if not work:
            return SyncAnswer(interval=router.interval, router_slug=router.slug, hotspot_server=router.hotspot_server)
    else:
        router = _record_in_transaction(slug, token, params)
        if request.acks:
            acknowledge(router.id, request.acks, now)
        work = db.session.execute(_WORK, {"router_id": router.id, "now": now}).all()
    answer = _offer_work(router, work, now)
    db.session.commit()
    return answer


def _record_and_read_at_once(slug: str, token: str | None, params: dict[str, Any]) -> tuple[SyncingRouter, list[Any]]:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        rows = conn.execute(_CONTACT_AND_WORK, params).all()
    if not rows:
        _refuse(slug, token)
    first = rows[0]
    return (SyncingRouter(first.router_id, first.router_slug, first.interval, first.hotspot_server),
            [row for row in rows if row.id is not None])


def _record_in_transaction(slug: str, token: str | None, params: dict[str, Any]) -> SyncingRouter:
    found = db.session.execute(_RECORD_CONTACT, params).first()
    if found is None:
        db.session.rollback()
        _refuse(slug, token)
    return SyncingRouter(found.router_id, found.router_slug, found.interval, found.hotspot_server)


def _refuse(slug: str, token: str | None) -> NoReturn:
    """The contact UPDATE matched no row: a stranger, or a router over its rate."""
    authenticate(slug, token)
    raise SyncRateLimited(retry_after_s=60)


def _contact_params(slug: str, token: str | None, request: SyncRequest, now: datetime) -> dict[str, Any]:
    usage = json.dumps([[u.name, u.uptime_s, u.bytes_in, u.bytes_out, u.active] for u in request.usage],
                       separators=(",", ":"))
    return {"b_slug": slug[:64], "b_hash": token_hash(token) if token else "", "now": now,
            "window_start": now - timedelta(minutes=1), "version": request.version, "usage": usage}


_NOW = sa.bindparam("now", type_=UTCDateTime())
_WINDOW_START = sa.bindparam("window_start", type_=UTCDateTime())
_NEW_WINDOW = sa.or_(Router.sync_window_started_at.is_(None), Router.sync_window_started_at <= _WINDOW_START)
# The record of the contact is also the authentication and the rate limit: it matches the row only
# for the right token, on a pull router, under SYNCS_PER_MINUTE, so a refused sync writes nothing.
_RECORD_CONTACT = (
    sa.update(Router)
    .where(
        Router.slug == sa.bindparam("b_slug"),
        Router.sync_token_hash == sa.bindparam("b_hash"),
        Router.transport == "pull",
        sa.or_(_NEW_WINDOW, Router.sync_window_count < SYNCS_PER_MINUTE),
    )
    .values(
        last_sync_at=_NOW,
        last_seen_at=_NOW,
        last_sync_version=sa.func.coalesce(sa.bindparam("version", type_=sa.String()), Router.last_sync_version),
        sync_usage_json=sa.bindparam("usage", type_=sa.Text()),
        sync_window_count=sa.case((_NEW_WINDOW, 1), else_=Router.sync_window_count + 1),
        sync_window_started_at=sa.case((_NEW_WINDOW, _NOW), else_=Router.sync_window_started_at),
    )
    .returning(Router.id.label("router_id"), Router.slug.label("router_slug"),
               Router.sync_interval_s.label("interval"), Router.hotspot_server)
)


def acknowledge(router_id: int, activation_ids: Iterable[int], now: datetime) -> int:
    """The router applied these rows: done, and their vouchers active. Only this router's rows;
    an ack for a row already done changes nothing. Caller commits. Returns rows newly done."""
    rows = db.session.execute(
        sa.select(Activation.id, Activation.kind, Activation.voucher_id, Plan.validity_mode, Plan.duration_s, Voucher.source)
        .join(Voucher, Voucher.id == Activation.voucher_id)
        .join(Plan, Plan.id == Voucher.plan_id)
        .where(Activation.id.in_(list(activation_ids)), Activation.router_id == router_id, Activation.status != "done")
    ).all()
    done = 0
    for row in rows:
        won = db.session.execute(
            sa.update(Activation)
            .where(Activation.id == row.id, Activation.status != "done")
            .values(status="done", done_at=now, lease_until=None, last_error=None)
            .execution_options(synchronize_session=False)
        ).rowcount == 1
        if won and row.kind == "activate":
            activations.mark_voucher_active(
                row.voucher_id, activations.validity_from_activation(row.validity_mode, row.duration_s, row.source), now
            )
        done += won
    if done:
        log.info("sync: %d acknowledged router=%s", done, router_id)
    return done


def _work_query(router_id: Any) -> sa.Select:
    """A router's unfinished rows, oldest first, with what an answer needs."""
    # The voucher's own activation, while it is unfinished, holds its removal back.
    own = aliased(Activation)
    activation_unfinished = (
        sa.select(own.id).where(own.voucher_id == Activation.voucher_id, own.kind == "activate", own.status != "done").exists()
    )
    return (
        sa.select(
            Activation.id, Activation.kind, Voucher.code, Voucher.status.label("voucher_status"),
            Plan.id.label("plan_id"), Plan.duration_s, Plan.data_limit_bytes, Plan.rate_limit,
            Plan.devices, Plan.lock_to_device, Activation.device_mac,
        )
        .join(Voucher, Voucher.id == Activation.voucher_id)
        .join(Plan, Plan.id == Voucher.plan_id)
        .where(
            Activation.router_id == router_id,
            sa.or_(
                # Equalities rather than IN: an IN list is re-rendered for every execution.
                Activation.status == "pending", Activation.status == "failed", Activation.status == "offered",
                # A row an API worker held when the router switched to pull, and then abandoned.
                sa.and_(Activation.status == "running", Activation.lease_until < _NOW),
            ),
            sa.or_(Activation.kind == "activate", ~activation_unfinished),
        )
        .order_by(Activation.id)
        .limit(MAX_ITEMS_PER_ANSWER)
    )


_WORK = _work_query(sa.bindparam("router_id"))
# PostgreSQL, no acks: record the contact and read the work in one autocommitted round trip. A
# router with nothing to do gets one row with a NULL id; a refused sync gets no row at all.
# The statement is its own transaction, and only a contact record (last sync, usage, rate window)
# commits in it, which the next sync rewrites anyway: set_config(..., true) lets that commit skip
# the wait for the WAL flush (synchronous_commit off, for this transaction only), so 133 syncs a
# second do not queue behind the disk. Outbox changes always commit in an ordinary transaction.
_contact = _RECORD_CONTACT.cte("contact")
_pending = _work_query(_contact.c.router_id).lateral("work")
_relaxed = sa.select(sa.func.set_config("synchronous_commit", "off", True).label("relaxed")).cte("relaxed")
_CONTACT_AND_WORK = (
    sa.select(_contact.c.router_id, _contact.c.router_slug, _contact.c.interval, _contact.c.hotspot_server,
              _relaxed.c.relaxed, *_pending.c)
    .select_from(_relaxed.join(_contact, sa.true()).outerjoin(_pending, sa.true()))
    .order_by(_pending.c.id)
)


def _offer_work(router: SyncingRouter, rows: list[Any], now: datetime) -> SyncAnswer:
    """Mark the rows offered and word the answer. In the caller's transaction."""
    if _retire_cancelled(rows, now):
        rows = db.session.execute(_WORK, {"router_id": router.id, "now": now}).all()
    profiles: dict[int, ProfileItem] = {}
    add: list[AddItem] = []
    remove: list[RemoveItem] = []
    for row in rows:
        if not VOUCHER_NAME.fullmatch(row.code):
            log.warning("sync: voucher code %r is not offerable (not from the voucher alphabet)", row.code)
            continue
        if row.kind == "remove":
            remove.append(RemoveItem(work_id(row.id), row.code))
            continue
        profile = _profile_for(row)
        profiles.setdefault(row.plan_id, profile)
        add.append(AddItem(work_id(row.id), row.code, profile.name, row.duration_s, row.data_limit_bytes or 0,
                           mac_address=activations.locked_mac(row.lock_to_device, row.device_mac)))
    offered = [int(item.id[1:]) for item in (*add, *remove)]
    if offered:
        db.session.execute(
            sa.update(Activation)
            .where(Activation.id.in_(offered), Activation.status != "done")
            .values(status="offered", lease_until=None, attempts=Activation.attempts + 1,
                    last_error="offered to the router; waiting for its acknowledgement")
            .execution_options(synchronize_session=False)
        )
    return SyncAnswer(interval=router.interval, profiles=list(profiles.values()), add=add, remove=remove,
                      router_slug=router.slug, hotspot_server=router.hotspot_server)


def _retire_cancelled(rows: list[Any], now: datetime) -> bool:
    """Activations whose voucher was cancelled (or expired) before the router acknowledged them
    are not offered again: done, so their removal (remove if present) goes out instead."""
    stale = [row.id for row in rows if row.kind == "activate" and row.voucher_status not in ("paid", "active")]
    if not stale:
        return False
    db.session.execute(
        sa.update(Activation)
        .where(Activation.id.in_(stale), Activation.status != "done")
        .values(status="done", done_at=now, lease_until=None, last_error="voucher cancelled before the router acknowledged it")
        .execution_options(synchronize_session=False)
    )
    return True


def _profile_for(row: Any) -> ProfileItem:
    name = Plan.profile_name_for(row.plan_id)
    rate = (row.rate_limit or "").strip() or None
    if rate is not None and not RATE_LIMIT.fullmatch(rate):
        log.warning("sync: plan %s rate limit %r is not a RouterOS rate; profile sent without one", row.plan_id, rate)
        rate = None
    return ProfileItem(name=name, rate_limit=rate, shared_users=int(row.devices or 1))


# ---------------------------------------------------------------------------------------------
# Tokens, transport, health


def create_pull_router(
    *, owner: User, name: str, hotspot_server: str | None = None, interval_s: int = DEFAULT_INTERVAL_S,
    slug: str | None = None,
) -> tuple[Router, str]:
    """Add a router that syncs by pull, with its first token (shown once). The caller commits.

    It has no API address or credentials: the portal never connects to it.
    """
    router = Router(
        owner_id=owner.id, name=name, slug=slug or new_router_slug(name), host="", api_username="",
        hotspot_server=hotspot_server or None, transport="pull",
    )
    router.api_password = ""
    set_sync_interval(router, interval_s)
    token = issue_sync_token(router)
    db.session.add(router)
    return router, token


def issue_sync_token(router: Router) -> str:
    """A fresh token for the router; the old one stops working when the caller commits. Shown once."""
    token = secrets.token_urlsafe(TOKEN_BYTES)  # 43 characters of [A-Za-z0-9_-]: no quoting trouble anywhere
    router.sync_token_hash = token_hash(token)
    return token


def set_sync_interval(router: Router, seconds: int) -> None:
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise TransportError(f"The sync interval is {MIN_INTERVAL_S} to {MAX_INTERVAL_S} seconds.")
    router.sync_interval_s = seconds


def set_transport(router: Router, transport: str) -> bool:
    """Switch how the outbox reaches the router. Caller commits, then wakes the worker when True.

    To ``api``: rows offered to the router but never acknowledged become due for the worker (an
    item applied twice changes nothing). To ``pull``: the next sync offers whatever is unfinished;
    a row a worker holds right now finishes there, and its result stands.
    """
    if transport not in ("api", "pull"):
        raise TransportError(f"unknown transport {transport!r}")
    if transport == router.transport:
        return False
    if transport == "api" and not (router.host and router.api_username and router.api_password):
        raise TransportError("Give the router's API address, user and password (edit the router) before switching to API.")
    router.transport = transport
    if transport == "pull":
        router_pool().discard(router.id)
        return False
    db.session.execute(
        sa.update(Activation)
        .where(Activation.router_id == router.id, Activation.status == "offered")
        .values(status="pending", next_attempt_at=utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    )
    return True


def sync_url(router: Router, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/routers/{router.slug}/sync"


def is_offline(router: Router, now: datetime | None = None) -> bool:
    """A pull router whose syncs stopped more than two minutes ago (or that never synced)."""
    if router.transport != "pull":
        return False
    return router.last_sync_at is None or router.last_sync_at < (now or utcnow()) - OFFLINE_AFTER


def wait_bound_s(interval_s: int) -> int:
    """What the wait page promises: the next sync, the follow-up that acknowledges, and a margin."""
    return interval_s + 5


def silent_pull_routers(user: User, now: datetime | None = None, limit: int = 100) -> list[Router]:
    """Active pull routers that have not synced for ten minutes (or never did, ten minutes after
    being added): the Problems page lists them."""
    return list(db.session.scalars(_silent(user, now or utcnow()).order_by(Router.last_sync_at, Router.id).limit(limit)))


def count_silent_pull_routers(user: User, now: datetime | None = None) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(_silent(user, now or utcnow()).subquery())) or 0


def _silent(user: User, now: datetime) -> sa.Select:
    cutoff = now - PROBLEM_AFTER
    return sa.select(Router).where(
        owned(Router.owner_id, user),
        Router.transport == "pull",
        Router.status == "active",
        sa.or_(Router.last_sync_at < cutoff, sa.and_(Router.last_sync_at.is_(None), Router.created_at < cutoff)),
    )


def reported_usage(router_id: int) -> dict[str, ReportedUsage]:
    """The usage the router reported at its last sync, by user name."""
    raw = db.session.scalar(sa.select(Router.sync_usage_json).where(Router.id == router_id))
    try:
        entries = json.loads(raw) if raw else []
        return {entry[0]: ReportedUsage(*entry) for entry in entries}
    except (ValueError, TypeError):
        log.warning("router %s: stored sync usage unreadable; ignored", router_id)
        return {}


def reported_online(router_id: int, now: datetime | None = None) -> tuple[int | None, str | None]:
    """(customers online, why not known) for a pull router: the sessions its last sync reported,
    or None when that sync is older than OFFLINE_AFTER (it may have gone quiet hours ago)."""
    last_sync = db.session.scalar(sa.select(Router.last_sync_at).where(Router.id == router_id))
    if last_sync is None or last_sync < (now or utcnow()) - OFFLINE_AFTER:
        return None, "no sync for over 2 minutes" if last_sync else "has not synced yet"
    return sum(u.active for u in reported_usage(router_id).values()), None

"""Paybills and tills: credentials for the Daraja client, the shared token cache, webhook URLs."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..core.cache import LockedTTLCache
from ..core.config import PRODUCTION_DARAJA_URL, SANDBOX_DARAJA_URL
from ..core.crypto import decrypt_secret, encrypt_secret, fingerprint
from ..core.extensions import db
from ..models import Paybill, Router, User, utcnow
from ..mpesa.breaker import CircuitBreaker
from ..mpesa.client import CachedToken, DarajaAccount, DarajaClient

WEBHOOK_TOKEN_BYTES = 16  # 128 bits


def new_webhook_token() -> str:
    # Hex only: Daraja rejects callback URLs containing words such as "exe", "cmd" or "sql",
    # which base64 tokens could spell by chance; hex digits cannot.
    return secrets.token_hex(WEBHOOK_TOKEN_BYTES)


def create_paybill(
    *,
    owner: User | None,
    number: str,
    kind: str,
    consumer_key: str,
    consumer_secret: str,
    passkey: str,
    environment: str = "sandbox",
    store_number: str | None = None,
    name: str = "",
) -> Paybill:
    """Add a paybill or till with its secrets encrypted; the caller commits."""
    token = new_webhook_token()
    paybill = Paybill(
        owner_id=owner.id if owner else None,
        number=number,
        type=kind,
        store_number=store_number if kind == "till" else None,
        environment=environment,
        name=name or f"{kind} {number}",
        webhook_token_hash=fingerprint(token),
    )
    paybill.consumer_key = consumer_key
    paybill.consumer_secret = consumer_secret
    paybill.passkey = passkey
    paybill.webhook_token = token
    db.session.add(paybill)
    return paybill


def paybill_for_router(router: Router) -> Paybill | None:
    """The router's own paybill, else its owner's default, else the platform's (owner null)."""
    for candidate_id in (router.paybill_id, router.owner.default_paybill_id):
        if candidate_id:
            paybill = db.session.get(Paybill, candidate_id)
            if paybill and paybill.status == "active":
                return paybill
    return db.session.scalars(
        sa.select(Paybill).where(Paybill.owner_id.is_(None), Paybill.status == "active").order_by(Paybill.id)
    ).first()


def find_paybill_by_webhook_token(token: str) -> Paybill | None:
    """Current token, or the previous one while its grace period lasts."""
    if not token or len(token) > 128:
        return None
    digest = fingerprint(token)
    paybill = db.session.scalars(sa.select(Paybill).where(Paybill.webhook_token_hash == digest)).first()
    if paybill:
        return paybill
    paybill = db.session.scalars(sa.select(Paybill).where(Paybill.previous_webhook_token_hash == digest)).first()
    if paybill and paybill.previous_webhook_token_valid_until and paybill.previous_webhook_token_valid_until > utcnow():
        return paybill
    return None


@dataclass(frozen=True)
class WebhookPaybill:
    """What a webhook needs of the paybill whose secret path it came in on (plain values)."""

    id: int
    number: str
    store_number: str | None
    owner_id: int | None


WEBHOOK_PAYBILL_TTL_S = 60.0


def webhook_paybill(token: str) -> WebhookPaybill | None:
    """``find_paybill_by_webhook_token`` for the webhooks' hot path, remembered per app for a minute.

    Every callback would otherwise load the paybill row first. A rotated token keeps working for
    24 hours, so a minute of memory changes nothing an owner can see; unknown tokens are not kept.
    """
    cache = current_app.extensions.setdefault("portal_webhook_paybills", LockedTTLCache(WEBHOOK_PAYBILL_TTL_S, remember_none=False))
    return cache.get(token, lambda: _webhook_paybill(token))


def _webhook_paybill(token: str) -> WebhookPaybill | None:
    paybill = find_paybill_by_webhook_token(token)
    return WebhookPaybill(paybill.id, paybill.number, paybill.store_number, paybill.owner_id) if paybill else None


def webhook_urls(paybill: Paybill) -> dict[str, str]:
    base = f"{current_app.config['PORTAL_BASE_URL']}/hooks/{paybill.webhook_token}"
    return {"stk": f"{base}/stk", "c2b_confirm": f"{base}/c2b/confirm", "c2b_validate": f"{base}/c2b/validate"}


def daraja_account(paybill: Paybill) -> DarajaAccount:
    return DarajaAccount(
        shortcode=paybill.number,
        kind=paybill.type,
        consumer_key=paybill.consumer_key,
        consumer_secret=paybill.consumer_secret,
        passkey=paybill.passkey,
        store_number=paybill.store_number,
        label=f"paybill-{paybill.id}",
    )


def daraja_base_url(paybill: Paybill) -> str:
    override = current_app.config["DARAJA_BASE_URL"]
    if override:
        return override
    return PRODUCTION_DARAJA_URL if paybill.environment == "production" else SANDBOX_DARAJA_URL


def daraja_client(paybill: Paybill) -> DarajaClient:
    """One client per Daraja host per app (the client shares one requests.Session per host)."""
    base_url = daraja_base_url(paybill)
    clients = current_app.extensions.setdefault("portal_daraja_clients", {})
    if base_url not in clients:
        cfg = current_app.config
        breaker = CircuitBreaker(
            failure_threshold=cfg["PORTAL_DARAJA_BREAKER_FAILURES"], cool_off_s=cfg["PORTAL_DARAJA_BREAKER_COOL_OFF_S"]
        )
        # One retry only: a customer's request must fail in seconds, not wait out a long backoff;
        # the scheduled jobs simply try again on their next run.
        clients[base_url] = DarajaClient(
            base_url, timeout=(3.05, cfg["PORTAL_DARAJA_TIMEOUT_S"]), retries=1, breaker=breaker
        )
    return clients[base_url]


@dataclass(frozen=True)
class DarajaCall:
    """What one Daraja call needs, read while the paybill row is at hand."""

    client: DarajaClient
    account: DarajaAccount
    tokens: PaybillTokenStore
    urls: dict[str, str]


def prepare_daraja_call(paybill: Paybill) -> DarajaCall:
    """Read credentials, then end the transaction: no database lock is held across a Daraja call
    (the token store writes through its own connection, which would otherwise wait on ours)."""
    call = DarajaCall(daraja_client(paybill), daraja_account(paybill), PaybillTokenStore(paybill.id), webhook_urls(paybill))
    db.session.commit()
    return call


def token_share_key(owner_id: int | None, key_fingerprint: str | None, secret_encrypted: str) -> tuple[object, ...]:
    """Paybills with equal keys share one Daraja token: the same owner, consumer key and secret.

    The key alone is not proof: another owner (or a typo'd secret) with a copied consumer key must
    never be handed a token fetched with someone else's secret.
    """
    return (owner_id, key_fingerprint, fingerprint(decrypt_secret(secret_encrypted)))


class PaybillTokenStore:
    """The Daraja token for one paybill's consumer key, kept encrypted in the database.

    Daraja invalidates the previous token whenever a new one is issued for a consumer key, so
    every process, and every paybill of the same owner that uses the same Daraja app (key and
    secret), shares one token: it is read from any such row and saved to all of them. Its own short transactions, independent
    of the caller's unit of work.
    """

    def __init__(self, paybill_id: int) -> None:
        self.paybill_id = paybill_id

    def same_key(self, conn: sa.Connection | None = None) -> sa.ColumnElement[bool]:
        """This paybill and those that may share its token (see ``token_share_key``), looked up
        through ``conn`` when given (the store's own connection), else the caller's session."""
        run = conn.execute if conn is not None else db.session.execute
        mine = run(
            sa.select(Paybill.owner_id, Paybill.consumer_key_fingerprint, Paybill.consumer_secret_encrypted)
            .where(Paybill.id == self.paybill_id)
        ).first()
        if mine is None or mine[1] is None:
            return Paybill.id == self.paybill_id
        share_key = token_share_key(*mine)
        candidates = run(
            sa.select(Paybill.id, Paybill.owner_id, Paybill.consumer_key_fingerprint, Paybill.consumer_secret_encrypted)
            .where(Paybill.consumer_key_fingerprint == mine[1], Paybill.owner_id.is_not_distinct_from(mine[0]))
        ).all()
        ids = {self.paybill_id} | {row[0] for row in candidates if token_share_key(*row[1:]) == share_key}
        return Paybill.id.in_(sorted(ids))

    def load(self) -> CachedToken | None:
        """The shared token, remembered in this process for TOKEN_MEMORY_S (one query fewer per Daraja
        call). Safe: a token another process replaced is refused by Daraja, and the client then
        asks ``load_fresh`` before it would ever fetch one itself."""
        return _token_memory().get(self.paybill_id, self.load_fresh)

    def load_fresh(self) -> CachedToken | None:
        """The token in the database now, remembered for this paybill only. Other paybills of the
        same key keep what they remember: a stale one is refused by Daraja and re-read then.
        (Clearing the whole memory here made paybills evict each other on every miss.)"""
        token = self._read()
        memory = _token_memory()
        if token is None:
            memory.forget(self.paybill_id)
        else:
            memory.put(self.paybill_id, token)
        return token

    def _read(self) -> CachedToken | None:
        with db.engine.connect() as conn:
            row = conn.execute(
                sa.select(Paybill.access_token_encrypted, Paybill.token_expires_at)
                .where(self.same_key(conn), Paybill.access_token_encrypted.is_not(None))
                .order_by(Paybill.token_expires_at.desc())
                .limit(1)
            ).first()
        if row is None or row[1] is None:
            return None
        return CachedToken(access_token=decrypt_secret(row[0]), expires_at=_aware(row[1]))

    def save(self, token: CachedToken) -> None:
        with db.engine.begin() as conn:
            conn.execute(
                sa.update(Paybill)
                .where(self.same_key(conn))
                .values(
                    access_token_encrypted=encrypt_secret(token.access_token),
                    token_expires_at=token.expires_at,
                    last_token_refresh=utcnow(),
                    last_token_error=None,
                )
                .execution_options(synchronize_session=False)
            )
        _token_memory().clear()


TOKEN_MEMORY_S = 30.0


def _token_memory() -> LockedTTLCache[CachedToken]:
    return current_app.extensions.setdefault("portal_token_memory", LockedTTLCache(TOKEN_MEMORY_S, remember_none=False))


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def register_c2b_urls(paybill: Paybill) -> None:
    """Tell Daraja where to send this shortcode's C2B validations and confirmations.

    Raises DarajaError; on success records when, for the dashboard.
    """
    call = prepare_daraja_call(paybill)
    call.client.register_c2b_urls(
        call.account, call.tokens, confirmation_url=call.urls["c2b_confirm"], validation_url=call.urls["c2b_validate"]
    )
    paybill.c2b_registered_at = utcnow()
    db.session.commit()


# --- dashboard: edit, credentials check, webhook token rotation --------------------------------

PREVIOUS_WEBHOOK_TOKEN_GRACE = timedelta(hours=24)


def mask_secret(value: str | None) -> str:
    """Enough to recognise a secret, never enough to use it: the last 4 characters."""
    if not value:
        return "—"
    return "••••" + value[-4:] if len(value) > 8 else "••••"


def update_paybill(
    paybill: Paybill,
    *,
    name: str,
    number: str,
    kind: str,
    store_number: str | None,
    environment: str,
    status: str,
    consumer_key: str | None = None,
    consumer_secret: str | None = None,
    passkey: str | None = None,
) -> None:
    """Change a paybill; empty secrets keep the stored ones. The caller commits.

    New app credentials drop the cached token (it belongs to the old consumer key); a new number
    or environment means the C2B URLs must be registered again.
    """
    if (number, environment, kind, store_number) != (paybill.number, paybill.environment, paybill.type, paybill.store_number):
        paybill.c2b_registered_at = None
    paybill.name = name or f"{kind} {number}"
    paybill.number = number
    paybill.type = kind
    paybill.store_number = store_number if kind == "till" else None
    paybill.environment = environment
    paybill.status = status
    if consumer_key or consumer_secret:
        paybill.access_token = None
        paybill.token_expires_at = None
    if consumer_key:
        paybill.consumer_key = consumer_key
    if consumer_secret:
        paybill.consumer_secret = consumer_secret
    if passkey:
        paybill.passkey = passkey


def rotate_webhook_token(paybill: Paybill, *, now: datetime | None = None) -> datetime:
    """A new secret webhook path; the previous one keeps working for 24 hours (callbacks of
    pushes already sent still arrive there). Returns when the old one stops. The caller commits.

    C2B URLs registered with Daraja carry the old token, so they must be registered again
    (in production that first needs the old URLs deleted on the Daraja portal).
    """
    now = now or utcnow()
    token = new_webhook_token()
    paybill.previous_webhook_token_hash = paybill.webhook_token_hash
    paybill.previous_webhook_token_valid_until = now + PREVIOUS_WEBHOOK_TOKEN_GRACE
    paybill.webhook_token_hash = fingerprint(token)
    paybill.webhook_token = token
    paybill.c2b_registered_at = None
    return paybill.previous_webhook_token_valid_until

"""Typed models. Money is whole shillings (int); times are UTC-aware; statuses come from fixed sets.

Uniqueness that protects money (receipt, CheckoutRequestID, voucher code, one activation per
voucher) is a table constraint, never a check-then-insert in code.

Every table lives in this one file, not split per area: the money path joins across all areas
(a payment belongs to an owner, a router, a paybill and a voucher), and one file lets a reviewer
see every constraint that protects money side by side. The services are split by area instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .core.crypto import decrypt_secret, encrypt_secret, fingerprint
from .core.extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator):
    """Stores UTC; always hands back aware UTC datetimes (SQLite forgets the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _status_check(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=name)


class EncryptedField:
    """Descriptor: ``paybill.consumer_secret = "x"`` stores ciphertext in ``consumer_secret_encrypted``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.column = f"{name}_encrypted"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        token = getattr(obj, self.column)
        return None if token is None else decrypt_secret(token)

    def __set__(self, obj: Any, value: str | None) -> None:
        setattr(obj, self.column, None if value is None else encrypt_secret(value))


class FingerprintedEncryptedField(EncryptedField):
    """Also keeps ``<name>_fingerprint`` (a SHA-256) so rows sharing the value can be found."""

    def __set_name__(self, owner: type, name: str) -> None:
        super().__set_name__(owner, name)
        self.fingerprint_column = f"{name}_fingerprint"

    def __set__(self, obj: Any, value: str | None) -> None:
        super().__set__(obj, value)
        setattr(obj, self.fingerprint_column, None if value is None else fingerprint(value))


USER_ROLES = ("owner", "admin")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (_status_check("role", USER_ROLES, "user_role_valid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16), default="owner")
    default_paybill_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("paybills.id", use_alter=True, name="fk_users_default_paybill")
    )
    # Bumped on password change so every other session of this user stops working.
    session_version: Mapped[int] = mapped_column(default=1)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Issue 14 (owners manage themselves): the phone given at sign-up, confirmed by a code; an
    # admin's lock (unlike locked_until it does not lapse); what printed vouchers carry.
    phone: Mapped[str | None] = mapped_column(sa.String(12))
    phone_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    confirm_code_hash: Mapped[str | None] = mapped_column(sa.String(255))  # the sign-up code, hashed
    confirm_code_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    confirm_code_attempts: Mapped[int] = mapped_column(default=0)
    locked_by_admin_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    business_name: Mapped[str | None] = mapped_column(sa.String(120))
    support_phone: Mapped[str | None] = mapped_column(sa.String(20))

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_confirmed(self) -> bool:
        """Owners made by the CLI or an admin have no phone to confirm; self sign-ups must confirm theirs."""
        return self.phone is None or self.phone_confirmed_at is not None

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"


PAYBILL_TYPES = ("paybill", "till")
ENVIRONMENTS = ("sandbox", "production")
ACTIVE_STATES = ("active", "inactive")


class Paybill(db.Model):
    __tablename__ = "paybills"
    __table_args__ = (
        _status_check("type", PAYBILL_TYPES, "paybill_type_valid"),
        _status_check("environment", ENVIRONMENTS, "paybill_environment_valid"),
        _status_check("status", ACTIVE_STATES, "paybill_status_valid"),
        sa.CheckConstraint("type = 'paybill' OR store_number IS NOT NULL", name="till_has_store_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)  # null = platform's own
    number: Mapped[str] = mapped_column(sa.String(12), index=True)  # paybill number, or till number
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    type: Mapped[str] = mapped_column(sa.String(8), default="paybill")
    store_number: Mapped[str | None] = mapped_column(sa.String(12))  # till only: HO/store = BusinessShortCode
    environment: Mapped[str] = mapped_column(sa.String(12), default="sandbox")
    consumer_key_encrypted: Mapped[str] = mapped_column(sa.Text)
    # Daraja issues one live token per consumer key (a new one kills the old), so paybills that
    # share a Daraja app must share its token: this finds them without decrypting every key.
    consumer_key_fingerprint: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    consumer_secret_encrypted: Mapped[str] = mapped_column(sa.Text)
    passkey_encrypted: Mapped[str] = mapped_column(sa.Text)
    access_token_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_token_refresh: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_token_error: Mapped[str | None] = mapped_column(sa.String(500))
    last_token_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A worker fetching this paybill's token holds it until then, so two never fetch at once
    # (each fetch would invalidate the other's token).
    token_refresh_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The webhook path token is a secret: only its hash is searchable, the value is kept encrypted
    # so the portal can rebuild the URLs it gives Daraja.
    webhook_token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    webhook_token_encrypted: Mapped[str] = mapped_column(sa.Text)
    previous_webhook_token_hash: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    previous_webhook_token_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    c2b_registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(sa.String(8), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    consumer_key = FingerprintedEncryptedField()
    consumer_secret = EncryptedField()
    passkey = EncryptedField()
    access_token = EncryptedField()
    webhook_token = EncryptedField()

    @property
    def business_shortcode(self) -> str:
        return self.store_number if self.type == "till" and self.store_number else self.number


ROUTER_STATES = ("active", "disabled")
# How the outbox reaches the router: "api" (the portal connects, directly or over the tunnel) or
# "pull" (the router fetches its own work from /routers/<slug>/sync on a schedule).
ROUTER_TRANSPORTS = ("api", "pull")
# How an api router is reached (issue 13): at its own address, or over the portal's WireGuard hub.
ROUTER_CONNECTION_MODES = ("direct", "tunnel")


class Router(db.Model):
    __tablename__ = "routers"
    __table_args__ = (
        _status_check("status", ROUTER_STATES, "router_status_valid"),
        _status_check("transport", ROUTER_TRANSPORTS, "router_transport_valid"),
        sa.CheckConstraint("sync_interval_s BETWEEN 5 AND 60", name="router_sync_interval_range"),
        _status_check("connection_mode", ROUTER_CONNECTION_MODES, "router_connection_mode_valid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)  # public, in /r/<slug>
    host: Mapped[str] = mapped_column(sa.String(255))
    port: Mapped[int] = mapped_column(default=8728)
    use_tls: Mapped[bool] = mapped_column(default=False)
    api_username: Mapped[str] = mapped_column(sa.String(64))
    api_password_encrypted: Mapped[str] = mapped_column(sa.Text)
    hotspot_server: Mapped[str | None] = mapped_column(sa.String(64))
    # The hotspot profile's dns-name (e.g. wifi.cafe.co.ke): besides a private or link-local IP,
    # the only host a customer's link-login-only may point at (captive/router_login.py).
    hotspot_dns_name: Mapped[str | None] = mapped_column(sa.String(255))
    paybill_id: Mapped[int | None] = mapped_column(sa.ForeignKey("paybills.id"))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    # Set when the router refuses our API login, so the owner sees it is a credentials problem.
    login_refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(sa.String(10), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    wifi_name: Mapped[str | None] = mapped_column(sa.String(64))  # the SSID printed on cash vouchers
    # --- pull sync (transport "pull"); see hotspot/pull_sync.py
    transport: Mapped[str] = mapped_column(sa.String(8), default="api", server_default="api")
    # SHA-256 of the router's bearer token: the token itself is shown once and never stored.
    sync_token_hash: Mapped[str | None] = mapped_column(sa.String(64))
    sync_interval_s: Mapped[int] = mapped_column(default=15, server_default="15")
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_sync_version: Mapped[str | None] = mapped_column(sa.String(40))  # RouterOS version it reported
    # The sync rate limit: syncs counted in the minute that started at sync_window_started_at.
    sync_window_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sync_window_count: Mapped[int] = mapped_column(default=0, server_default="0")
    # The usage of the portal's hotspot users as last reported (JSON list); the expiry job reads it.
    sync_usage_json: Mapped[str | None] = mapped_column(sa.Text, deferred=True)

    # --- WireGuard management tunnel (connection_mode "tunnel"); see tunnel/
    connection_mode: Mapped[str] = mapped_column(sa.String(8), default="direct", server_default="direct")
    # The router's address in PORTAL_TUNNEL_NETWORK: unique, held until the router is deleted
    # (switching back to direct keeps it, so switching again gives the same address).
    tunnel_address: Mapped[str | None] = mapped_column(sa.String(45), unique=True)
    wg_private_key_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    wg_public_key: Mapped[str | None] = mapped_column(sa.String(44))
    # Key rotation: the old key stays the hub's peer until the new one has shaken hands.
    wg_previous_public_key: Mapped[str | None] = mapped_column(sa.String(44))
    wg_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Written by `flask tunnel run` from `wg show dump`: the latest handshake of either key.
    wg_last_handshake_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    wg_rx_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    wg_tx_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")

    api_password = EncryptedField()
    wg_private_key = EncryptedField()
    owner: Mapped[User] = relationship()
    paybill: Mapped[Paybill | None] = relationship()


VALIDITY_MODES = ("wall_clock", "connected_time")

router_plans = sa.Table(
    "router_plans",
    db.metadata,
    sa.Column("router_id", sa.ForeignKey("routers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("plan_id", sa.ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True),
)


class Plan(db.Model):
    __tablename__ = "plans"
    __table_args__ = (
        sa.CheckConstraint("price > 0", name="plan_price_positive"),
        sa.CheckConstraint("duration_s > 0", name="plan_duration_positive"),
        _status_check("validity_mode", VALIDITY_MODES, "plan_validity_mode_valid"),
        sa.CheckConstraint("devices BETWEEN 1 AND 50", name="plan_devices_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(80))
    price: Mapped[int]  # KES, whole shillings
    duration_s: Mapped[int]
    data_limit_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    rate_limit: Mapped[str | None] = mapped_column(sa.String(64))  # RouterOS rx/tx, e.g. "2M/5M"
    validity_mode: Mapped[str] = mapped_column(sa.String(16), default="wall_clock")
    is_active: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Issue 17: how many devices may be online at once on one voucher (the profile's shared-users),
    # and whether the hotspot user is locked to the MAC address of the device that bought it.
    devices: Mapped[int] = mapped_column(default=1, server_default="1")
    lock_to_device: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    # Empty means "sold on every router of the owner".
    routers: Mapped[list[Router]] = relationship(secondary=router_plans)

    @property
    def profile_name(self) -> str:
        """Hotspot user profile on the router; stable per plan so edits update it in place."""
        return Plan.profile_name_for(self.id)

    @staticmethod
    def profile_name_for(plan_id: int) -> str:
        return f"portal-plan-{plan_id}"


VOUCHER_STATES = ("pending_payment", "paid", "active", "expired", "cancelled")


class Voucher(db.Model):
    __tablename__ = "vouchers"
    __table_args__ = (
        _status_check("status", VOUCHER_STATES, "voucher_status_valid"),
        sa.Index("ix_vouchers_status_expires", "status", "expires_at"),
        sa.Index("ix_vouchers_owner_activated", "owner_id", "activated_at"),  # overview: time to online
        sa.Index("ix_vouchers_owner_status_expires", "owner_id", "status", "expires_at"),  # overview: online now
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # STK AccountReference and C2B BillRefNumber: at most 12 characters, unambiguous uppercase.
    code: Mapped[str] = mapped_column(sa.String(12), unique=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    plan_id: Mapped[int] = mapped_column(sa.ForeignKey("plans.id"))
    router_id: Mapped[int] = mapped_column(sa.ForeignKey("routers.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending_payment")
    phone: Mapped[str | None] = mapped_column(sa.String(12), index=True)
    device_mac: Mapped[str | None] = mapped_column(sa.String(17))
    device_ip: Mapped[str | None] = mapped_column(sa.String(45))
    source: Mapped[str] = mapped_column(sa.String(10), default="purchase")  # purchase | batch | manual
    batch_ref: Mapped[str | None] = mapped_column(sa.String(16), index=True)  # one printed sheet of cash vouchers
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the router first counted time on a printed (cash) voucher: "unsold" until then.
    first_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Issue 17: the language of the page the customer bought on (their SMS speaks it), and the
    # buy form's "no SMS" tick box.
    language: Mapped[str | None] = mapped_column(sa.String(2))
    sms_opt_out: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    plan: Mapped[Plan] = relationship()
    router: Mapped[Router] = relationship()


class VoucherBatch(db.Model):
    """One printed sheet of cash vouchers (vouchers.batch_ref names it): who made it and its note."""

    __tablename__ = "voucher_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(sa.String(16), unique=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    note: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


PAYMENT_STATES = ("pending", "paid", "failed", "underpaid", "unmatched", "expired")
PAYMENT_SOURCES = ("stk", "c2b", "query", "manual")


class Payment(db.Model):
    """One purchase's money. Created pending at purchase; the receipt arrives with the payment."""

    __tablename__ = "payments"
    __table_args__ = (
        _status_check("status", PAYMENT_STATES, "payment_status_valid"),
        _status_check("source", PAYMENT_SOURCES, "payment_source_valid"),
        sa.CheckConstraint("amount_expected >= 0", name="payment_expected_not_negative"),
        sa.CheckConstraint("amount IS NULL OR amount >= 0", name="payment_amount_not_negative"),
        # Dashboard lists page by (created_at, id) per owner; keyset pagination needs this.
        sa.Index("ix_payments_owner_created", "owner_id", "created_at", "id"),
        sa.Index("ix_payments_status_created", "status", "created_at"),
        # Dashboard: revenue per owner reads only this index (amount is carried along on PostgreSQL);
        # a status filter on the payments list pages through it in (created_at, id) order.
        sa.Index(
            "ix_payments_owner_status_created", "owner_id", "status", "created_at", "id",
            postgresql_include=["amount"],
        ),
        sa.Index("ix_payments_router_created", "router_id", "created_at", "id"),  # list filtered by router
        sa.Index("ix_payments_created", "created_at", "id"),  # an admin's list of every owner
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)  # the /p/<purchase-id>
    # The buy form's one-time token: a double-submitted form finds this row instead of pushing again.
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    router_id: Mapped[int | None] = mapped_column(sa.ForeignKey("routers.id"), index=True)
    paybill_id: Mapped[int | None] = mapped_column(sa.ForeignKey("paybills.id"))
    voucher_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vouchers.id"), index=True)
    amount_expected: Mapped[int] = mapped_column(default=0)
    amount: Mapped[int | None]  # what M-Pesa says was paid
    phone: Mapped[str | None] = mapped_column(sa.String(12), index=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    provider: Mapped[str] = mapped_column(sa.String(8), default="mpesa")
    receipt: Mapped[str | None] = mapped_column(sa.String(20), unique=True)  # MpesaReceiptNumber == C2B TransID
    source: Mapped[str] = mapped_column(sa.String(8), default="stk")
    result_code: Mapped[str | None] = mapped_column(sa.String(32))
    note: Mapped[str | None] = mapped_column(sa.String(300))  # why it needs the owner, for problems
    bill_ref: Mapped[str | None] = mapped_column(sa.String(40))  # C2B account number as typed
    hotspot_json: Mapped[str | None] = mapped_column(sa.Text)  # router login variables kept for the wait page
    # Set when the owner settled an unmatched/underpaid payment by hand (the audit log says how and why);
    # the row keeps its status so the money's history stays readable.
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    voucher: Mapped[Voucher | None] = relationship()
    router: Mapped[Router | None] = relationship()
    paybill: Mapped[Paybill | None] = relationship()


INITIATION_STATES = ("initiated", "completed", "failed", "expired")


class StkInitiation(db.Model):
    __tablename__ = "stk_initiations"
    __table_args__ = (
        _status_check("status", INITIATION_STATES, "initiation_status_valid"),
        sa.CheckConstraint("amount > 0", name="initiation_amount_positive"),
        sa.Index("ix_initiations_status_created", "status", "created_at"),
        # Overview: results per owner's routers, read from the index alone on PostgreSQL.
        sa.Index("ix_initiations_router_created", "router_id", "created_at",
                 postgresql_include=["status", "result_code"]),
        # Expired initiations still asked about, by when their next late query is due.
        sa.Index("ix_initiations_status_next_query", "status", "next_query_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    checkout_request_id: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    merchant_request_id: Mapped[str | None] = mapped_column(sa.String(64))
    account_reference: Mapped[str] = mapped_column(sa.String(12), index=True)  # the voucher code
    phone_number: Mapped[str] = mapped_column(sa.String(12))  # normalised 2547…/2541…
    amount: Mapped[int]
    paybill_number: Mapped[str] = mapped_column(sa.String(12))  # BusinessShortCode the push used
    paybill_id: Mapped[int | None] = mapped_column(sa.ForeignKey("paybills.id"), index=True)
    router_id: Mapped[int | None] = mapped_column(sa.ForeignKey("routers.id"))
    voucher_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vouchers.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("payments.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="initiated")
    # True when the push timed out after sending: Daraja may have taken it; never re-send blindly.
    outcome_unknown: Mapped[bool] = mapped_column(default=False)
    result_code: Mapped[str | None] = mapped_column(sa.String(32))
    result_desc: Mapped[str | None] = mapped_column(sa.String(300))
    customer_message: Mapped[str | None] = mapped_column(sa.String(300))
    query_count: Mapped[int] = mapped_column(default=0)
    last_query_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # An initiation that expired without a final answer is still asked about, with backoff,
    # until Daraja answers or PORTAL_LATE_QUERY_GIVE_UP_S passes; then it is given up.
    late_query_count: Mapped[int] = mapped_column(default=0, server_default="0")
    next_query_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    query_given_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    payment: Mapped[Payment | None] = relationship()
    voucher: Mapped[Voucher | None] = relationship()
    paybill: Mapped[Paybill | None] = relationship()


WEBHOOK_STATES = ("received", "processed", "failed", "ignored", "rejected")
WEBHOOK_KINDS = ("stk_callback", "c2b_validation", "c2b_confirmation")


class WebhookLog(db.Model):
    """Every inbound webhook, stored raw before anything else happens to it."""

    __tablename__ = "webhook_logs"
    __table_args__ = (
        _status_check("status", WEBHOOK_STATES, "webhook_status_valid"),
        sa.Index("ix_webhook_logs_status_received", "status", "received_at"),
        sa.Index("ix_webhook_logs_received", "received_at"),
        sa.Index("ix_webhook_logs_paybill_received", "paybill_id", "received_at", "id"),  # owner's log viewer
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(16), default="daraja")
    kind: Mapped[str] = mapped_column(sa.String(20))
    status: Mapped[str] = mapped_column(sa.String(10), default="received")
    paybill_id: Mapped[int | None] = mapped_column(sa.ForeignKey("paybills.id"), index=True)
    payload: Mapped[str] = mapped_column(sa.Text)  # raw body as received (decoded leniently)
    remote_addr: Mapped[str | None] = mapped_column(sa.String(45))
    checkout_request_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    trans_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    bill_ref_number: Mapped[str | None] = mapped_column(sa.String(40))
    result_code: Mapped[str | None] = mapped_column(sa.String(32))
    error: Mapped[str | None] = mapped_column(sa.String(500))
    attempts: Mapped[int] = mapped_column(default=0)
    next_try_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # a failed row's next reprocessing
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


ACTIVATION_KINDS = ("activate", "remove")
# "offered": sent to a pull router in a sync answer, done when the router acknowledges it.
ACTIVATION_STATES = ("pending", "running", "offered", "done", "failed")


class Activation(db.Model):
    """Durable outbox of router work; written in the same transaction as the payment."""

    __tablename__ = "activations"
    __table_args__ = (
        _status_check("kind", ACTIVATION_KINDS, "activation_kind_valid"),
        _status_check("status", ACTIVATION_STATES, "activation_status_valid"),
        # One activation per voucher, enforced by the database: the same money never activates twice.
        sa.UniqueConstraint("voucher_id", "kind", name="uq_activation_voucher_kind"),
        sa.Index("ix_activations_due", "status", "next_attempt_at"),
        # A router's unfinished work: its backlog, and what a pull router's sync offers.
        sa.Index("ix_activations_router_status", "router_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    voucher_id: Mapped[int] = mapped_column(sa.ForeignKey("vouchers.id"))
    router_id: Mapped[int] = mapped_column(sa.ForeignKey("routers.id"))
    kind: Mapped[str] = mapped_column(sa.String(10), default="activate")
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A claimed row is owned until this time; a worker that died loses it then.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    device_mac: Mapped[str | None] = mapped_column(sa.String(17))
    device_ip: Mapped[str | None] = mapped_column(sa.String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    voucher: Mapped[Voucher] = relationship()
    router: Mapped[Router] = relationship()


class AuditLog(db.Model):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(sa.String(254))  # email, or "system"/"cli"
    action: Mapped[str] = mapped_column(sa.String(64))
    object_type: Mapped[str | None] = mapped_column(sa.String(32))
    object_id: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[str | None] = mapped_column(sa.Text)  # never a secret
    source_ip: Mapped[str | None] = mapped_column(sa.String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class JobRun(db.Model):
    """Last run of each scheduled job, for the dashboard and /healthz."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(sa.String(10))
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    last_counts: Mapped[str | None] = mapped_column(sa.String(500))
    duration_ms: Mapped[int | None]


class RateLimitHit(db.Model):
    """One counted attempt (an STK push, a code guess). Kept in the database so limits hold across workers."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (sa.Index("ix_rate_limit_key_at", "key", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Brand(db.Model):
    """How the customer pages look for an owner (router_id null) or for one router: each field a
    router sets overrides the owner's (hotspot.brands.brand_for). The logo is small and kept here,
    so it is served from our host: a customer has no internet before logging in."""

    __tablename__ = "brands"
    __table_args__ = (
        sa.UniqueConstraint("router_id", name="brand_one_per_router"),
        sa.Index(
            "brand_one_per_owner",
            "owner_id",
            unique=True,
            sqlite_where=sa.text("router_id IS NULL"),
            postgresql_where=sa.text("router_id IS NULL"),
        ),
        sa.CheckConstraint("logo_bytes IS NULL OR length(logo_bytes) <= 4096", name="brand_logo_small"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    router_id: Mapped[int | None] = mapped_column(sa.ForeignKey("routers.id", ondelete="CASCADE"))
    hotspot_name: Mapped[str | None] = mapped_column(sa.String(60))
    accent: Mapped[str | None] = mapped_column(sa.String(7))  # "#rrggbb"
    support_phone: Mapped[str | None] = mapped_column(sa.String(20))  # as the owner wants it shown
    terms_url: Mapped[str | None] = mapped_column(sa.String(300))  # http(s) only
    logo_bytes: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    logo_type: Mapped[str | None] = mapped_column(sa.String(16))  # image/png | image/jpeg | image/gif | image/webp
    logo_hash: Mapped[str | None] = mapped_column(sa.String(16))  # content hash: the logo URL's version
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class TunnelHub(db.Model):
    """The portal's WireGuard hub (issue 13): one row, id 1. Its keypair is made once by whichever
    process needs it first; `flask tunnel run` records each pass here for /healthz and the dashboard."""

    __tablename__ = "tunnel_hub"
    __table_args__ = (sa.CheckConstraint("id = 1", name="tunnel_hub_single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    private_key_encrypted: Mapped[str] = mapped_column(sa.Text)
    public_key: Mapped[str] = mapped_column(sa.String(44))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_sync_error: Mapped[str | None] = mapped_column(sa.String(500))
    last_sync_ms: Mapped[int | None]
    interface_kind: Mapped[str | None] = mapped_column(sa.String(16))  # kernel | wireguard-go
    peer_count: Mapped[int] = mapped_column(default=0, server_default="0")

    private_key = EncryptedField()
# --- issue 15: the owner ledger, B2C payouts and refunds -----------------------------------------

LEDGER_KINDS = ("sale", "commission", "payout", "refund", "adjustment")
# "balance": money the platform holds for the owner (sales on the platform's paybill).
# "owed": commission an owner with their own paybill owes the platform (their sales post no balance).
LEDGER_ACCOUNTS = ("balance", "owed")
LEDGER_SOURCES = ("payment", "payout", "refund", "audit")


class LedgerEntry(db.Model):
    """Append-only: a row is never updated or deleted; a balance is a SUM over an owner's rows.

    Each entry has exactly one source (a payment, payout, refund, or the audit row of an admin's
    adjustment) and (source, kind) is unique, so a retried job or a duplicate callback cannot post
    twice. A sale also carries its receipt, unique among sales: money whose receipt moved from an
    unmatched row to a purchase is credited once.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        _status_check("kind", LEDGER_KINDS, "ledger_kind_valid"),
        _status_check("account", LEDGER_ACCOUNTS, "ledger_account_valid"),
        _status_check("source_type", LEDGER_SOURCES, "ledger_source_valid"),
        sa.UniqueConstraint("source_type", "source_id", "kind", name="uq_ledger_source_kind"),
        sa.Index("uq_ledger_sale_receipt", "receipt", unique=True,
                 sqlite_where=sa.text("kind = 'sale' AND receipt IS NOT NULL"),
                 postgresql_where=sa.text("kind = 'sale' AND receipt IS NOT NULL")),
        # Balance: SUM(amount) per owner and account read from the index alone on PostgreSQL.
        sa.Index("ix_ledger_owner_account", "owner_id", "account", postgresql_include=["amount"]),
        sa.Index("ix_ledger_owner_created", "owner_id", "created_at", "id"),  # the statement, paged
        # What came after an owner's last checkpoint, summed from the index alone on PostgreSQL.
        sa.Index("ix_ledger_owner_id", "owner_id", "id", postgresql_include=["account", "kind", "amount"]),
        sa.CheckConstraint("kind <> 'adjustment' OR reason IS NOT NULL", name="ledger_adjustment_has_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    account: Mapped[str] = mapped_column(sa.String(8), default="balance")
    kind: Mapped[str] = mapped_column(sa.String(12))
    amount: Mapped[int]  # KES, signed: credits positive, debits negative
    source_type: Mapped[str] = mapped_column(sa.String(8))
    source_id: Mapped[int]
    receipt: Mapped[str | None] = mapped_column(sa.String(20))  # M-Pesa receipt of a sale, payout or refund
    commission_bp: Mapped[int | None]  # commission entries: the rate used, in basis points (1000 = 10 %)
    reason: Mapped[str | None] = mapped_column(sa.String(300))  # adjustments: the admin's words
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerCheckpoint(db.Model):
    """An owner's entries summed per account and kind up to (and including) entry ``up_to_id``:
    appended by a job, never updated, and always re-derivable from the entries (``ledger.verify``).
    A balance is the last checkpoint plus the entries after it, so it stays a sum of entries and
    costs the same with a million of them."""

    __tablename__ = "ledger_checkpoints"
    __table_args__ = (
        sa.UniqueConstraint("owner_id", "up_to_id", "account", "kind", name="uq_ledger_checkpoint"),
        sa.Index("ix_ledger_checkpoint_owner", "owner_id", "up_to_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    up_to_id: Mapped[int]
    account: Mapped[str] = mapped_column(sa.String(8))
    kind: Mapped[str] = mapped_column(sa.String(12))
    total: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OwnerMoneySettings(db.Model):
    """An owner's commission override and payout phone (one row per owner, made when first set)."""

    __tablename__ = "owner_money_settings"
    __table_args__ = (
        sa.CheckConstraint("commission_bp IS NULL OR commission_bp BETWEEN 0 AND 10000", name="commission_range"),
    )

    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    commission_bp: Mapped[int | None]  # null: PORTAL_COMMISSION_PERCENT
    payout_phone: Mapped[str | None] = mapped_column(sa.String(12))
    payout_phone_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    payout_code_hash: Mapped[str | None] = mapped_column(sa.String(255))  # the SMS code, hashed
    payout_code_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class PaybillB2C(db.Model):
    """B2C credentials of a paybill (the platform's, or an owner's own): the API operator's name and
    password, both encrypted; the certificate's path (empty: the one for the paybill's environment)."""

    __tablename__ = "paybill_b2c"

    paybill_id: Mapped[int] = mapped_column(sa.ForeignKey("paybills.id", ondelete="CASCADE"), primary_key=True)
    initiator_name_encrypted: Mapped[str] = mapped_column(sa.Text)
    initiator_password_encrypted: Mapped[str] = mapped_column(sa.Text)
    certificate_path: Mapped[str | None] = mapped_column(sa.String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    initiator_name = EncryptedField()
    initiator_password = EncryptedField()


B2C_STATES = ("requested", "approved", "sent", "completed", "failed")


class _B2CTransfer:
    """Columns a payout and a refund share: one B2C BusinessPayment each, at most once per
    OriginatorConversationID (our idempotency key; a retry after a definitive refusal gets a new one)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    paybill_id: Mapped[int | None] = mapped_column(sa.ForeignKey("paybills.id"))  # the paybill it is sent from
    amount: Mapped[int]
    phone: Mapped[str | None] = mapped_column(sa.String(12))
    state: Mapped[str] = mapped_column(sa.String(10), default="requested")
    originator_conversation_id: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
    conversation_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")  # B2C requests made (new ID each)
    # True after a timeout, a QueueTimeOut or an unreadable answer: Daraja may have it; ask Transaction Status.
    outcome_unknown: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    status_query_conversation_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    status_queries: Mapped[int] = mapped_column(default=0, server_default="0")
    next_status_query_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result_code: Mapped[str | None] = mapped_column(sa.String(32))
    result_desc: Mapped[str | None] = mapped_column(sa.String(300))
    failure_reason: Mapped[str | None] = mapped_column(sa.String(300))  # in words, for owners and admins
    is_retryable: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    receipt: Mapped[str | None] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Payout(_B2CTransfer, db.Model):
    """Money the platform owes an owner, sent by B2C from the platform's paybill to the payout phone.
    ``kind`` "test" is the small confirmation payout for a new payout phone."""

    __tablename__ = "payouts"
    __table_args__ = (
        _status_check("state", B2C_STATES, "payout_state_valid"),
        sa.CheckConstraint("amount > 0", name="payout_amount_positive"),
        sa.Index("ix_payouts_state_created", "state", "created_at"),
        sa.Index("ix_payouts_owner_created", "owner_id", "created_at", "id"),
        # One open payout per owner: a scheduled run and a request (or two runs) cannot both pay the same money.
        sa.Index("uq_payout_one_open_per_owner", "owner_id", unique=True,
                 sqlite_where=sa.text("kind = 'payout' AND state IN ('requested', 'approved', 'sent')"),
                 postgresql_where=sa.text("kind = 'payout' AND state IN ('requested', 'approved', 'sent')")),
    )

    kind: Mapped[str] = mapped_column(sa.String(8), default="payout")  # payout | test
    requested_by: Mapped[str] = mapped_column(sa.String(254), default="system")
    approved_by: Mapped[str | None] = mapped_column(sa.String(254))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


REFUND_METHODS = ("b2c", "by_hand")


class Refund(_B2CTransfer, db.Model):
    """A customer's money sent back: one per payment, ever (the payment's gate is closed with it)."""

    __tablename__ = "refunds"
    __table_args__ = (
        _status_check("state", B2C_STATES, "refund_state_valid"),
        _status_check("method", REFUND_METHODS, "refund_method_valid"),
        sa.CheckConstraint("amount > 0", name="refund_amount_positive"),
        sa.UniqueConstraint("payment_id", name="uq_refund_payment"),
        sa.Index("ix_refunds_state_created", "state", "created_at"),
    )

    payment_id: Mapped[int] = mapped_column(sa.ForeignKey("payments.id"))
    method: Mapped[str] = mapped_column(sa.String(8), default="b2c")
    reason: Mapped[str] = mapped_column(sa.String(300))
    note: Mapped[str | None] = mapped_column(sa.String(300))  # "refund by hand": the owner's words
    requested_by: Mapped[str] = mapped_column(sa.String(254), default="system")

    payment: Mapped[Payment] = relationship()
# --- Issue 17: SMS to customers and alerts to owners (portal/notify) ------------------------------

SMS_KINDS = ("receipt", "resend", "alert")
# queued → sending (claimed, leased) → sent (the provider took it) → delivered | undelivered (its
# delivery report); failed = given up after retries; skipped = never sent (no SMS account, opted
# out, the owner's monthly cap reached), with the reason in last_error.
SMS_STATES = ("queued", "sending", "sent", "delivered", "undelivered", "failed", "skipped")


class SmsMessage(db.Model):
    """The SMS outbox. A receipt row is written in the activation's transaction, once per voucher
    (``dedupe_key``); the notify worker renders, sends and retries it with backoff."""

    __tablename__ = "sms_messages"
    __table_args__ = (
        _status_check("kind", SMS_KINDS, "sms_kind_valid"),
        _status_check("state", SMS_STATES, "sms_state_valid"),
        sa.Index("ix_sms_due", "state", "next_attempt_at"),
        sa.Index("ix_sms_owner_created", "owner_id", "created_at", "id"),  # dashboard list, monthly cap
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # "receipt:<voucher id>" for the one receipt per voucher; unique, so a second insert does nothing.
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    voucher_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vouchers.id"), index=True)
    alert_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owner_alerts.id"))
    phone: Mapped[str] = mapped_column(sa.String(16))  # 2547…, as stored elsewhere; +254… goes to the provider
    language: Mapped[str] = mapped_column(sa.String(2), default="en")
    text: Mapped[str | None] = mapped_column(sa.String(480))  # rendered by the worker before the first send
    state: Mapped[str] = mapped_column(sa.String(12), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    account: Mapped[str | None] = mapped_column(sa.String(8))  # "platform" | "owner": whose provider account sent it
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    provider_status_code: Mapped[int | None]  # 100/101/102 taken; 4xx/5xx refused
    delivery_status: Mapped[str | None] = mapped_column(sa.String(24))  # the report's status word
    delivery_reason: Mapped[str | None] = mapped_column(sa.String(64))
    cost: Mapped[str | None] = mapped_column(sa.String(24))  # as the provider wrote it, "KES 0.8000"
    cost_kes_micro: Mapped[int | None] = mapped_column(sa.BigInteger)  # the same in millionths of a shilling
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SmsDeliveryReport(db.Model):
    """Every delivery report as received (form body), stored before it is matched to a message."""

    __tablename__ = "sms_delivery_reports"
    __table_args__ = (sa.Index("ix_sms_reports_received", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    payload: Mapped[str] = mapped_column(sa.Text)
    remote_addr: Mapped[str | None] = mapped_column(sa.String(45))
    message_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)  # the send's messageId
    status: Mapped[str] = mapped_column(sa.String(10), default="received")  # received|processed|unmatched|rejected
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


ALERT_KINDS = ("router_down", "paybill_failing", "problem_waiting", "payout_failed")


class OwnerAlert(db.Model):
    """One episode of one kind of trouble for one owner: open while it lasts, cleared on recovery.
    ``notified_at`` is when its SMS went out (None: held back by the one-per-hour rule)."""

    __tablename__ = "owner_alerts"
    __table_args__ = (
        _status_check("kind", ALERT_KINDS, "alert_kind_valid"),
        sa.Index("ix_alerts_owner_kind_open", "owner_id", "kind", "cleared_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(sa.String(20))
    detail: Mapped[str] = mapped_column(sa.String(300))  # what is wrong, in the owner's words (never a secret)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    all_clear_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NotifySettings(db.Model):
    """An owner's SMS choices: monthly cap, which alerts, where they go, and optionally their own
    Africa's Talking account (its API key encrypted at rest)."""

    __tablename__ = "notify_settings"

    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    customer_sms: Mapped[bool] = mapped_column(default=True)  # send customers their code by SMS
    monthly_cap: Mapped[int | None]  # SMS per calendar month (Nairobi); None = PORTAL_SMS_MONTHLY_CAP
    alert_phone: Mapped[str | None] = mapped_column(sa.String(12))  # None = the owner's confirmed sign-up phone
    alert_router_down: Mapped[bool] = mapped_column(default=True)
    alert_paybill_failing: Mapped[bool] = mapped_column(default=True)
    alert_problem_waiting: Mapped[bool] = mapped_column(default=True)
    alert_payout_failed: Mapped[bool] = mapped_column(default=True)
    at_username: Mapped[str | None] = mapped_column(sa.String(64))  # the owner's own account, if any
    at_api_key_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    at_sender: Mapped[str | None] = mapped_column(sa.String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    at_api_key = EncryptedField()

    def wants_alert(self, kind: str) -> bool:
        return bool(getattr(self, f"alert_{kind}", False))

"""Settings from the environment: safe when absent, loud when wrong.

Every variable is read here, once. The rest of the code reads ``current_app.config``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

SANDBOX_DARAJA_URL = "https://sandbox.safaricom.co.ke"
PRODUCTION_DARAJA_URL = "https://api.safaricom.co.ke"
DEV_SECRETS_FILE = "dev-secrets.json"


class ConfigError(RuntimeError):
    """The environment cannot run the portal; the message names what to set."""


def load_settings(instance_path: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the app's settings: environment first, then ``overrides`` (tests), then checks."""
    env = os.environ
    settings: dict[str, Any] = {
        "PORTAL_ENV": env.get("PORTAL_ENV", "development"),
        "DATABASE_URL": env.get("DATABASE_URL") or "",
        "SECRET_KEY": env.get("SECRET_KEY") or "",
        "PORTAL_ENCRYPTION_KEYS": env.get("PORTAL_ENCRYPTION_KEYS") or "",
        "PORTAL_BASE_URL": (env.get("PORTAL_BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
        "DARAJA_BASE_URL": (env.get("DARAJA_BASE_URL") or "").rstrip("/"),
        "PORTAL_SCHEDULER": env.get("PORTAL_SCHEDULER", "off"),
        "PORTAL_STK_EXPIRY_S": _int(env, "PORTAL_STK_EXPIRY_S", 300),
        # Where a callback's source address may come from; empty = allow any (the path token still guards).
        "PORTAL_CALLBACK_ALLOWED_IPS": env.get("PORTAL_CALLBACK_ALLOWED_IPS", ""),
        "PORTAL_TRUSTED_PROXIES": _int(env, "PORTAL_TRUSTED_PROXIES", 0),
        "PORTAL_ACTIVATION_LEASE_S": _int(env, "PORTAL_ACTIVATION_LEASE_S", 120),
        "PORTAL_ACTIVATION_THREADS": _int(env, "PORTAL_ACTIVATION_THREADS", 16),
        "PORTAL_ROUTER_CONNECT_TIMEOUT_S": _float(env, "PORTAL_ROUTER_CONNECT_TIMEOUT_S", 5.0),
        "PORTAL_ROUTER_COMMAND_TIMEOUT_S": _float(env, "PORTAL_ROUTER_COMMAND_TIMEOUT_S", 10.0),
        "PORTAL_DARAJA_TIMEOUT_S": _float(env, "PORTAL_DARAJA_TIMEOUT_S", 10.0),
        # After this many failures in a row, purchases fail fast for the cool-off, then one trial.
        "PORTAL_DARAJA_BREAKER_FAILURES": _int(env, "PORTAL_DARAJA_BREAKER_FAILURES", 5),
        "PORTAL_DARAJA_BREAKER_COOL_OFF_S": _float(env, "PORTAL_DARAJA_BREAKER_COOL_OFF_S", 30.0),
        "PORTAL_RECONCILE_AFTER_S": _int(env, "PORTAL_RECONCILE_AFTER_S", 30),
        # An expired initiation is still STK-queried, these seconds apart (the last step repeats),
        # until Daraja answers or PORTAL_LATE_QUERY_GIVE_UP_S have passed since its push.
        "PORTAL_LATE_QUERY_BACKOFF_S": _seconds_list(env, "PORTAL_LATE_QUERY_BACKOFF_S", (60, 300, 1800, 3600)),
        "PORTAL_LATE_QUERY_GIVE_UP_S": _int(env, "PORTAL_LATE_QUERY_GIVE_UP_S", 86400),
        # How many days after it was paid an unmatched payment can still be claimed by its receipt.
        "PORTAL_RECEIPT_CLAIM_DAYS": _int(env, "PORTAL_RECEIPT_CLAIM_DAYS", 7),
        # Run every scheduled job this often instead of its own interval (tests and demos).
        "PORTAL_JOB_TICK_S": _float(env, "PORTAL_JOB_TICK_S", 0.0),
        # Customer rate limits (pushes per phone/device, code guesses); off only for load tests.
        "PORTAL_RATE_LIMITS_ENABLED": env.get("PORTAL_RATE_LIMITS_ENABLED", "1").lower() not in ("0", "false", "off"),
        # PEM of the CA that signed the portal's https certificate: pull routers' setup scripts import it.
        "PORTAL_ROUTER_CA_FILE": env.get("PORTAL_ROUTER_CA_FILE", ""),
        "TESTING": False,
    }
    settings.update(_owner_self_service(env))
    settings.update(_tunnel(env))
    settings.update(_money_settings(env))
    settings.update(_sms_settings(env))
    settings.update(overrides or {})
    _check_tunnel(settings)
    if settings["PORTAL_ROUTER_CA_FILE"] and not os.path.isfile(settings["PORTAL_ROUTER_CA_FILE"]):
        raise ConfigError(f"PORTAL_ROUTER_CA_FILE names {settings['PORTAL_ROUTER_CA_FILE']}, which is not a file")
    settings["IS_PRODUCTION"] = settings["PORTAL_ENV"] == "production"
    if settings["IS_PRODUCTION"]:
        _check_production(settings)
    else:
        _fill_development_defaults(settings, instance_path)
    _mail_settings_for_flask_mail(settings)
    settings["SQLALCHEMY_DATABASE_URI"] = _normalise_database_url(settings["DATABASE_URL"])
    settings["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(settings["SQLALCHEMY_DATABASE_URI"])
    settings["ENCRYPTION_KEYS"] = _parse_keys(settings["PORTAL_ENCRYPTION_KEYS"])
    settings["MAX_CONTENT_LENGTH"] = 64 * 1024
    settings["SESSION_COOKIE_HTTPONLY"] = True
    settings["SESSION_COOKIE_SAMESITE"] = "Lax"
    settings["SESSION_COOKIE_SECURE"] = settings["IS_PRODUCTION"]
    settings["WTF_CSRF_TIME_LIMIT"] = None  # a captive customer may sit on the plans page for long
    return settings


def _owner_self_service(env: Mapping[str, str]) -> dict[str, Any]:
    """Owner sign-up and password reset by e-mail (issue 14). Mail goes out over SMTP."""
    return {
        # "1" lets anyone create an owner account at /dashboard/sign-up (the phone is confirmed by a code).
        "PORTAL_OPEN_SIGNUP": _flag(env, "PORTAL_OPEN_SIGNUP"),
        "PORTAL_MAIL_SERVER": env.get("PORTAL_MAIL_SERVER", ""),  # empty: no e-mail (no sign-up, no reset)
        "PORTAL_MAIL_PORT": _int(env, "PORTAL_MAIL_PORT", 587),
        "PORTAL_MAIL_USE_TLS": _flag(env, "PORTAL_MAIL_USE_TLS", default=True),  # STARTTLS
        "PORTAL_MAIL_USE_SSL": _flag(env, "PORTAL_MAIL_USE_SSL"),  # TLS from the first byte (port 465)
        "PORTAL_MAIL_USERNAME": env.get("PORTAL_MAIL_USERNAME", ""),
        "PORTAL_MAIL_PASSWORD": env.get("PORTAL_MAIL_PASSWORD", ""),
        "PORTAL_MAIL_SENDER": env.get("PORTAL_MAIL_SENDER", "Wi-Fi portal <no-reply@localhost>"),
        "PORTAL_MAIL_TIMEOUT_S": _float(env, "PORTAL_MAIL_TIMEOUT_S", 10.0),
    }


def _tunnel(env: Mapping[str, str]) -> dict[str, Any]:
    """The WireGuard management hub (issue 13). Without PORTAL_TUNNEL_ENDPOINT there is no tunnel."""
    return {
        "PORTAL_TUNNEL_ENDPOINT": env.get("PORTAL_TUNNEL_ENDPOINT", "").strip(),  # public host:port routers dial
        "PORTAL_TUNNEL_NETWORK": env.get("PORTAL_TUNNEL_NETWORK", "10.77.0.0/16").strip(),  # the hub takes the first address
        "PORTAL_TUNNEL_INTERFACE": env.get("PORTAL_TUNNEL_INTERFACE", "wg-portal").strip(),
        "PORTAL_TUNNEL_SYNC_INTERVAL_S": _float(env, "PORTAL_TUNNEL_SYNC_INTERVAL_S", 3.0),
        # WireGuard renews a session every 2 minutes while keepalives flow: older than this is stale.
        "PORTAL_TUNNEL_STALE_S": _int(env, "PORTAL_TUNNEL_STALE_S", 180),
    }


_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_=+.-]{1,15}$")


def _check_tunnel(settings: dict[str, Any]) -> None:
    endpoint = settings["PORTAL_TUNNEL_ENDPOINT"]
    settings["TUNNEL_ENABLED"] = bool(endpoint)
    if not endpoint:
        return
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"PORTAL_TUNNEL_ENDPOINT must be host:port (the UDP port routers dial), got {endpoint!r}")
    settings["TUNNEL_ENDPOINT_HOST"], settings["TUNNEL_LISTEN_PORT"] = host.strip("[]"), int(port)
    try:
        network = ipaddress.ip_network(settings["PORTAL_TUNNEL_NETWORK"], strict=True)
    except ValueError as exc:
        raise ConfigError(f"PORTAL_TUNNEL_NETWORK must be an IPv4 network such as 10.77.0.0/16: {exc}") from exc
    if network.version != 4 or network.prefixlen > 29:
        raise ConfigError("PORTAL_TUNNEL_NETWORK must be an IPv4 network of /29 or larger")
    if not _INTERFACE_NAME.match(settings["PORTAL_TUNNEL_INTERFACE"]):
        raise ConfigError("PORTAL_TUNNEL_INTERFACE must be 1-15 letters, digits or _=+.- (a Linux interface name)")


def _money_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Issue 15: the owner ledger, B2C payouts and refunds."""
    percent = _float(env, "PORTAL_COMMISSION_PERCENT", 5.0)
    if not 0 <= percent <= 100:
        raise ConfigError(f"PORTAL_COMMISSION_PERCENT must be between 0 and 100, not {percent}")
    return {
        # The platform's cut of a sale, fixed on each sale when it is posted (owners may have their own).
        "PORTAL_COMMISSION_PERCENT": percent,
        # Safaricom's M-Pesa public certificate per environment (SecurityCredential = the initiator
        # password RSA-encrypted with it); a paybill's own --certificate overrides it.
        "PORTAL_B2C_CERT_SANDBOX": env.get("PORTAL_B2C_CERT_SANDBOX", ""),
        "PORTAL_B2C_CERT_PRODUCTION": env.get("PORTAL_B2C_CERT_PRODUCTION", ""),
        # Scheduled payouts: owners whose balance is at least this much, on this weekday (0 = Monday).
        "PORTAL_PAYOUT_MINIMUM": _int(env, "PORTAL_PAYOUT_MINIMUM", 500),
        "PORTAL_PAYOUT_WEEKDAY": _int(env, "PORTAL_PAYOUT_WEEKDAY", 0),
        # "1": an admin approves every payout before it is sent.
        "PORTAL_PAYOUT_REQUIRES_APPROVAL": _flag(env, "PORTAL_PAYOUT_REQUIRES_APPROVAL", default=True),
        # B2C requests per second the platform's Daraja app may make (the batch paces itself to it).
        "PORTAL_B2C_REQUESTS_PER_S": _float(env, "PORTAL_B2C_REQUESTS_PER_S", 5.0),
        "PORTAL_B2C_SEND_THREADS": _int(env, "PORTAL_B2C_SEND_THREADS", 8),  # payouts in flight at once
        # A sent transfer with no result after this long is asked about with Transaction Status.
        "PORTAL_B2C_RESULT_WAIT_S": _int(env, "PORTAL_B2C_RESULT_WAIT_S", 120),
        # A sent transfer M-Pesa still has no record of after this long may be declared not sent.
        "PORTAL_B2C_NOT_FOUND_AFTER_S": _int(env, "PORTAL_B2C_NOT_FOUND_AFTER_S", 86400),
    }
SMS_LIVE_URL = "https://api.africastalking.com"
SMS_SANDBOX_URL = "https://api.sandbox.africastalking.com"  # Africa's Talking's, for username "sandbox"


def _sms_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """SMS to customers and alerts to owners through Africa's Talking (issue 17). Without a
    username no SMS is sent (the dashboard says so). PORTAL_SMS_BASE_URL overrides the provider's
    host the way DARAJA_BASE_URL does, so a stand-in speaking its HTTP API can take its place."""
    return {
        "PORTAL_SMS_USERNAME": env.get("PORTAL_SMS_USERNAME", "").strip(),
        "PORTAL_SMS_API_KEY": env.get("PORTAL_SMS_API_KEY", "").strip(),  # a secret: never logged or stored
        "PORTAL_SMS_SENDER": env.get("PORTAL_SMS_SENDER", "").strip(),  # registered sender id; empty = provider's
        "PORTAL_SMS_BASE_URL": (env.get("PORTAL_SMS_BASE_URL") or "").rstrip("/"),
        "PORTAL_SMS_TIMEOUT_S": _float(env, "PORTAL_SMS_TIMEOUT_S", 10.0),
        # Messages per second the sender allows itself (the provider publishes no figure; stay polite).
        "PORTAL_SMS_RATE_PER_S": _float(env, "PORTAL_SMS_RATE_PER_S", 20.0),
        "PORTAL_SMS_MONTHLY_CAP": _int(env, "PORTAL_SMS_MONTHLY_CAP", 2000),  # per owner, unless they set theirs
    }


def sms_base_url(settings: Mapping[str, Any], username: str) -> str:
    """The provider host: the override, else Africa's Talking's sandbox for "sandbox", else live."""
    if settings.get("PORTAL_SMS_BASE_URL"):
        return str(settings["PORTAL_SMS_BASE_URL"])
    return SMS_SANDBOX_URL if username == "sandbox" else SMS_LIVE_URL


def _mail_settings_for_flask_mail(settings: dict[str, Any]) -> None:
    # Flask-Mail reads MAIL_*; ours are PORTAL_MAIL_* like every other setting.
    settings.update(
        MAIL_SERVER=settings["PORTAL_MAIL_SERVER"] or "localhost",
        MAIL_PORT=settings["PORTAL_MAIL_PORT"],
        MAIL_USE_TLS=settings["PORTAL_MAIL_USE_TLS"] and not settings["PORTAL_MAIL_USE_SSL"],
        MAIL_USE_SSL=settings["PORTAL_MAIL_USE_SSL"],
        MAIL_USERNAME=settings["PORTAL_MAIL_USERNAME"] or None,
        MAIL_PASSWORD=settings["PORTAL_MAIL_PASSWORD"] or None,
        MAIL_DEFAULT_SENDER=settings["PORTAL_MAIL_SENDER"],
        MAIL_SUPPRESS_SEND=False,  # Flask-Mail would drop every message under TESTING; tests use a real SMTP server
    )


def _flag(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _check_production(settings: dict[str, Any]) -> None:
    if not settings["SECRET_KEY"]:
        raise ConfigError("SECRET_KEY is not set; production will not run on a generated development key")
    if not settings["PORTAL_ENCRYPTION_KEYS"]:
        raise ConfigError(
            "PORTAL_ENCRYPTION_KEYS is not set; generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
    if not settings["PORTAL_BASE_URL"].startswith("https://"):
        raise ConfigError("PORTAL_BASE_URL must be an https:// URL in production (Daraja posts callbacks to it)")
    if not settings["DATABASE_URL"] or settings["DATABASE_URL"].startswith("sqlite"):
        raise ConfigError("DATABASE_URL must point at a real database (PostgreSQL) in production")
    if settings["PORTAL_SMS_USERNAME"] and not settings["PORTAL_SMS_API_KEY"]:
        raise ConfigError("PORTAL_SMS_USERNAME is set without PORTAL_SMS_API_KEY; set both, or neither to send no SMS")
    if settings["PORTAL_OPEN_SIGNUP"] and not settings["PORTAL_MAIL_SERVER"]:
        raise ConfigError("PORTAL_OPEN_SIGNUP needs PORTAL_MAIL_SERVER: sign-up codes and password resets go by e-mail")


def _fill_development_defaults(settings: dict[str, Any], instance_path: str) -> None:
    if not settings["DATABASE_URL"]:
        settings["DATABASE_URL"] = "sqlite:///" + str(Path(instance_path) / "portal.db")
    if settings["SECRET_KEY"] and settings["PORTAL_ENCRYPTION_KEYS"]:
        return
    generated = _development_secrets(instance_path)
    settings["SECRET_KEY"] = settings["SECRET_KEY"] or generated["SECRET_KEY"]
    settings["PORTAL_ENCRYPTION_KEYS"] = settings["PORTAL_ENCRYPTION_KEYS"] or generated["PORTAL_ENCRYPTION_KEYS"]


def _development_secrets(instance_path: str) -> dict[str, str]:
    """Generated once and kept in the instance folder, so restarts keep sessions and can decrypt."""
    path = Path(instance_path) / DEV_SECRETS_FILE
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {"SECRET_KEY": secrets.token_urlsafe(48), "PORTAL_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def _parse_keys(raw: str) -> list[bytes]:
    keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
    for key in keys:
        try:
            Fernet(key)
        except ValueError as exc:
            raise ConfigError("PORTAL_ENCRYPTION_KEYS holds a value that is not a Fernet key") from exc
    if not keys:
        raise ConfigError("PORTAL_ENCRYPTION_KEYS is empty")
    return keys


def _normalise_database_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgres URLs would ask SQLAlchemy for psycopg2.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several threads (web, activation worker, scheduler) share one file; wait for the lock
        # rather than fail, and allow the connection pool to hand connections across threads.
        return {"connect_args": {"timeout": 15, "check_same_thread": False}}
    # No pre-ping: it costs a round trip on every checkout (several per webhook). A connection
    # that died with a database restart fails once; webhooks then keep the raw body for the
    # reprocessing job, and pages are retried by the customer. Recycling bounds idle age.
    return {"pool_pre_ping": False, "pool_recycle": 1800, "pool_size": 10, "max_overflow": 10}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _seconds_list(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        steps = tuple(int(part) for part in raw.split(","))
    except ValueError as exc:
        raise ConfigError(f"{name} must be whole seconds separated by commas, got {raw!r}") from exc
    if any(step <= 0 for step in steps):
        raise ConfigError(f"{name} steps must be more than 0 seconds, got {raw!r}")
    return steps

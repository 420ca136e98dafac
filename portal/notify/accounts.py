"""Whose Africa's Talking account sends an owner's messages, and the owner's SMS settings.

The platform's account (PORTAL_SMS_USERNAME / PORTAL_SMS_API_KEY) by default; an owner may give
their own username and API key instead (the key encrypted at rest, shown back only as "set").
Without either, nothing is sent and the dashboard says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from ..core.config import sms_base_url
from ..core.extensions import db
from ..models import NotifySettings, User
from .provider import SmsAccount


@dataclass(frozen=True)
class SmsStatus:
    """What the dashboard says about SMS for one owner."""

    platform_configured: bool
    own_account: str | None  # the owner's own username, when they gave one
    sending: bool  # some account will send this owner's messages
    account: str | None  # "owner" | "platform" | None


def settings_for(owner_id: int) -> NotifySettings:
    """The owner's settings row (defaults when they never saved any; not added to the session)."""
    found = db.session.get(NotifySettings, owner_id)
    return (
        found
        if found is not None
        else NotifySettings(
            owner_id=owner_id,
            customer_sms=True,
            alert_router_down=True,
            alert_paybill_failing=True,
            alert_problem_waiting=True,
            alert_payout_failed=True,
        )
    )


def platform_account() -> SmsAccount | None:
    config = current_app.config
    username = config["PORTAL_SMS_USERNAME"]
    if not username or not config["PORTAL_SMS_API_KEY"]:
        return None
    return SmsAccount(
        username, config["PORTAL_SMS_API_KEY"], config["PORTAL_SMS_SENDER"] or None, sms_base_url(config, username)
    )


def account_for(settings: NotifySettings) -> tuple[SmsAccount | None, str | None]:
    """The account that sends for this owner and which it is ("owner" or "platform")."""
    if settings.at_username and settings.at_api_key_encrypted:
        own = SmsAccount(
            settings.at_username,
            settings.at_api_key or "",
            settings.at_sender or None,
            sms_base_url(current_app.config, settings.at_username),
        )
        return own, "owner"
    platform = platform_account()
    return (platform, "platform") if platform else (None, None)


def sms_status(owner_id: int) -> SmsStatus:
    settings = settings_for(owner_id)
    _, which = account_for(settings)
    return SmsStatus(platform_account() is not None, settings.at_username, which is not None, which)


def monthly_cap(settings: NotifySettings) -> int:
    return settings.monthly_cap if settings.monthly_cap is not None else current_app.config["PORTAL_SMS_MONTHLY_CAP"]


def alert_phone(settings: NotifySettings, owner: User) -> str | None:
    """Where the owner's alerts go: the number they chose, else their confirmed sign-up phone."""
    if settings.alert_phone:
        return settings.alert_phone
    return owner.phone if owner.phone and owner.phone_confirmed_at else None


def save_settings(owner_id: int, **values: object) -> NotifySettings:
    """Update the owner's settings; ``at_api_key`` None keeps the stored key, "" removes it. Commits."""
    settings = db.session.get(NotifySettings, owner_id)
    if settings is None:
        settings = settings_for(owner_id)
        db.session.add(settings)
    api_key = values.pop("at_api_key", None)
    for name, value in values.items():
        setattr(settings, name, value)
    if api_key == "":
        settings.at_api_key = None
    elif api_key is not None:
        settings.at_api_key = str(api_key)
    if not settings.at_username:
        settings.at_username, settings.at_api_key, settings.at_sender = None, None, None
    db.session.commit()
    return settings

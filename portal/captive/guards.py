"""Which rate-limit buckets a customer request counts against, and the words when one is full.

A device is the MAC the router handed over (else its hotspot IP, else the client address). These
come from the browser and can be forged, so every device limit is paired with one that cannot be
dodged that way: the phone number for pushes (Daraja's own one-push-per-minute rule), and the client
address (one router's public address, shared by all its customers) with a high ceiling for codes.
"""

from __future__ import annotations

from ..core.rate_limits import (
    CODE_TRIES_PER_CLIENT,
    CODE_TRIES_PER_DEVICE,
    PUSH_PER_CLIENT_HOUR,
    PUSH_PER_DEVICE_HOUR,
    PUSH_PER_PHONE_HOUR,
    PUSH_PER_PHONE_MINUTE,
    Limit,
)
from ..hotspot.login_context import HotspotContext


def device_of(ctx: HotspotContext, client: str | None) -> str:
    return ctx.mac or ctx.ip or client or "unknown"


def push_checks(msisdn: str, ctx: HotspotContext, client: str | None) -> list[tuple[str, Limit]]:
    return [
        (f"push:phone:{msisdn}", PUSH_PER_PHONE_MINUTE),
        (f"push:phone:{msisdn}", PUSH_PER_PHONE_HOUR),
        (f"push:device:{device_of(ctx, client)}", PUSH_PER_DEVICE_HOUR),
        (f"push:client:{client or 'unknown'}", PUSH_PER_CLIENT_HOUR),
    ]


def code_checks(kind: str, ctx: HotspotContext, client: str | None) -> list[tuple[str, Limit]]:
    """``kind`` is "voucher" or "receipt": each has its own allowance per device."""
    return [
        (f"{kind}:device:{device_of(ctx, client)}", CODE_TRIES_PER_DEVICE),
        (f"{kind}:client:{client or 'unknown'}", CODE_TRIES_PER_CLIENT),
    ]

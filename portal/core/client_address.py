"""The client's address as our own proxies saw it: one rule for webhooks, dashboard and captive pages."""

from __future__ import annotations

from flask import Request, current_app, request


def caller_address(req: Request, trusted_proxies: int) -> str | None:
    """The client address. X-Forwarded-For is believed only for as many hops as our own proxies add."""
    if trusted_proxies > 0:
        forwarded = [p.strip() for p in req.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
        if len(forwarded) >= trusted_proxies:
            return forwarded[-trusted_proxies]
    return req.remote_addr


def client_address() -> str | None:
    """The current request's client address under ``PORTAL_TRUSTED_PROXIES``."""
    return caller_address(request, current_app.config["PORTAL_TRUSTED_PROXIES"])

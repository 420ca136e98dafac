"""Who is calling: the caller's address behind our own proxies, and the optional allow list."""

from __future__ import annotations

import ipaddress

from flask import Request


def caller_address(request: Request, trusted_proxies: int) -> str | None:
    """The client address. X-Forwarded-For is believed only for as many hops as our own proxies add."""
    if trusted_proxies > 0:
        forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
        if len(forwarded) >= trusted_proxies:
            return forwarded[-trusted_proxies]
    return request.remote_addr


def is_allowed_source(address: str | None, allow_list: str) -> bool:
    """Empty allow list = every source (the secret path token still authenticates)."""
    entries = [e.strip() for e in allow_list.split(",") if e.strip()]
    if not entries:
        return True
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(entry, strict=False) for entry in entries)

"""Who may call: the optional allow list (the caller's address comes from core.client_address)."""

from __future__ import annotations

import ipaddress


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

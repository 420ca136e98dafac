"""The router login page's variables, checked before they are kept or echoed into a page."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from ..hotspot.login_context import HotspotContext

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
_OCTAL_ESCAPES = re.compile(r"^(\\[0-7]{3}){1,64}$")
PARAM_NAMES = ("mac", "ip", "link-login-only", "link-orig", "chap-id", "chap-challenge")


def context_from(params: Mapping[str, str]) -> HotspotContext:
    """Drop anything that does not look like what a RouterOS hotspot sends (no javascript: URLs)."""
    return HotspotContext(
        mac=_mac(params.get("mac")),
        ip=_ip(params.get("ip")),
        link_login_only=_http_url(params.get("link-login-only")),
        link_orig=_http_url(params.get("link-orig")),
        chap_id=_octal(params.get("chap-id")),
        chap_challenge=_octal(params.get("chap-challenge")),
    )


def as_params(ctx: HotspotContext) -> dict[str, str]:
    pairs = {
        "mac": ctx.mac,
        "ip": ctx.ip,
        "link-login-only": ctx.link_login_only,
        "link-orig": ctx.link_orig,
        "chap-id": ctx.chap_id,
        "chap-challenge": ctx.chap_challenge,
    }
    return {k: v for k, v in pairs.items() if v}


def from_form(form: Mapping[str, str]) -> dict[str, str]:
    """The router's variables as a customer form posts them back (hidden inputs named with
    underscores, since the hyphenated names are not valid form field names everywhere)."""
    return {name: form.get(name.replace("-", "_"), "") for name in PARAM_NAMES}


def as_hidden_inputs(ctx: HotspotContext) -> list[tuple[str, str]]:
    """(input name, value) for every known variable: what each customer form carries along."""
    return [(name.replace("-", "_"), value) for name, value in as_params(ctx).items()]


def hidden_inputs_html(ctx: HotspotContext, csrf_token: str) -> Markup:
    """The CSRF token and the router's variables as hidden inputs, built once per page: each of
    the page's three forms carries the same block."""
    inputs = [("csrf_token", csrf_token), *as_hidden_inputs(ctx)]
    return Markup("".join(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in inputs))


def router_error(params: Mapping[str, str]) -> str | None:
    """The router's own `error` variable, shortened; shown escaped."""
    text = (params.get("error") or "").strip()
    return text[:200] or None


def _mac(value: str | None) -> str | None:
    return value.upper().replace("-", ":") if value and _MAC.match(value) else None


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def _http_url(value: str | None) -> str | None:
    if not value or len(value) > 500 or any(c in value for c in "\"'<> \t\r\n"):
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def _octal(value: str | None) -> str | None:
    return value if value and _OCTAL_ESCAPES.match(value) else None

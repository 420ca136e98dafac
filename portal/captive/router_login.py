"""Logging the browser in at the router, and the router's refusals in plain words.

CHAP is computed here, server-side, so it works with JavaScript off: RouterOS hands over
chap-id and chap-challenge as octal escapes (``\\371``), one byte each, and expects
md5(chap-id + password + chap-challenge) in hex as the password. MikroTik's own login.html does
this in JavaScript (md5.js) only because the router cannot compute anything for its page; the
portal knows the challenge, so a script would add weight and no ability.

Mixed content: the portal may be served over https while ``link-login-only`` is the router's
plain http URL. A form submitted from an https page to an http action gets Chrome's full-page
"form is not secure" warning, but a top-level navigation (a link, ``location.replace``) does not.
So an https page sends the browser to the router with a GET link (the router's servlet takes
username/password/dst as query parameters); an http page, or a router with https login, gets a
POST form, which keeps the credentials out of the URL. With CHAP the URL carries only a hash
bound to that device's challenge; with PAP it carries the voucher code, which is already on screen.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from ..hotspot.login_context import HotspotContext

log = logging.getLogger(__name__)

_ESCAPE = re.compile(r"\\([0-7]{3})")
# Where a hotspot's own address can be: RFC 1918, unique-local and link-local. Listed, because
# ipaddress's is_private also counts documentation and other reserved ranges that can be routed.
_ROUTER_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10")
)


def decode_octal_escapes(text: str) -> bytes:
    return bytes(int(m, 8) for m in _ESCAPE.findall(text))


def chap_password(chap_id: str, password: str, chap_challenge: str) -> str:
    data = decode_octal_escapes(chap_id) + password.encode() + decode_octal_escapes(chap_challenge)
    return hashlib.md5(data).hexdigest()  # noqa: S324  (MikroTik's CHAP is MD5 by definition)


def login_form_fields(ctx: HotspotContext, code: str) -> dict[str, str] | None:
    """Fields for the router's login servlet; None when the router gave no login link."""
    if not ctx.link_login_only:
        return None
    if ctx.chap_id and ctx.chap_challenge:
        password = chap_password(ctx.chap_id, code, ctx.chap_challenge)
    else:
        password = code
    fields = {"username": code, "password": password, "popup": "false"}
    if ctx.link_orig:
        fields["dst"] = ctx.link_orig
    return fields


@dataclass(frozen=True)
class RouterLogin:
    action: str  # the router's link-login-only
    fields: dict[str, str]
    method: str  # "post" (a form) or "get" (a link: https page → http router)

    @property
    def url(self) -> str:
        return f"{self.action}{'&' if '?' in self.action else '?'}{urlencode(self.fields)}"


def is_router_login_url(url: str, hotspot_dns_name: str | None, *, allow_loopback: bool = False) -> bool:
    """Whether ``url`` is the router's own hotspot login: its configured DNS name, or a private or
    link-local IP. A printed QR code can carry any link-login-only, so a public host (or a trick
    that makes a browser go to one: userinfo, backslashes, odd schemes) would hand the customer's
    code to someone else's server and log the attacker's device in instead."""
    if any(c in url for c in "\\@\t\r\n "):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("http", "https") or not host or parts.username is not None:
        return False
    if hotspot_dns_name and host == hotspot_dns_name.lower().rstrip("."):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if allow_loopback and address.is_loopback:  # development: the sandbox hotspot listens on 127.0.0.1
        return True
    return any(address in network for network in _ROUTER_NETWORKS)


def router_login(
    ctx: HotspotContext, code: str, *, page_is_https: bool, hotspot_dns_name: str | None = None, router_label: str = "",
    allow_loopback: bool = False,
) -> RouterLogin | None:
    """The browser's login at the router; None when there is no login link, or it is not the
    router's own (the customer is then shown the code and told to enter it on the hotspot page)."""
    fields = login_form_fields(ctx, code)
    if fields is None or ctx.link_login_only is None:
        return None
    if not is_router_login_url(ctx.link_login_only, hotspot_dns_name, allow_loopback=allow_loopback):
        log.warning("router %s: link-login-only %r is not the router's own address; no auto-login",
                    router_label, ctx.link_login_only[:120])
        return None
    insecure_target = ctx.link_login_only.lower().startswith("http://")
    method = "get" if page_is_https and insecure_target else "post"
    return RouterLogin(ctx.link_login_only, fields, method)


# errors.txt texts RouterOS puts in $(error) (reference/mikrotik.md §4.3) → a key into wording.WORDS.
_ROUTER_ERRORS = (
    ("invalid username or password", "rerr_invalid"),
    ("not allowed to log in from this mac", "rerr_mac"),
    ("no more sessions are allowed", "rerr_sessions"),
    ("uptime limit", "rerr_uptime"),
    ("traffic limit", "rerr_traffic"),
    ("challenge response", "rerr_chap"),
    ("already authorizing", "rerr_busy"),
    ("radius server is not responding", "rerr_radius"),
    ("cannot assign ip address", "rerr_pool"),
    ("you are not logged in", "rerr_not_logged_in"),
)


def router_error_key(text: str | None) -> str | None:
    """The wording key for the router's ``error`` variable; ``rerr_other`` for texts we do not know."""
    if not text:
        return None
    lowered = text.lower()
    return next((key for marker, key in _ROUTER_ERRORS if marker in lowered), "rerr_other")

"""Logging the browser in at the router: the fields for the hotspot's login form.

CHAP is computed here, server-side, so it works with JavaScript off: RouterOS hands over
chap-id and chap-challenge as octal escapes (``\\371``), one byte each, and expects
md5(chap-id + password + chap-challenge) in hex as the password.
"""

from __future__ import annotations

import hashlib
import re

from ..payments import HotspotContext

_ESCAPE = re.compile(r"\\([0-7]{3})")


def decode_octal_escapes(text: str) -> bytes:
    return bytes(int(m, 8) for m in _ESCAPE.findall(text))


def chap_password(chap_id: str, password: str, chap_challenge: str) -> str:
    data = decode_octal_escapes(chap_id) + password.encode() + decode_octal_escapes(chap_challenge)
    return hashlib.md5(data).hexdigest()  # noqa: S324  (MikroTik's CHAP is MD5 by definition)


def login_form_fields(ctx: HotspotContext, code: str) -> dict[str, str] | None:
    """Hidden fields for a form posted to ``ctx.link_login_only``; None when the router gave no login link."""
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

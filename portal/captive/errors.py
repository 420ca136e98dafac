"""The customer's error page: tiny, in the customer's language."""

from __future__ import annotations

from flask import g, render_template, request

from .i18n import choose_language, texts


def render_error_page(code: int, heading: str, message: str):  # type: ignore[no-untyped-def]
    g.lang = choose_language(request)
    g.t = texts(g.lang)
    if code == 404:
        heading, message = g.t["not_found"], ""
    elif code >= 500:
        heading, message = g.t["error_page"], ""
    return render_template("captive/error.html", heading=heading, message=message), code

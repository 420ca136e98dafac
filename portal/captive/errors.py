"""The customer's error page: tiny, in the customer's language."""

from __future__ import annotations

from flask import g, render_template, request

from .language import choose_language
from .wording import say


def render_error_page(code: int, heading: str, message: str):  # type: ignore[no-untyped-def]
    g.lang = choose_language(request)
    if code == 404:
        heading, message = say("not_found"), ""
    elif code >= 500:
        heading, message = say("error_page"), ""
    return render_template("captive/error.html", heading=heading, message=message), code

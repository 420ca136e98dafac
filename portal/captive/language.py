"""Which language a customer page speaks: ``?lang=``, then the cookie, then the browser's Accept-Language.

The words themselves are gettext catalogs (``translations/``, Flask-Babel); ``create_app`` hands
Flask-Babel ``g.lang`` as the locale, which the captive blueprint sets before each request.
"""

from __future__ import annotations

from flask import Flask, Request, g
from flask_babel import get_translations

LANGUAGES = ("en", "sw")
COOKIE = "lang"
# Each language's name in itself, for the switch in the footer (never translated).
NAMES = {"en": "English", "sw": "Kiswahili"}


def choose_language(request: Request) -> str:
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        return asked
    saved = request.cookies.get(COOKIE)
    if saved in LANGUAGES:
        return saved
    best = request.accept_languages.best_match(LANGUAGES, default="en")
    return best or "en"


def other_language(lang: str) -> str:
    return "en" if lang == "sw" else "sw"


def page_translations():  # type: ignore[no-untyped-def]
    """This request's catalog, looked up once: a page says ``_()`` a few dozen times, and
    Flask-Babel resolves the context, locale and domain again on every call."""
    try:
        return g._page_translations
    except AttributeError:
        g._page_translations = get_translations()
        return g._page_translations


def install_page_gettext(app: Flask) -> None:
    """``_``/``gettext``/``ngettext`` in templates (Jinja's i18n extension). Old style on purpose:
    a translation is plain text that the page escapes like any value (a .po cannot inject markup),
    and no ``%`` formatting runs on every call; our placeholders are ``{name}``, filled with ``.format``."""
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda text: page_translations().ugettext(text),
        ngettext=lambda one, many, n: page_translations().ungettext(one, many, n),
        newstyle=False,
    )

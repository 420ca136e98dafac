"""The hotspot voucher portal. ``create_app`` is the only way in; importing does nothing.

Layout: ``core`` (plumbing), ``money``, ``hotspot``, ``owners`` (services by area), ``mpesa`` and
``routeros`` (clients), ``captive``, ``dashboard``, ``webhooks`` (blueprints), ``sandbox`` (local
stand-ins). Imports flow blueprints → services → clients and models; tests/test_layout.py checks it.
Models stay in one file (``models.py``; its docstring says why).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, g

from .core.config import load_settings

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """settings → extensions → blueprints → error handlers → CLI → background workers."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    app.config.update(load_settings(app.instance_path, overrides))
    _configure_logging(app)
    _init_extensions(app)
    _register_blueprints(app)
    _register_cli(app)
    _start_background_work(app)
    return app


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _init_extensions(app: Flask) -> None:
    from .core import database
    from .core.extensions import babel, csrf, db, login_manager, mail, migrate

    db.init_app(app)
    mail.init_app(app)
    database.install_sqlite_pragmas(app)
    migrate.init_app(app, db, directory="portal/migrations")
    csrf.init_app(app)
    babel.init_app(app, default_translation_directories=str(TRANSLATIONS), locale_selector=_page_language)
    # Form errors are our own sentences (captive.wording); WTForms' catalogs would only cost time.
    app.config.setdefault("WTF_I18N_ENABLED", False)
    # Only dashboard templates read current_user (they get it from the dashboard blueprint), so a
    # customer page never loads a user.
    login_manager.init_app(app, add_context_processor=False)
    from .webhooks.sessions import NoSessionForWebhooks

    app.session_interface = NoSessionForWebhooks()
    from .hotspot.catalogue import install_cache_invalidation
    from .owners import accounts  # noqa: F401  (registers the user loader)

    install_cache_invalidation()


def _page_language() -> str:
    # The captive blueprint chooses the customer's language (?lang=, cookie, browser) into g.lang.
    return g.get("lang", "en")


def _register_blueprints(app: Flask) -> None:
    from .captive import bp as captive_bp
    from .core.extensions import csrf
    from .core.health import bp as health_bp
    from .dashboard import bp as dashboard_bp
    from .webhooks import bp as webhooks_bp
    from .webhooks.router_sync import bp as router_sync_bp

    csrf.exempt(webhooks_bp)  # Daraja cannot send a CSRF token; the secret path authenticates it
    csrf.exempt(router_sync_bp)  # a router's scheduler neither; its bearer token authenticates it
    app.register_blueprint(captive_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(router_sync_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(health_bp)
    from .captive.errors import render_error_page
    from .core import errors, security

    errors.register(app, customer_page=render_error_page)
    security.install(app)


def _register_cli(app: Flask) -> None:
    from .cli import register_commands
    from .jobs import JOBS

    register_commands(app)
    # What the overview's scheduler health compares each job's last run with.
    app.extensions["portal_job_intervals"] = {name: interval for name, (_, interval) in JOBS.items()}


def _start_background_work(app: Flask) -> None:
    # The activation worker wakes on each recorded payment; the scheduler runs the periodic jobs.
    # Both start only when asked (inline web process, or `flask worker`), never in tests by default.
    if app.config["PORTAL_SCHEDULER"] == "inline":
        from .jobs import start_background

        start_background(app)

"""Owner dashboard blueprint: one views module per page group; access rules in access.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, request, url_for
from werkzeug.routing import BuildError

from ..owners.scope import NAIROBI

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

# (endpoint, label, page key). The page key highlights the nav item; see base.html.
NAV_ITEMS = (
    ("dashboard.overview", "Overview", "overview"),
    ("dashboard.routers", "Routers", "routers"),
    ("dashboard.paybills", "Paybills", "paybills"),
    ("dashboard.plans", "Plans", "plans"),
    ("dashboard.payments", "Payments", "payments"),
    ("dashboard.problems", "Problems", "problems"),
    ("dashboard.balance", "Balance", "balance"),  # issue 15
    ("dashboard.payouts", "Payouts", "payouts"),  # issue 15, admins
    ("dashboard.vouchers", "Vouchers", "vouchers"),
    ("dashboard.logs", "Logs", "logs"),
    ("dashboard.sms", "SMS", "sms"),  # issue 17: SMS and alerts
    ("dashboard.owners", "Owners", "owners"),
    ("dashboard.account", "Account", "account"),
)
# Nav keys only admins see (the pages answer 404 to owners anyway).
ADMIN_NAV_KEYS = frozenset({"owners", "payouts"})


def dashboard_url(endpoint: str, **values: Any) -> str | None:
    """url_for, or None while the endpoint does not exist yet (another module adds it later)."""
    if endpoint not in current_app.view_functions:
        return None
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


def guess_active_page() -> str | None:
    """Nav key for the current view when the template did not set ``active_page``."""
    endpoint = (request.endpoint or "").removeprefix("dashboard.")
    for _, _, key in NAV_ITEMS:
        if endpoint.startswith(key.rstrip("s")):
            return key
    return None


@bp.app_template_filter("nairobi")
def nairobi_time(moment: datetime | None, fmt: str = "%d %b %Y %H:%M") -> str:
    """UTC inside, Nairobi time at the edges: ``{{ payment.created_at | nairobi }}``."""
    return moment.astimezone(NAIROBI).strftime(fmt) if moment else ""


@bp.context_processor
def _signed_in_user() -> dict[str, Any]:
    # Only dashboard pages get the user (Flask-Login's app-wide processor is off): a customer
    # page never loads one.
    from flask_login import current_user

    return {"current_user": current_user}


@bp.app_context_processor
def _dashboard_helpers() -> dict[str, Any]:
    return {"dashboard_url": dashboard_url, "dashboard_nav": NAV_ITEMS, "guess_active_page": guess_active_page,
            "admin_nav_keys": ADMIN_NAV_KEYS}


from . import access  # noqa: E402

bp.before_request(access.require_sign_in)


def _import_view_modules() -> None:
    # Every views*.py in this package registers its routes on import, so a new page group only
    # adds its module; nothing here needs editing.
    import importlib
    import pkgutil

    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module == "views" or module.startswith("views_"):
            importlib.import_module(f"{__name__}.{module}")


_import_view_modules()

"""Who may see what in the dashboard. Every dashboard view goes through these helpers.

What another dashboard module can rely on (keep these stable):

* **Sign-in is required for the whole blueprint.** ``require_sign_in`` runs before every
  ``dashboard.*`` view and redirects to ``dashboard.sign_in`` unless the endpoint is listed in
  ``PUBLIC_ENDPOINTS``. A new view needs no decorator. ``current_user`` is always a ``User`` there.

* **Owner scoping.** An owner sees only their own rows; an admin sees everyone's.
  ``scope_clause(model)`` is the WHERE clause for the signed-in user; ``owner_scope(stmt, model)``
  adds it to a select: ``db.session.scalars(owner_scope(sa.select(Payment), Payment))``.
  Tables without ``owner_id`` are scoped through their router (Activation, StkInitiation) or
  paybill (WebhookLog); see ``_SCOPES``. Tables not known here are admin-only.

* **Objects by id.** ``get_owned_or_404(Model, object_id)`` loads one row or aborts with 404
  (not 403: an owner must not learn that another owner's id exists).

* **The id-parameter registry.** ``OBJECT_ID_PARAMS`` maps URL parameter names to models:
  ``router_id, paybill_id, plan_id, voucher_id, payment_id, activation_id, initiation_id,
  log_id (webhook log), audit_id``. Name ``<int:...>`` URL parameters after it. The test
  ``tests/test_dashboard_access.py`` walks ``app.url_map``, fills every such parameter with
  another owner's id and expects 404, so new routes are covered without editing the test;
  a route with a parameter in neither registry makes that test fail. Register a new kind with
  ``register_object_param("thing_id", Thing)``, or for a string key
  ``register_object_param("voucher_code", Voucher, column="code")`` (``OBJECT_KEY_PARAMS``); add a
  ``_SCOPES`` entry if the table has no ``owner_id``, and teach ``tests/dashboard_support.py``
  (``make_everything``) to make one. ``get_owned_or_404(Voucher, code, column="code")`` loads it.

* **Templates.** ``templates/dashboard/base.html``: blocks ``title`` and ``content``; optional
  ``{% set active_page = "payments" %}`` at the top of a child template to highlight the nav;
  a ``problems_count`` context variable, when defined, shows as a badge on Problems. Nav links to
  endpoints that do not exist yet are simply left out. Flash messages (categories ``ok``, ``error``)
  are shown above the content. ``_form_macros.html``: ``field(f)``, ``action_button(form, url, label)``.

* **Forms.** ``forms.ActionForm`` holds only the CSRF token, for one-button POSTs. Every POST
  must go through a form (CSRF is on for the whole dashboard).

* **Audit.** ``portal.audit.record(action, actor=current_user, owner_id=..., object_type=...,
  object_id=..., detail=..., source_ip=client_ip())`` adds a row to the session; commit with
  the action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import abort, redirect, request, url_for
from flask_login import current_user

from ..core.client_address import client_address
from ..core.extensions import db
from ..models import (
    Activation,
    AuditLog,
    Paybill,
    Payment,
    Plan,
    Router,
    StkInitiation,
    User,
    Voucher,
    WebhookLog,
)
from ..owners.scope import owned, via_paybill, via_router

T = TypeVar("T")

SIGN_IN_ENDPOINT = "dashboard.sign_in"
# Endpoints of the dashboard blueprint reachable without signing in.
PUBLIC_ENDPOINTS = frozenset({SIGN_IN_ENDPOINT, "dashboard.sign_up", "dashboard.forgot_password",
                              "dashboard.reset_password"})
# What a signed-in owner whose phone is not confirmed yet may open (see owners/signup.py).
UNCONFIRMED_ENDPOINTS = frozenset({"dashboard.confirm_phone", "dashboard.resend_code", "dashboard.sign_out"})

# URL parameter name → model. See the module docstring.
OBJECT_ID_PARAMS: dict[str, type] = {
    "router_id": Router,
    "paybill_id": Paybill,
    "plan_id": Plan,
    "voucher_id": Voucher,
    "payment_id": Payment,
    "activation_id": Activation,
    "initiation_id": StkInitiation,
    "log_id": WebhookLog,
    "audit_id": AuditLog,
}

# Tables without their own owner_id: whose they are follows from their router or paybill.
_SCOPES: dict[type, Callable[[User], sa.ColumnElement[bool]]] = {
    Activation: lambda user: via_router(Activation.router_id, user),
    StkInitiation: lambda user: via_router(StkInitiation.router_id, user),
    WebhookLog: lambda user: via_paybill(WebhookLog.paybill_id, user),
}


# URL parameter name → (model, column) for rows addressed by a string key instead of an id,
# e.g. ``register_object_param("voucher_code", Voucher, column="code")`` for ``/vouchers/<voucher_code>``.
OBJECT_KEY_PARAMS: dict[str, tuple[type, str]] = {}


def register_object_param(name: str, model: type, *, column: str = "id") -> None:
    """Declare that the URL parameter ``name`` addresses a ``model`` row by ``column``."""
    registry_model = OBJECT_ID_PARAMS.get(name) or OBJECT_KEY_PARAMS.get(name, (None,))[0]
    if registry_model is not None and registry_model is not model:
        raise ValueError(f"{name} already names {registry_model.__name__}")
    if column == "id":
        OBJECT_ID_PARAMS[name] = model
    else:
        OBJECT_KEY_PARAMS[name] = (model, column)


def signed_in_user() -> User:
    user = current_user._get_current_object()
    if not isinstance(user, User):
        abort(401)
    return user


def scope_clause(model: type, user: User | None = None) -> sa.ColumnElement[bool]:
    """The WHERE clause limiting ``model`` to what ``user`` (default: the signed-in user) may see."""
    user = user or signed_in_user()
    if user.is_admin:
        return sa.true()
    if model in _SCOPES:
        return _SCOPES[model](user)
    if hasattr(model, "owner_id"):
        return owned(model.owner_id, user)
    return sa.false()  # a table nobody scoped is for admins only


def owner_scope(stmt: Any, model: type, user: User | None = None) -> Any:
    """``stmt`` (a select, update or delete over ``model``) limited to the user's rows."""
    return stmt.where(scope_clause(model, user))


def get_owned_or_404(model: type[T], object_id: Any, user: User | None = None, *, column: str = "id") -> T:
    """The row if it exists and the user may see it; 404 otherwise (never 403)."""
    found = db.session.scalars(
        owner_scope(sa.select(model).where(getattr(model, column) == object_id), model, user)
    ).first()
    if found is None:
        abort(404)
    return found


def require_admin() -> User:
    user = signed_in_user()
    if not user.is_admin:
        abort(404)
    return user


def client_ip() -> str | None:
    """The browser's address, believing X-Forwarded-For only for our own proxies."""
    return client_address()


def require_sign_in() -> Any:
    """before_request for the dashboard blueprint: every view but sign-in needs a signed-in user."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        target = request.full_path if request.method == "GET" else None
        return redirect(url_for(SIGN_IN_ENDPOINT, next=target.rstrip("?") if target else None))
    if not current_user.is_confirmed and request.endpoint not in UNCONFIRMED_ENDPOINTS:
        return redirect(url_for("dashboard.confirm_phone"))
    return None


def is_safe_next(target: str | None) -> bool:
    """Only same-site dashboard paths may be a post-sign-in destination (no open redirect)."""
    return bool(target) and target.startswith("/dashboard") and "//" not in target and "\\" not in target

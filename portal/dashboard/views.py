"""The dashboard's front door."""

from __future__ import annotations

from flask import redirect

from . import bp, dashboard_url


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    return redirect(dashboard_url("dashboard.overview") or dashboard_url("dashboard.routers"))

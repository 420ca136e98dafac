"""Error pages per audience: webhooks always answer in Daraja's shape, the dashboard shows a full
page, customers get a tiny one (drawn by the captive blueprint, which ``create_app`` hands in)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, abort, jsonify, render_template, request
from flask_login import current_user
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


CustomerPage = Callable[[int, str, str], Any]  # (status code, heading, message) → response


def register(app: Flask, *, customer_page: CustomerPage) -> None:
    @app.before_request
    def _refuse_nul_in_path() -> None:
        # No slug, token or id of ours holds a NUL, and PostgreSQL refuses one in any lookup:
        # "/r/a%00b" would otherwise end as a database error instead of "not found".
        if "\x00" in request.path:
            log.warning("refused a path holding a NUL byte: %r", request.path[:120])
            abort(404)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        if exc.response is not None:  # a view already chose its answer (e.g. 413 to Daraja)
            return exc.response
        return _render(exc.code or 500, exc.name, exc.description or "", customer_page)

    @app.errorhandler(Exception)
    def _crash(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error on %s", request.path)
        if request.path.startswith("/hooks/"):
            # Processing errors are caught after the raw body is stored; reaching here means the
            # body may not be stored (database down), so do not say "accepted": let Daraja retry.
            return jsonify({"ResultCode": 1, "ResultDesc": "Temporarily unavailable"}), 503
        if request.path.startswith("/routers/"):
            return jsonify({"error": "temporarily unavailable"}), 503  # the router syncs again soon
        return _render(500, "Something went wrong", "Please try again in a moment.", customer_page)


def _render(code: int, heading: str, message: str, customer_page: CustomerPage):  # type: ignore[no-untyped-def]
    path = request.path
    if path.startswith("/hooks/"):
        return jsonify({"ResultCode": 0, "ResultDesc": "Accepted"}), 200
    if path.startswith("/dashboard"):
        # Handed in by name: a URL no dashboard route matched never ran the blueprint's context
        # processor that gives its pages the signed-in user.
        page = render_template("dashboard/error.html", heading=heading, message=message, current_user=current_user)
        return page, code
    if path.startswith("/routers/") or (path.startswith("/p/") and path.endswith("/status")):
        return jsonify({"error": heading}), code
    return customer_page(code, heading, message)

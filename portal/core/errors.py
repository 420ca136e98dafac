"""Error pages per audience: webhooks always answer in Daraja's shape, customers get a tiny page."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from ..captive.i18n import choose_language, texts

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        if exc.response is not None:  # a view already chose its answer (e.g. 413 to Daraja)
            return exc.response
        return _render(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def _crash(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error on %s", request.path)
        if request.path.startswith("/hooks/"):
            # Processing errors are caught after the raw body is stored; reaching here means the
            # body may not be stored (database down), so do not say "accepted": let Daraja retry.
            return jsonify({"ResultCode": 1, "ResultDesc": "Temporarily unavailable"}), 503
        return _render(500, "Something went wrong", "Please try again in a moment.")


def _render(code: int, heading: str, message: str):  # type: ignore[no-untyped-def]
    path = request.path
    if path.startswith("/hooks/"):
        return jsonify({"ResultCode": 0, "ResultDesc": "Accepted"}), 200
    if path.startswith("/dashboard"):
        return render_template("dashboard/error.html", heading=heading, message=message), code
    if path.startswith("/p/") and path.endswith("/status"):
        return jsonify({"error": heading}), code
    g.lang = choose_language(request)
    g.t = texts(g.lang)
    if code == 404:
        heading, message = g.t["not_found"], ""
    elif code >= 500:
        heading, message = g.t["error_page"], ""
    return render_template("captive/error.html", heading=heading, message=message), code

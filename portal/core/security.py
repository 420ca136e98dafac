"""Security headers on every response; stricter ones where a page can afford them."""

from __future__ import annotations

from flask import Flask, Response, request

# No inline script anywhere: captive.js and dashboard.js are files.
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action *"


def install(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if app.config["IS_PRODUCTION"] and request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.path.startswith("/static/"):
            # Pages link static files with a content hash (?v=…), so a changed file has a new URL.
            versioned = "v" in request.args
            response.headers["Cache-Control"] = (
                "public, max-age=31536000, immutable" if versioned else "public, max-age=3600"
            )
        return response

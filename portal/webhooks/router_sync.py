"""POST /routers/<slug>/sync: a pull router fetches its work (protocol in hotspot/pull_sync.py).

The view only reads the request and words the answer: 200 with the work (JSON, or an .rsc for
``?format=rsc``), 401 for an unknown slug or a wrong token, 400 for a body that is not the
protocol's, 413 over 64 KB, 429 over the per-router rate. Every refusal changes nothing and is
logged with the slug, never with the token.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..core.client_address import client_address
from ..hotspot import pull_scripts, pull_sync

log = logging.getLogger(__name__)

bp = Blueprint("router_sync", __name__, url_prefix="/routers")


@bp.post("/<slug>/sync")
def sync(slug: str):  # type: ignore[no-untyped-def]
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        log.warning("sync refused router=%s: body over 64 KB", slug[:64])
        return _error(413, "body over 64 KB")
    try:
        answer = pull_sync.sync(slug, _bearer_token(), _json_or_none(raw))
    except pull_sync.SyncRefused:
        log.warning("sync refused router=%s from %s: unknown router or wrong token", slug[:64], _caller())
        response = _error(401, "unknown router or wrong token")
        response.headers["WWW-Authenticate"] = 'Bearer realm="router sync"'
        return response
    except pull_sync.SyncRequestInvalid as exc:
        log.warning("sync refused router=%s: %s", slug[:64], exc)
        return _error(400, str(exc))
    except pull_sync.SyncRateLimited as exc:
        log.warning("sync refused router=%s: %s", slug[:64], exc)
        response = _error(429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if request.args.get("format") == "rsc":
        return Response(pull_scripts.answer_rsc(answer), mimetype="text/plain")
    return jsonify(answer.as_json())


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _json_or_none(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested deep enough to exhaust the parser
        return None


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _caller() -> str | None:
    return client_address()

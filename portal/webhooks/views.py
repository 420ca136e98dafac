"""Daraja's webhooks: store raw, authenticate, record, answer at once. Never touch a router here.

Every path answers in Daraja's shape with HTTP 200, whatever happened: a wrong token or a
malformed body is logged and changes nothing, and a uniform answer gives a guesser no signal.
"""

from __future__ import annotations

import logging

from flask import abort, current_app, jsonify, make_response, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..core.client_address import client_address
from ..money import webhook_log
from ..owners.paybills import WebhookPaybill, webhook_paybill
from . import bp
from .auth import is_allowed_source
from .c2b_validation import validation_answer

log = logging.getLogger(__name__)

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}


def _read_body() -> tuple[bytes, str | None]:
    try:
        return request.get_data(cache=False), None
    except RequestEntityTooLarge:
        return f"[body of {request.content_length} bytes refused: over 64 KB]".encode(), "body over 64 KB"


def _store_and_authenticate(kind: str, token: str) -> tuple[webhook_log.StoredWebhook | None, WebhookPaybill | None]:
    """Store the request raw (with a verdict when it is unacceptable) and say whose it is.

    A request to an unknown path token is stored only as a sample (None when it is not)."""
    body, body_error = _read_body()
    paybill = webhook_paybill(token)
    remote = client_address()
    problem = body_error
    if problem is None and paybill is None:
        problem = "unknown path token"
    if problem is None and not is_allowed_source(remote, current_app.config["PORTAL_CALLBACK_ALLOWED_IPS"]):
        problem = f"source address {remote} is not in the allow list"
    stored = None
    if paybill is not None or webhook_log.keep_unknown_token_row():
        stored = webhook_log.store_raw(
            kind, body, remote_addr=remote, paybill_id=paybill.id if paybill else None, rejected_because=problem
        )
    if problem:
        kept = f"id={stored.id}" if stored else "not stored (over this minute's unknown-token sample)"
        log.warning("webhook %s rejected %s: %s", kind, kept, problem)
        if body_error:
            abort(make_response(jsonify({"ResultCode": 1, "ResultDesc": "Rejected: body over 64 KB"}), 413))
        return stored, None
    return stored, paybill


@bp.post("/<token>/stk")
def stk_callback(token: str):  # type: ignore[no-untyped-def]
    stored, paybill = _store_and_authenticate("stk_callback", token)
    if stored is not None and paybill is not None:
        webhook_log.process_stk_callback(stored)
    return jsonify(ACCEPTED)


@bp.post("/<token>/c2b/confirm")
def c2b_confirmation(token: str):  # type: ignore[no-untyped-def]
    stored, paybill = _store_and_authenticate("c2b_confirmation", token)
    if stored is not None and paybill is not None:
        webhook_log.process_c2b_confirmation(stored, paybill)
    return jsonify({"ResultCode": 0, "ResultDesc": "Success"})


@bp.post("/<token>/c2b/validate")
def c2b_validation(token: str):  # type: ignore[no-untyped-def]
    stored, paybill = _store_and_authenticate("c2b_validation", token)
    answer = validation_answer(stored, paybill)
    return jsonify(answer)

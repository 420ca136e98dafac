"""B2C callbacks on the sending paybill's secret path: store raw, authenticate, record, answer."""

from __future__ import annotations

from flask import jsonify

from ..money import webhook_log_b2c
from . import bp
from .views import ACCEPTED, _store_and_authenticate

_PATHS = {"result": "b2c_result", "timeout": "b2c_timeout", "status": "b2c_status",
          "status-timeout": "b2c_status_timeout"}


@bp.post("/<token>/b2c/<any(result, timeout, status, 'status-timeout'):which>")
def b2c_callback(token: str, which: str):  # type: ignore[no-untyped-def]
    kind = _PATHS[which]
    stored, paybill = _store_and_authenticate(kind, token)
    if stored is not None and paybill is not None:
        webhook_log_b2c.process_b2c_webhook(stored.id, kind, stored.paybill_id, stored.payload)
    return jsonify(ACCEPTED)

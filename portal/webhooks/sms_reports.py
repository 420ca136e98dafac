"""Africa's Talking's delivery reports: store raw, authenticate by the secret path, match, answer.

Always HTTP 200 with a short body: a wrong token changes nothing and gives a guesser no signal.
"""

from __future__ import annotations

import logging

from flask import request

from ..core.client_address import client_address
from ..notify import delivery
from . import bp

log = logging.getLogger(__name__)


@bp.post("/sms/<token>/delivery")
def sms_delivery_report(token: str):  # type: ignore[no-untyped-def]
    if not delivery.is_report_token(token):
        log.warning("sms delivery report refused from %s: unknown path token", client_address())
        return "OK"
    report = delivery.store_report(request.get_data(cache=False), client_address())
    delivery.apply_report(report)
    return "OK"

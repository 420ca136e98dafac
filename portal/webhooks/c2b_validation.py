"""C2B validation: accept unless the payment quotes one of our vouchers with too little money.

Rejecting an underpayment here stops the customer being charged for nothing. Anything we do not
recognise is accepted: the owner may use the paybill for other business, and an accepted payment
we cannot match is kept for the owner rather than refused.
"""

from __future__ import annotations

from typing import Any

from ..hotspot.vouchers import normalise_code
from ..money import webhook_log
from ..money.settlement import expected_c2b_price, parse_amount
from ..owners.paybills import WebhookPaybill

ACCEPT = {"ResultCode": "0", "ResultDesc": "Accepted"}
REJECT_AMOUNT = {"ResultCode": "C2B00013", "ResultDesc": "Rejected"}


def validation_answer(stored: webhook_log.StoredWebhook | None, paybill: WebhookPaybill | None) -> dict[str, Any]:
    if stored is None or paybill is None:
        return ACCEPT  # rejected already in the log; Daraja's default action decides
    entry_id = stored.id
    try:
        body = webhook_log.load_json(stored.payload)
        bill_ref = normalise_code(body.get("BillRefNumber")) if isinstance(body, dict) else ""
        amount = parse_amount(body.get("TransAmount")) if isinstance(body, dict) else None
    except webhook_log.PayloadError:  # not JSON, or nested too deep to parse
        webhook_log.mark(entry_id, "rejected", "malformed JSON; accepted by default")
        return ACCEPT
    expected = expected_c2b_price(bill_ref, paybill) if bill_ref else None
    if expected is not None and amount is not None and amount < expected:
        webhook_log.mark(entry_id, "processed", f"rejected: KES {amount} below price KES {expected}")
        return REJECT_AMOUNT
    webhook_log.mark(entry_id, "processed", "accepted")
    return ACCEPT


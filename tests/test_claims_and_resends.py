"""Issue 11, second part: which unmatched payments a customer may claim by receipt (and for how
long), money assigned by hand counted once, "send again" never pushing over an open prompt, and
provider text stored clean. On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

from typing import Any

import pytest

from portal.core.extensions import db
from portal.models import StkInitiation
from portal.money import settlement

from .test_money_holes import SILENT_PHONE, _buy_at
from .test_purchase_flow import _initiation


@pytest.fixture
def app_overrides():  # type: ignore[no-untyped-def]
    # The money rules must hold on their own: rate limits are a separate guard, tested elsewhere.
    return {"PORTAL_RATE_LIMITS_ENABLED": False}


def _initiation_row(initiation_id: int) -> StkInitiation:
    db.session.expire_all()
    return db.session.get(StkInitiation, initiation_id)


# ---------------------------------------------------------------------------------------------
# Task 4: a failure's ResultDesc is stored clean, whichever path records it


def test_a_query_failure_with_a_nul_or_a_huge_result_desc_is_recorded_failed(app: Any, shop: Any, customer: Any) -> None:
    first = _initiation(_buy_at(customer, shop, SILENT_PHONE))
    second = _initiation(_buy_at(customer, shop, "0700 099 998"))
    third = _initiation(_buy_at(customer, shop, "0700 099 997"))

    batch = settlement.record_stk_query_answers([
        (first.checkout_request_id, "1032", "Request cancelled\x00 by user"),
        (second.checkout_request_id, "1037", "D" * 5000),
    ])
    alone = settlement.record_stk_result(third.checkout_request_id, "2001\x00", "wrong\x00pin", source="query")

    assert [outcome.action for outcome in batch.values()] == ["failed", "failed"] and alone.action == "failed"
    nul, huge, code = (_initiation_row(i.id) for i in (first, second, third))
    assert nul.status == "failed" and nul.result_desc == "Request cancelled\ufffd by user"
    assert huge.status == "failed" and huge.result_desc == "D" * 300
    assert code.status == "failed" and "\x00" not in code.result_code + code.result_desc

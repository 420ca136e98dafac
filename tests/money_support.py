"""Fixtures for the ledger, payout and refund tests: an owner selling on the platform's paybill
(the fallback), with B2C credentials on that paybill that the sandbox Daraja can verify."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Payment

from .conftest import wait_until

HOTSPOT = {"mac": "AA:BB:CC:DD:EE:01", "ip": "10.5.50.23", "link-login-only": "http://10.5.50.1/login"}
PLATFORM_B2C_SHORTCODE = "600997"
INITIATOR_NAME, INITIATOR_PASSWORD = "testapi", "Safaricom999!*!"


# The money tests' app_overrides: they buy from one phone back to back (the customer rate limits
# would refuse the second push), and payouts go out without waiting for an admin unless a test says so.
MONEY_OVERRIDES: dict[str, Any] = {"PORTAL_RATE_LIMITS_ENABLED": False, "PORTAL_PAYOUT_REQUIRES_APPROVAL": False,
                                   "PORTAL_B2C_REQUESTS_PER_S": 1000.0}


@pytest.fixture
def b2c_certificate(daraja, tmp_path, app) -> str:  # type: ignore[no-untyped-def]
    """The sandbox's M-Pesa certificate on disk, configured for the sandbox environment."""
    path = tmp_path / "sandbox-mpesa-cert.pem"
    path.write_bytes(daraja.b2c.certificate_pem)
    app.config["PORTAL_B2C_CERT_SANDBOX"] = str(path)
    return str(path)


@pytest.fixture
def platform_shop(make_owner, make_paybill, make_router, make_plan, daraja, b2c_certificate) -> Any:  # type: ignore[no-untyped-def]
    """An owner with no paybill of their own: the platform's paybill collects for them."""
    from portal.money import b2c_transfers

    class PlatformShop:
        pass

    s = PlatformShop()
    s.platform_paybill = make_paybill(None)
    daraja.b2c.add_initiator(s.platform_paybill.number, INITIATOR_NAME, INITIATOR_PASSWORD)
    b2c_transfers.set_b2c_credentials(s.platform_paybill, initiator_name=INITIATOR_NAME,
                                      initiator_password=INITIATOR_PASSWORD, actor="test")
    db.session.commit()
    s.owner = make_owner()
    s.router = make_router(s.owner)
    s.plan = make_plan(s.owner, price=100)
    return s


def buy(customer, shop, phone: str = "0712 345 678") -> Payment:  # type: ignore[no-untyped-def]
    response = customer.buy(shop.router.slug, shop.plan.id, phone, **HOTSPOT)
    assert response.status_code == 303, response.text[:500]
    url = response.headers["Location"].replace(customer.base, "")
    body = customer.wait_for(url, ("paid", "active", "failed"))
    assert body["status"] in ("paid", "active"), body
    db.session.expire_all()
    return db.session.scalars(sa.select(Payment).where(Payment.public_id == url.rsplit("/", 1)[-1])).one()


def resend_callback(daraja, payment: Payment, *, new_receipt: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """The STK callback of this purchase again (a duplicate), or with another receipt (a second payment)."""
    from portal.models import StkInitiation

    checkout = db.session.scalar(sa.select(StkInitiation.checkout_request_id).where(StkInitiation.payment_id == payment.id))
    if new_receipt:
        daraja.set_outcome(checkout, 0, receipt=new_receipt)
    count = len(daraja.callbacks_sent)
    daraja.send_callback(checkout)
    wait_until(lambda: len(daraja.callbacks_sent) > count)

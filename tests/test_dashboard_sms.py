"""Issue 17 on the dashboard: SMS status (and "no SMS is sent" without a username), sent messages
with their outcome and cost, the cap, alert choices, the owner's own account (its key never shown
back), and the alert banner on every page."""

from __future__ import annotations

import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import NotifySettings, Paybill, utcnow
from portal.notify import alerts, outbox
from portal.sandbox.sms import SANDBOX_API_KEY, SandboxSmsGateway

from .conftest import wait_until
from .test_purchase_flow import _buy


def test_without_a_username_the_page_says_no_sms_is_sent(app, shop, signed_in):
    _, b = signed_in(shop.owner)
    page = b.get("/dashboard/sms").text
    assert "No SMS is sent." in page and "PORTAL_SMS_USERNAME is not set" in page
    assert 'href="/dashboard/sms"' in b.get("/dashboard/").text or 'href="/dashboard/sms"' in page


def test_sent_messages_show_outcome_cost_and_the_cap(app, shop, customer, worker, signed_in):
    with SandboxSmsGateway(report_delay_s=0.05) as gateway:
        app.config.update(
            PORTAL_SMS_USERNAME="sandbox", PORTAL_SMS_API_KEY=SANDBOX_API_KEY, PORTAL_SMS_BASE_URL=gateway.base_url
        )
        from portal.notify import delivery

        gateway.report_url = delivery.report_url()
        customer.wait_for(_buy(customer, shop), ("active",))
        outbox.send_due_sms(time_budget_s=5)
        gateway.wait_for(1, reported=True)
        wait_until(lambda: "Success" in _sms_page(signed_in, shop), timeout=5)
        page = _sms_page(signed_in, shop)
    assert "SMS is on." in page and "the platform's Africa's Talking account" in page
    assert "1 of 2000 customer SMS" in page
    assert "delivered (Success)" in page and "KES 0.8000" in page and "KES 0.80" in page
    assert "0712 *** 678" in page and "254712345678" not in page


def _sms_page(signed_in, shop) -> str:  # type: ignore[no-untyped-def]
    _, b = signed_in(shop.owner)
    return b.get("/dashboard/sms").text


def test_choices_and_the_own_account_are_saved_and_the_key_never_shown(app, shop, signed_in):
    _, b = signed_in(shop.owner)
    b.get("/dashboard/sms")
    saved = b.post(
        "/dashboard/sms",
        {
            "customer_sms": "y",
            "monthly_cap": "300",
            "alert_phone": "0712 000 111",
            "alert_router_down": "y",
            "at_username": "mamanjeri",
            "at_api_key": "atsk_very_secret_owner_key",
            "at_sender": "MAMANJERI",
        },
    )
    assert saved.status_code == 302, saved.text[:500]
    settings = db.session.get(NotifySettings, shop.owner.id)
    db.session.refresh(settings)
    assert (settings.monthly_cap, settings.alert_phone, settings.alert_router_down, settings.alert_paybill_failing) == (
        300,
        "254712000111",
        True,
        False,
    )
    assert settings.at_api_key == "atsk_very_secret_owner_key"
    assert "atsk_very_secret_owner_key" not in settings.at_api_key_encrypted
    page = b.get("/dashboard/sms").text
    assert "atsk_very_secret_owner_key" not in page and "your own Africa's Talking account" in page
    assert "0712 *** 111" in page

    bad = b.post("/dashboard/sms", {"alert_phone": "12345"})
    assert bad.status_code == 400 and "Kenyan mobile number" in bad.text


def test_an_open_alert_shows_as_a_banner_on_every_page(app, shop, signed_in):
    db.session.execute(sa.update(Paybill).values(last_token_error="DarajaAuthFailed", last_token_error_at=utcnow()))
    db.session.commit()
    alerts.check_alerts()
    _, b = signed_in(shop.owner)
    for path in ("/dashboard/plans", "/dashboard/routers"):
        page = b.get(path).text
        assert 'id="owner-alerts"' in page and "Daraja refuses the credentials of paybill 174379" in page

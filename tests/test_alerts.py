"""Issue 17 point 2: owner alerts by SMS (through the sandbox gateway) and on the dashboard banner.

A router down for 11 minutes gives one alert and one "all clear"; a flapping router gives at most
one alert (and its all clear) per hour; a failing paybill alerts; the owner's choice holds.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot.routers import probe_quiet_routers
from portal.models import OwnerAlert, Paybill, Router, SmsMessage, utcnow
from portal.notify import accounts, alerts, outbox
from portal.sandbox.sms import SandboxSmsGateway

from .sms_support import sms_settings

OWNER_PHONE = "254712000001"


@pytest.fixture
def app_overrides(sms_gateway) -> dict:  # type: ignore[no-untyped-def]
    return sms_settings(sms_gateway)


@pytest.fixture
def owner_shop(shop):  # type: ignore[no-untyped-def]
    accounts.save_settings(shop.owner.id, alert_phone=OWNER_PHONE)
    return shop


def _set_router(router_id: int, **values) -> None:  # type: ignore[no-untyped-def]
    db.session.execute(sa.update(Router).where(Router.id == router_id).values(**values))
    db.session.commit()


def _texts(gateway: SandboxSmsGateway) -> list[str]:
    outbox.send_due_sms(time_budget_s=5)
    return [m.text for m in gateway.sent_to(OWNER_PHONE)]


def test_a_router_down_for_eleven_minutes_gives_one_alert_and_one_all_clear(app, owner_shop, router_box, sms_gateway):
    router = owner_shop.router
    _set_router(router.id, last_seen_at=utcnow() - timedelta(minutes=11), created_at=utcnow() - timedelta(days=1))
    router_box.refuse_connections(True)
    assert probe_quiet_routers() == {"unreachable": 1}
    assert alerts.check_alerts() == {"opened": 1, "notified": 1}
    assert alerts.check_alerts() == {}  # still down: nothing new
    (alert,) = alerts.open_alerts_for(owner_shop.owner.id)
    assert alert.kind == "router_down" and "Mama Njeri Cafe" in alert.detail

    router_box.refuse_connections(False)
    assert probe_quiet_routers() == {"reachable": 1}
    assert alerts.check_alerts() == {"cleared": 1, "all_clear": 1}
    assert alerts.check_alerts() == {}

    sent = _texts(sms_gateway)
    assert len(sent) == 2
    assert sent[0].startswith("WiFi portal alert: router Mama Njeri Cafe unreachable since ")
    assert sent[1] == "WiFi portal all clear: your routers are reachable again"
    assert alerts.open_alerts_for(owner_shop.owner.id) == []


def test_a_flapping_router_gives_at_most_one_alert_per_hour(app, owner_shop, sms_gateway):
    router = owner_shop.router
    start = utcnow()
    _set_router(router.id, created_at=start - timedelta(days=1))
    for minute in range(0, 60, 5):  # down, up, down, up… every five minutes for an hour
        now = start + timedelta(minutes=minute)
        if minute % 10 == 0:
            _set_router(router.id, last_seen_at=now - timedelta(minutes=11), last_error="RouterUnreachable: no answer")
        else:
            _set_router(router.id, last_seen_at=now, last_error=None)
        alerts.check_alerts(now=now)

    sent = _texts(sms_gateway)
    assert len(sent) == 2, sent  # one alert and its all clear
    assert sent[0].startswith("WiFi portal alert:") and sent[1].startswith("WiFi portal all clear:")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OwnerAlert)) == 6  # six episodes, one told

    later = start + timedelta(minutes=61)  # an hour on, still flapping: the next episode may alert again
    _set_router(router.id, last_seen_at=later - timedelta(minutes=11), last_error="RouterUnreachable: no answer")
    assert alerts.check_alerts(now=later) == {"opened": 1, "notified": 1}
    assert len(_texts(sms_gateway)) == 3


def test_a_failing_paybill_alerts_only_owners_who_chose_it(app, owner_shop, make_owner, make_paybill, sms_gateway):
    other = make_owner()
    other_paybill = make_paybill(other, number="600999")
    accounts.save_settings(other.id, alert_phone="254712000002", alert_paybill_failing=False)
    now = utcnow()
    for paybill_id in (owner_shop.paybill.id, other_paybill.id):
        db.session.execute(
            sa.update(Paybill)
            .where(Paybill.id == paybill_id)
            .values(last_token_error="DarajaAuthFailed: Bad Request - Invalid Credentials", last_token_error_at=now)
        )
    db.session.commit()

    assert alerts.check_alerts() == {"opened": 2, "notified": 2}

    (sent,) = _texts(sms_gateway)
    assert sent == "WiFi portal alert: Daraja refuses the credentials of paybill 174379; payments cannot start"
    assert sms_gateway.sent_to("254712000002") == []  # not chosen: the banner only
    assert [a.kind for a in alerts.open_alerts_for(other.id)] == ["paybill_failing"]


def test_a_pull_router_that_stopped_syncing_alerts(app, owner_shop, make_pull_router, sms_gateway):
    router, _token = make_pull_router(owner_shop.owner)
    _set_router(router.id, last_sync_at=utcnow() - timedelta(minutes=12))
    _set_router(owner_shop.router.id, last_seen_at=utcnow())

    assert alerts.check_alerts() == {"opened": 1, "notified": 1}
    (alert,) = alerts.open_alerts_for(owner_shop.owner.id)
    assert "Kibanda Kiosk not syncing" in alert.detail


def test_alerts_are_not_customer_sms_and_skip_the_cap(app, owner_shop, router_box, sms_gateway):
    accounts.save_settings(owner_shop.owner.id, monthly_cap=0)
    db.session.execute(sa.update(Paybill).values(last_token_error="x", last_token_error_at=utcnow()))
    db.session.commit()
    alerts.check_alerts()
    assert len(_texts(sms_gateway)) == 1
    assert db.session.scalars(sa.select(SmsMessage.kind)).all() == ["alert"]


def test_a_problem_waiting_over_an_hour_alerts(app, owner_shop, customer, daraja, sms_gateway):
    from portal.models import StkInitiation

    from .test_purchase_flow import _buy

    _buy(customer, owner_shop, phone="0700 099 999")  # the sandbox never answers: a stuck prompt
    db.session.execute(sa.update(StkInitiation).values(created_at=utcnow() - timedelta(minutes=30)))
    db.session.commit()
    _set_router(owner_shop.router.id, last_seen_at=utcnow())
    assert alerts.check_alerts() == {}  # a problem, but not an hour old

    db.session.execute(sa.update(StkInitiation).values(created_at=utcnow() - timedelta(minutes=61)))
    db.session.commit()
    assert alerts.check_alerts() == {"opened": 1, "notified": 1}
    (sent,) = _texts(sms_gateway)
    assert sent.startswith("WiFi portal alert: 1 problem(s) waiting over an hour on the Problems page")


def test_a_tunnel_router_without_a_handshake_for_eleven_minutes_alerts_while_the_hub_syncs(app, owner_shop, sms_gateway):
    from portal.models import TunnelHub
    from portal.tunnel import pool

    app.config.update(PORTAL_TUNNEL_ENDPOINT="hub.example.com:51820", TUNNEL_ENABLED=True,
                      TUNNEL_ENDPOINT_HOST="hub.example.com", TUNNEL_LISTEN_PORT=51820)
    pool.ensure_hub()
    router = owner_shop.router
    _set_router(router.id, connection_mode="tunnel", created_at=utcnow() - timedelta(days=1),
                wg_last_handshake_at=utcnow() - timedelta(minutes=11), last_error=None, last_seen_at=utcnow())
    assert alerts.check_alerts() == {}  # the hub has not synced: its handshake times say nothing

    db.session.execute(sa.update(TunnelHub).values(last_sync_at=utcnow()))
    db.session.commit()
    assert alerts.check_alerts() == {"opened": 1, "notified": 1}
    (alert,) = alerts.open_alerts_for(owner_shop.owner.id)
    assert alert.kind == "router_down" and "has no tunnel since" in alert.detail

    _set_router(router.id, wg_last_handshake_at=utcnow())  # the router dialled in again
    assert alerts.check_alerts() == {"cleared": 1, "all_clear": 1}
    assert _texts(sms_gateway)[-1] == "WiFi portal all clear: your routers are reachable again"


def test_a_failed_payout_alerts_until_a_later_one_goes_through(app, owner_shop, sms_gateway):
    from portal.models import Payout

    owner_id = owner_shop.owner.id
    failed = Payout(owner_id=owner_id, amount=1200, phone="254712345678", state="failed",
                    failure_reason="the platform's B2C account has too little money")
    db.session.add(failed)
    db.session.commit()
    assert alerts.check_alerts() == {"opened": 1, "notified": 1}
    (alert,) = alerts.open_alerts_for(owner_id)
    assert alert.kind == "payout_failed" and "KES 1200" in alert.detail and "too little money" in alert.detail
    assert _texts(sms_gateway)[-1].startswith("WiFi portal alert: payout of KES 1200 failed")

    db.session.add(Payout(owner_id=owner_id, amount=1200, phone="254712345678", state="completed"))
    db.session.commit()
    assert alerts.check_alerts() == {"cleared": 1, "all_clear": 1}
    assert _texts(sms_gateway)[-1] == "WiFi portal all clear: payouts go through again"

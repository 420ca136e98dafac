"""Pull routers on the dashboard: add one, generate its sync script, see it sync, go offline, switch."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import requests
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import AuditLog, Router, utcnow

from .dashboard_support import field_errors, flashes

EMPTY = '{"version": "6.49.10 (long-term)", "acks": [], "usage": []}'


def _router(router_id: int) -> Router:
    db.session.expire_all()
    return db.session.get(Router, router_id)


def _script(page: str) -> str:
    return html.unescape(re.search(r'<textarea class="code" id="setup-script"[^>]*>(.*?)</textarea>', page, re.S).group(1))


def _sync(app, router: Router, token: str) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(f"{app.live_url}/routers/{router.slug}/sync", data=EMPTY,
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_an_owner_adds_a_pull_router_and_its_script_syncs(app, signed_in):
    owner, b = signed_in()
    assert "Add a router that syncs by pull" in b.get("/dashboard/routers").text
    refused = b.post("/dashboard/routers/new-pull", {"name": "Kiosk", "sync_interval_s": "2", "paybill_id": "0"})
    assert refused.status_code == 400 and "From 5 to 60 seconds." in field_errors(refused.text)

    added = b.post("/dashboard/routers/new-pull", {"name": "Kibanda Kiosk", "sync_interval_s": "10", "paybill_id": "0"})
    setup = b.follow(added)
    router = db.session.scalars(sa.select(Router)).one()
    assert (router.transport, router.sync_interval_s, router.host) == ("pull", 10, "")
    assert "device-mode" in setup.text and "Generate the script" in setup.text

    generated = b.post(f"/dashboard/routers/{router.id}/setup/pull-script",
                       {"form": "rsc", "hotspot_profile": "hsprof1", "html_directory": "hotspot"})
    assert generated.status_code == 200
    script = _script(generated.text)
    assert "interval=10s" in script and "format=rsc" in script
    token = re.search(r"Authorization: Bearer ([A-Za-z0-9_-]+)", script).group(1)
    assert token not in (_router(router.id).sync_token_hash or "")

    detail = b.get(f"/dashboard/routers/{router.id}").text
    assert "offline" in detail and "Test connection" not in detail and "never" in detail
    assert _sync(app, router, token).status_code == 200
    detail = b.get(f"/dashboard/routers/{router.id}").text
    assert "syncing" in detail and "6.49.10 (long-term)" in detail
    assert "router_sync_token_rotated" in db.session.scalars(sa.select(AuditLog.action)).all()

    again = b.post(f"/dashboard/routers/{router.id}/setup/pull-script",
                   {"form": "json", "hotspot_profile": "hsprof1", "html_directory": "hotspot"})
    assert "previous token has stopped" in again.text
    assert _sync(app, router, token).status_code == 401  # a new script retires the old token


def test_a_router_silent_for_two_minutes_shows_offline_and_after_ten_is_a_problem(app, signed_in, make_pull_router):
    owner, b = signed_in()
    router, token = make_pull_router(owner)
    assert _sync(app, router, token).status_code == 200
    assert "offline" not in b.get("/dashboard/routers").text

    _router(router.id).last_sync_at = utcnow() - timedelta(minutes=3)
    db.session.commit()
    assert "offline" in b.get("/dashboard/routers").text
    assert "Routers that stopped syncing" not in b.get("/dashboard/problems").text

    _router(router.id).last_sync_at = utcnow() - timedelta(minutes=11)
    db.session.commit()
    problems = b.get("/dashboard/problems").text
    assert "Routers that stopped syncing (1)" in problems and router.name in problems


def test_the_owner_switches_transport_and_edits_the_interval(app, signed_in, make_router, make_pull_router):
    owner, b = signed_in()
    api_router = make_router(owner)
    detail = b.get(f"/dashboard/routers/{api_router.id}").text
    assert "Switch to pull sync" in detail

    switched = b.post(f"/dashboard/routers/{api_router.id}/transport", {"transport": "pull"})
    assert switched.headers["Location"].endswith(f"/routers/{api_router.id}/setup")
    assert _router(api_router.id).transport == "pull"
    back = b.follow(b.post(f"/dashboard/routers/{api_router.id}/transport", {"transport": "api"}))
    assert _router(api_router.id).transport == "api" and "Test the connection" in back.text

    pull_router, token = make_pull_router(owner)
    refused = b.follow(b.post(f"/dashboard/routers/{pull_router.id}/transport", {"transport": "api"}))
    assert any("API address" in text for _, text in flashes(refused.text))
    assert b.get(f"/dashboard/routers/{pull_router.id}/edit").headers["Location"].endswith("/pull-settings")
    saved = b.post(f"/dashboard/routers/{pull_router.id}/pull-settings",
                   {"name": "Kiosk 2", "sync_interval_s": "30", "hotspot_server": "", "paybill_id": "0",
                    "hotspot_dns_name": "wifi.kiosk.co.ke"})
    assert saved.status_code == 302
    assert _router(pull_router.id).hotspot_dns_name == "wifi.kiosk.co.ke"  # the pull router's login host too
    assert _sync(app, pull_router, token).json()["interval"] == 30  # the router follows at its next sync


def test_another_owner_cannot_touch_a_pull_router(app, signed_in, make_owner, make_pull_router):
    router, _token = make_pull_router(make_owner())
    _owner, b = signed_in()
    for path in (f"/dashboard/routers/{router.id}/pull-settings",):
        assert b.get(path).status_code == 404
    assert b.post(f"/dashboard/routers/{router.id}/setup/pull-script",
                  {"form": "json", "hotspot_profile": "hsprof1", "html_directory": "hotspot"}).status_code == 404
    assert b.post(f"/dashboard/routers/{router.id}/transport", {"transport": "api"}).status_code == 404

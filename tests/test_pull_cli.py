"""The pull-sync CLI: `router add … --transport pull`, `router sync-token`, `router pull-script`, `router transport`."""

from __future__ import annotations

import json

import requests
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import AuditLog, Router


def _run(app, *args: str):  # type: ignore[no-untyped-def]
    return app.test_cli_runner().invoke(args=list(args))


def _sync(app, slug: str, token: str) -> int:  # type: ignore[no-untyped-def]
    body = json.dumps({"version": "6.49.10", "acks": [], "usage": []})
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(f"{app.live_url}/routers/{slug}/sync", data=body, headers=headers, timeout=5).status_code


def test_a_pull_router_from_the_command_line_syncs_with_the_printed_token(app, make_owner):
    make_owner("wanjiru@example.com")
    added = _run(app, "router", "add", "--owner", "wanjiru@example.com", "--name", "Kibanda Kiosk",
                 "--transport", "pull", "--sync-interval", "10")
    assert added.exit_code == 0, added.output
    slug = added.output.split()[-1]  # the stable interface: the slug is the last word
    token = added.output.splitlines()[0].split()[-1]
    router = db.session.scalars(sa.select(Router)).one()
    assert (router.slug, router.transport, router.sync_interval_s) == (slug, "pull", 10)
    assert token not in (router.sync_token_hash or "") and len(token) >= 40
    assert _sync(app, slug, token) == 200

    rotated = _run(app, "router", "sync-token", "--slug", slug)
    assert rotated.exit_code == 0, rotated.output
    fresh = rotated.output.strip()
    assert _sync(app, slug, token) == 401 and _sync(app, slug, fresh) == 200
    assert db.session.scalars(sa.select(AuditLog.action)).all() == ["router_sync_token_rotated"]


def test_pull_script_prints_a_setup_script_with_a_working_token(app, make_owner):
    make_owner("wanjiru@example.com")
    slug = _run(app, "router", "add", "--owner", "wanjiru@example.com", "--name", "Kiosk", "--transport", "pull").output.split()[-1]
    printed = _run(app, "router", "pull-script", "--slug", slug, "--form", "rsc")
    assert printed.exit_code == 0, printed.output
    assert "/system scheduler set" in printed.output and "interval=15s" in printed.output
    token = printed.output.split("Authorization: Bearer ")[1].split(",")[0]
    assert _sync(app, slug, token) == 200


def test_an_api_router_still_needs_its_credentials_and_switches_by_command(app, make_owner, router_box):
    make_owner("wanjiru@example.com")
    refused = _run(app, "router", "add", "--owner", "wanjiru@example.com", "--name", "Cafe")
    assert refused.exit_code != 0 and "--host" in refused.output
    slug = _run(app, "router", "add", "--owner", "wanjiru@example.com", "--name", "Cafe", "--host", router_box.host,
                "--port", str(router_box.port), "--username", router_box.username, "--password", router_box.password
                ).output.split()[-1]
    assert _run(app, "router", "pull-script", "--slug", slug).exit_code != 0
    switched = _run(app, "router", "transport", "--slug", slug, "--to", "pull")
    assert switched.exit_code == 0 and db.session.scalars(sa.select(Router.transport)).one() == "pull"
    pull_only = _run(app, "router", "add", "--owner", "wanjiru@example.com", "--name", "Kiosk", "--transport", "pull")
    back = _run(app, "router", "transport", "--slug", pull_only.output.split()[-1], "--to", "api")
    assert back.exit_code != 0 and "API address" in back.output

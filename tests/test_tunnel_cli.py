"""The tunnel's commands: router add --tunnel, setup-script, connection, rotate-keys, tunnel apply/run."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import AuditLog, Router


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PORTAL_TUNNEL_ENDPOINT": "hub.example.net:51820", "PORTAL_TUNNEL_NETWORK": "10.77.0.0/24"}


def _run(app, *args: str):  # type: ignore[no-untyped-def]
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def owner_email(app, make_owner) -> str:  # type: ignore[no-untyped-def]
    return make_owner("tunnel-owner@example.com").email


def test_router_add_tunnel_needs_no_host_and_prints_the_slug_last(app, owner_email):
    added = _run(app, "router", "add", "--owner", owner_email, "--name", "Behind CGNAT", "--tunnel")
    assert added.exit_code == 0, added.output
    slug = added.output.split()[-1]
    router = db.session.scalars(sa.select(Router).where(Router.slug == slug)).one()
    assert (router.connection_mode, router.host, router.tunnel_address) == ("tunnel", "10.77.0.2", "10.77.0.2")
    assert "tunnel address 10.77.0.2" in added.output and router.wg_private_key not in added.output


def test_setup_script_prints_the_tunnel_lines_and_stores_the_new_api_password(app, owner_email):
    slug = _run(app, "router", "add", "--owner", owner_email, "--name", "Behind CGNAT", "--tunnel").output.split()[-1]
    printed = _run(app, "router", "setup-script", "--slug", slug)
    assert printed.exit_code == 0, printed.output
    db.session.expire_all()
    router = db.session.scalars(sa.select(Router).where(Router.slug == slug)).one()
    assert f'private-key="{router.wg_private_key}"' in printed.output
    assert f'password="{router.api_password}"' in printed.output  # the script's password is the stored one
    assert 'endpoint-address="hub.example.net" endpoint-port=51820' in printed.output
    assert db.session.scalar(sa.select(AuditLog.action).where(AuditLog.object_id == str(router.id),
                                                              AuditLog.action == "router_api_user_set"))


def test_a_direct_router_switches_to_the_tunnel_and_back(app, owner_email, router_box):
    added = _run(app, "router", "add", "--owner", owner_email, "--name", "Cafe", "--host", "203.0.113.7",
                 "--username", "u", "--password", "p")
    slug = added.output.split()[-1]
    to_tunnel = _run(app, "router", "connection", "--slug", slug, "--to", "tunnel")
    assert to_tunnel.exit_code == 0 and "tunnel at 10.77.0.2" in to_tunnel.output
    no_host = _run(app, "router", "connection", "--slug", slug, "--to", "direct")
    assert no_host.exit_code != 0 and "needs its address" in no_host.output
    back = _run(app, "router", "connection", "--slug", slug, "--to", "direct", "--host", "203.0.113.8")
    assert back.exit_code == 0 and "direct at 203.0.113.8" in back.output


def test_rotate_keys_prints_only_the_new_public_key(app, owner_email):
    slug = _run(app, "router", "add", "--owner", owner_email, "--name", "Behind CGNAT", "--tunnel").output.split()[-1]
    old = db.session.scalars(sa.select(Router.wg_public_key).where(Router.slug == slug)).one()
    rotated = _run(app, "router", "rotate-keys", "--slug", slug)
    assert rotated.exit_code == 0, rotated.output
    db.session.expire_all()
    router = db.session.scalars(sa.select(Router).where(Router.slug == slug)).one()
    assert router.wg_previous_public_key == old and router.wg_public_key in rotated.output
    assert router.wg_private_key not in rotated.output


def test_without_a_hub_the_tunnel_commands_say_what_to_set(app, owner_email):
    app.config["TUNNEL_ENABLED"] = False
    for args in (("router", "add", "--owner", owner_email, "--name", "X", "--tunnel"), ("tunnel", "apply"), ("tunnel", "run")):
        result = _run(app, *args)
        assert result.exit_code != 0 and "PORTAL_TUNNEL_ENDPOINT" in result.output, (args, result.output)


def test_every_tunnel_command_has_help(app):
    for args in (("router", "add"), ("router", "setup-script"), ("router", "connection"), ("router", "rotate-keys"),
                 ("tunnel", "apply"), ("tunnel", "run")):
        result = _run(app, *args, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output

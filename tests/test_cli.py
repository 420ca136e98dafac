"""The CLI exactly as DESIGN's interface section lists it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Paybill, Plan, Router, User

from .conftest import CONSUMER_KEY, CONSUMER_SECRET, SANDBOX_PASSKEY


def _run(app, *args: str):  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=list(args))
    return result


def test_an_owner_can_set_up_a_hotspot_from_the_command_line(app, daraja, router_box):
    assert _run(app, "owner", "create", "--email", "Wanjiru@Example.com", "--password", "a long password").exit_code == 0
    added = _run(app, "router", "add", "--owner", "wanjiru@example.com", "--name", "Kibanda Cafe",
                 "--host", router_box.host, "--port", str(router_box.port), "--username", router_box.username,
                 "--password", router_box.password)
    slug = added.output.split()[-1]
    paybill = _run(app, "paybill", "add", "--owner", "wanjiru@example.com", "--type", "paybill", "--shortcode", "174379",
                   "--consumer-key", CONSUMER_KEY, "--consumer-secret", CONSUMER_SECRET, "--passkey", SANDBOX_PASSKEY,
                   "--environment", "sandbox")
    till = _run(app, "paybill", "add", "--type", "till", "--shortcode", "5123456", "--store", "600100",
                "--consumer-key", CONSUMER_KEY, "--consumer-secret", CONSUMER_SECRET, "--passkey", "till-store-passkey",
                "--environment", "sandbox")
    plan = _run(app, "plan", "add", "--owner", "wanjiru@example.com", "--name", "1 Day", "--price", "50",
                "--duration", "1d", "--data-limit", "2GB", "--rate-limit", "2M/5M")
    tokens = _run(app, "tokens", "refresh")
    c2b = _run(app, "c2b", "register", "--shortcode", "174379")

    for result in (added, paybill, till, plan, tokens, c2b):
        assert result.exit_code == 0, result.output
    owner = db.session.scalars(sa.select(User)).one()
    router = db.session.scalars(sa.select(Router)).one()
    assert router.slug == slug and slug.startswith("kibanda-cafe-") and router.api_password == router_box.password
    paybills = db.session.scalars(sa.select(Paybill).order_by(Paybill.id)).all()
    assert paybills[0].owner_id == owner.id and owner.default_paybill_id == paybills[0].id
    assert paybills[1].owner_id is None and paybills[1].business_shortcode == "600100"  # the platform's till
    saved = db.session.scalars(sa.select(Plan)).one()
    assert (saved.price, saved.duration_s, saved.data_limit_bytes, saved.rate_limit) == (50, 86400, 2 << 30, "2M/5M")
    assert tokens.output.count("refreshed") + tokens.output.count("still valid") == 2
    assert paybills[0].c2b_registered_at is not None
    assert CONSUMER_SECRET not in "".join(r.output for r in (paybill, till, tokens, c2b))


def test_bad_input_gets_a_clear_message(app):
    weak = _run(app, "owner", "create", "--email", "x@example.com", "--password", "short")
    nobody = _run(app, "plan", "add", "--owner", "nobody@example.com", "--name", "x", "--price", "10", "--duration", "1h")
    duration = _run(app, "owner", "create", "--email", "y@example.com", "--password", "long enough pw")
    bad_duration = _run(app, "plan", "add", "--owner", "y@example.com", "--name", "x", "--price", "10", "--duration", "soon")
    till_without_store = _run(app, "paybill", "add", "--type", "till", "--shortcode", "5123456", "--consumer-key", "k",
                              "--consumer-secret", "s", "--passkey", "p")

    assert weak.exit_code != 0 and "10 characters" in weak.output
    assert nobody.exit_code != 0 and "no owner with email nobody@example.com" in nobody.output
    assert duration.exit_code == 0
    assert bad_duration.exit_code != 0 and "3h, 3 hours, 90 min, 1 day" in bad_duration.output
    assert till_without_store.exit_code != 0 and "--store" in till_without_store.output


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("2g", 2 << 30), ("500M", 500 << 20), ("1.5G", int(1.5 * (1 << 30))), ("10k", 10 << 10), ("500MB", 500 << 20)],
)
def test_plan_add_takes_data_limits_the_way_routeros_writes_them(app, typed, expected):
    assert _run(app, "owner", "create", "--email", "z@example.com", "--password", "long enough pw").exit_code == 0
    added = _run(app, "plan", "add", "--owner", "z@example.com", "--name", "x", "--price", "10", "--duration", "1h",
                 "--data-limit", typed)
    assert added.exit_code == 0, added.output
    assert db.session.scalars(sa.select(Plan)).one().data_limit_bytes == expected


def test_plan_add_refuses_a_data_limit_it_cannot_read(app):
    assert _run(app, "owner", "create", "--email", "z@example.com", "--password", "long enough pw").exit_code == 0
    junk = _run(app, "plan", "add", "--owner", "z@example.com", "--name", "x", "--price", "10", "--duration", "1h",
                "--data-limit", "2 gigs")
    assert junk.exit_code != 0 and "500MB, 500M, 2GB, 2G or a number of bytes" in junk.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Plan)) == 0


def test_every_command_explains_itself(app):
    for args in (["owner", "create"], ["router", "add"], ["paybill", "add"], ["plan", "add"], ["tokens", "refresh"],
                 ["c2b", "register"], ["worker"], ["keys", "rotate"], ["db", "upgrade"]):
        result = _run(app, *args, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, args
    assert "8728 (api) or 8729 (api-ssl)" in _run(app, "router", "add", "--help").output

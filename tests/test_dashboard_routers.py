"""Router pages: list, add, edit, disable, test connection, live sessions, setup files."""

from __future__ import annotations

import re
import socket

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Activation, AuditLog, Router, Voucher
from portal.sandbox.router import SandboxRouter

from .dashboard_support import field_errors, flashes

HOTSPOT_VARIABLES = (
    "mac",
    "ip",
    "username",
    "link-login",
    "link-login-only",
    "link-orig",
    "error",
    "chap-id",
    "chap-challenge",
    "identity",
    "server-name",
)



def _router(router_id: int) -> Router:
    db.session.expire_all()
    return db.session.get(Router, router_id)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _router_form(box: SandboxRouter, **overrides: object) -> dict[str, object]:
    data = {
        "name": "Kibanda Wi-Fi",
        "host": box.host,
        "port": box.port,
        "api_username": box.username,
        "api_password": box.password,
        "hotspot_server": "",
        "paybill_id": 0,
    }
    data.update(overrides)
    return data


def test_router_list_renders_empty_and_with_routers(app, signed_in, make_router):
    owner, b = signed_in()
    empty = b.get("/dashboard/routers")
    assert empty.status_code == 200 and "No routers yet" in empty.text
    router = make_router(owner)
    page = b.get("/dashboard/routers")
    assert router.name in page.text and f"/r/{router.slug}" in page.text


def test_adding_a_router_stores_the_password_encrypted_and_never_shows_it(app, signed_in, router_box):
    owner, b = signed_in()
    assert b.get("/dashboard/routers/new").status_code == 200

    response = b.post("/dashboard/routers/new", _router_form(router_box))

    assert response.status_code == 302, field_errors(response.text)
    router = db.session.scalars(sa.select(Router).where(Router.owner_id == owner.id)).one()
    assert router.api_password == router_box.password
    assert router_box.password not in router.api_password_encrypted
    for path in (f"/dashboard/routers/{router.id}", f"/dashboard/routers/{router.id}/edit", "/dashboard/routers"):
        assert router_box.password not in b.get(path).text


def test_router_form_rejects_bad_input_next_to_each_field(app, signed_in, router_box):
    _, b = signed_in()
    response = b.post(
        "/dashboard/routers/new", _router_form(router_box, name="", host="not a host!", port=70000, api_password="")
    )
    assert response.status_code == 400
    errors = field_errors(response.text)
    assert "Give the router a name." in errors
    assert "Enter an IP address or a host name, like 203.0.113.10 or router.example.com." in errors
    assert "A port is a number from 1 to 65535." in errors
    assert "Enter the API password." in errors
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Router)) == 0


def test_the_owner_sets_the_hotspot_dns_name_on_the_router_form(app, signed_in, make_router, router_box):
    owner, b = signed_in()
    router = make_router(owner)
    assert 'name="hotspot_dns_name"' in b.get(f"/dashboard/routers/{router.id}/edit").text

    saved = b.post(f"/dashboard/routers/{router.id}/edit", _router_form(router_box, hotspot_dns_name="WiFi.Cafe.co.ke."))
    bad = b.post(f"/dashboard/routers/{router.id}/edit", _router_form(router_box, hotspot_dns_name="http://evil.com/"))

    assert saved.status_code == 302 and _router(router.id).hotspot_dns_name == "wifi.cafe.co.ke"
    assert bad.status_code == 400 and "Enter a host name like wifi.cafe.co.ke" in " ".join(field_errors(bad.text))
    assert _router(router.id).hotspot_dns_name == "wifi.cafe.co.ke"


def test_editing_with_an_empty_password_keeps_the_stored_one(app, signed_in, make_router, router_box):
    owner, b = signed_in()
    router = make_router(owner)
    response = b.post(f"/dashboard/routers/{router.id}/edit", _router_form(router_box, name="Renamed", api_password=""))
    assert response.status_code == 302
    assert _router(router.id).name == "Renamed" and _router(router.id).api_password == router_box.password

    b.post(f"/dashboard/routers/{router.id}/edit", _router_form(router_box, api_password="a-new-secret"))
    assert _router(router.id).api_password == "a-new-secret"
    assert (
        db.session.scalar(
            sa.select(AuditLog.detail).where(AuditLog.action == "router_changed").order_by(AuditLog.id.desc()).limit(1)
        )
        == "API password changed"
    )


def test_test_connection_reports_identity_and_hotspot_servers(app, signed_in, make_router, router_box):
    owner, b = signed_in()
    router = make_router(owner)

    page = b.follow(b.post(f"/dashboard/routers/{router.id}/test"))

    kind, message = flashes(page.text)[0]
    assert kind == "ok"
    assert router_box.identity in message and router_box.hotspot_server in message
    assert _router(router.id).last_seen_at is not None and _router(router.id).last_error is None


def test_test_connection_gives_the_routers_own_words_for_a_wrong_password(app, signed_in, make_router, router_box):
    owner, b = signed_in()
    router = make_router(owner)
    router_box.set_password("changed-on-the-router")

    page = b.follow(b.post(f"/dashboard/routers/{router.id}/test"))

    kind, message = flashes(page.text)[0]
    assert kind == "error"
    assert "invalid user name or password" in message
    assert _router(router.id).login_refused_at is not None


def test_test_connection_words_a_closed_port_without_socket_text(app, signed_in, make_router):
    owner, b = signed_in()
    router = make_router(owner)
    router.port = _closed_port()
    db.session.commit()

    page = b.follow(b.post(f"/dashboard/routers/{router.id}/test"))

    kind, message = flashes(page.text)[0]
    assert kind == "error" and f"could not reach 127.0.0.1 on port {router.port}; check the address" in message
    # Refused, timed out and reset read alike: the button tells a prober nothing about a port.
    for raw in ("refused", "Errno", "timed out", "reset"):
        assert raw not in message and raw not in _router(router.id).last_error


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::ffff:127.0.0.1"])
def test_in_production_test_connection_refuses_loopback_and_link_local_hosts(app, make_owner, make_router, router_box, host):
    from portal.hotspot.routers import RouterAddressRefused, check_connection

    router = make_router(make_owner())
    router.host = host
    db.session.commit()
    app.config["IS_PRODUCTION"] = True
    try:
        with pytest.raises(RouterAddressRefused, match="this server or its link-local network"):
            check_connection(router)
    finally:
        app.config["IS_PRODUCTION"] = False
    assert router_box.command_log == []  # nothing was sent: the sandbox router on 127.0.0.1 was never reached
    assert "link-local" in _router(router.id).last_error


def test_in_production_test_connection_still_reaches_a_private_lan_or_vpn_address(app, make_owner, make_router):
    from portal.hotspot.routers import _refuse_internal_host

    app.config["IS_PRODUCTION"] = True
    try:
        for host in ("10.8.0.2", "192.168.88.1", "203.0.113.10"):
            _refuse_internal_host(host, "r")  # no error: only loopback and link-local are refused
    finally:
        app.config["IS_PRODUCTION"] = False


def test_live_sessions_are_listed_and_one_can_be_disconnected(app, signed_in, make_router, router_box):
    owner, b = signed_in()
    router = make_router(owner)
    router_box.users["ABC123"] = {".id": "*99", "name": "ABC123", "password": "ABC123", "profile": "default"}
    session = router_box.log_in_host(
        user="ABC123", password_matches=lambda p: True, ip="10.5.50.23", mac="AA:BB:CC:DD:EE:01", login_by="api"
    )

    page = b.get(f"/dashboard/routers/{router.id}/sessions")
    assert page.status_code == 200 and "ABC123" in page.text and "AA:BB:CC:DD:EE:01" in page.text

    response = b.post(f"/dashboard/routers/{router.id}/sessions/disconnect", {"session_id": session[".id"]})

    assert response.status_code == 302
    assert router_box.active == {}
    assert "Nobody is connected" in b.get(f"/dashboard/routers/{router.id}/sessions").text


def test_disconnect_rejects_a_malformed_session_id(app, signed_in, make_router):
    owner, b = signed_in()
    router = make_router(owner)
    page = b.follow(b.post(f"/dashboard/routers/{router.id}/sessions/disconnect", {"session_id": "; /system reboot"}))
    assert flashes(page.text)[0][0] == "error"


def test_sessions_page_explains_an_unreachable_router(app, signed_in, make_router):
    owner, b = signed_in()
    router = make_router(owner)
    router.port = _closed_port()
    db.session.commit()
    page = b.get(f"/dashboard/routers/{router.id}/sessions")
    assert page.status_code == 200 and "refused" in page.text


def test_router_page_lists_unfinished_activations(app, signed_in, make_router, make_plan):
    owner, b = signed_in()
    router = make_router(owner)
    plan = make_plan(owner)
    voucher = Voucher(code="STUCK1", owner_id=owner.id, plan_id=plan.id, router_id=router.id, status="paid")
    db.session.add(voucher)
    db.session.flush()
    db.session.add(
        Activation(voucher_id=voucher.id, router_id=router.id, status="failed", attempts=3, last_error="no answer")
    )
    db.session.commit()

    page = b.get(f"/dashboard/routers/{router.id}")

    assert "STUCK1" in page.text and "no answer" in page.text
    assert "1</span>" in b.get("/dashboard/routers").text  # the list's waiting-work count


def test_disabling_a_router_closes_its_customer_page(app, signed_in, make_router, customer):
    owner, b = signed_in()
    router = make_router(owner)
    assert customer.open_plans(router.slug).status_code == 200

    b.post(f"/dashboard/routers/{router.id}/disable")

    assert _router(router.id).status == "disabled"
    assert customer.open_plans(router.slug).status_code == 404
    b.post(f"/dashboard/routers/{router.id}/enable")
    assert customer.open_plans(router.slug).status_code == 200


def test_login_html_forwards_every_hotspot_variable_to_the_routers_portal_page(app, signed_in, make_router):
    owner, b = signed_in()
    router = make_router(owner)
    portal_url = f"{app.config['PORTAL_BASE_URL']}/r/{router.slug}"

    response = b.get(f"/dashboard/routers/{router.id}/setup/login.html")

    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    page = response.text
    refresh = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', page).group(1)
    assert refresh.startswith(portal_url + "?")
    form = re.search(r'<form name="portal" action="([^"]+)" method="get">', page).group(1)
    assert form == portal_url
    for name in HOTSPOT_VARIABLES:
        assert f"{name}=$({name}-esc)" in refresh, name
        assert f'<input type="hidden" name="{name}" value="$({name})">' in page, name
    assert "document.portal.submit()" in page  # and the meta refresh works without it


def test_setup_script_creates_a_limited_api_user_and_opens_the_walled_garden(app, signed_in, make_router):
    owner, b = signed_in()
    router = make_router(owner)
    page = b.get(f"/dashboard/routers/{router.id}/setup")
    assert page.status_code == 200 and "Download login.html" in page.text

    response = b.post(
        f"/dashboard/routers/{router.id}/setup/script",
        {
            "api_username": "voucher-portal",
            "portal_address": "203.0.113.10",
            "hotspot_profile": "hsprof1",
            "html_directory": "flash/hotspot",
        },
    )

    assert response.status_code == 200
    script = re.search(r'<textarea class="code" id="setup-script"[^>]*>(.*?)</textarea>', response.text, re.S).group(1)
    script = (
        script.replace("&#34;", '"')
        .replace("&quot;", '"')
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&")
    )
    host = "127.0.0.1"
    assert '/user group add name="voucher-portal" policy=api,read,write' in script
    password = re.search(
        r'/user add name="voucher-portal" group="voucher-portal" password="([^"]+)" address=203.0.113.10/32', script
    ).group(1)
    assert len(password) >= 30
    assert "/ip service set api disabled=no port=" in script and "address=203.0.113.10/32" in script
    assert f'/ip hotspot walled-garden add action=allow dst-host="{host}"' in script
    assert f"/ip hotspot walled-garden ip add action=accept dst-address={host}" in script
    assert 'html-directory="flash/hotspot"' in script
    # The password is shown once and stored only on confirmation, encrypted.
    assert _router(router.id).api_password != password
    sealed = re.search(
        r'name="sealed" type="hidden" value="([^"]+)"|type="hidden" name="sealed" value="([^"]+)"|id="sealed" name="sealed" type="hidden" value="([^"]+)"',
        response.text,
    )
    sealed_value = next(g for g in sealed.groups() if g)
    assert password not in sealed_value
    saved = b.post(f"/dashboard/routers/{router.id}/setup/confirm", {"sealed": sealed_value})
    assert saved.status_code == 302
    assert _router(router.id).api_password == password and _router(router.id).api_username == "voucher-portal"
    assert password not in _router(router.id).api_password_encrypted


def test_setup_script_with_a_named_portal_host_and_no_address(app, signed_in, make_router):
    from portal.hotspot import router_setup

    owner, _ = signed_in()
    router = make_router(owner)
    script = router_setup.setup_script(router, "https://portal.example.co.ke", router_setup.SetupOptions(), "pw-123")
    assert '/ip hotspot walled-garden add action=allow dst-host="portal.example.co.ke"' in script
    assert '/ip hotspot walled-garden ip add action=accept dst-host="portal.example.co.ke"' in script
    assert "address=" not in script.split("# 3.")[1].split("\n")[1]  # api service open to any address
    assert "may log in from anywhere" in script


def test_setup_confirm_refuses_tampered_or_foreign_credentials(app, signed_in, make_router, router_box):
    from portal.hotspot import router_setup

    owner, b = signed_in()
    router = make_router(owner)
    other = make_router(owner, name="Other")
    foreign = router_setup.seal_credentials(other, "voucher-portal", "someone-elses")
    for sealed in ("garbage", foreign):
        page = b.follow(b.post(f"/dashboard/routers/{router.id}/setup/confirm", {"sealed": sealed}))
        assert flashes(page.text)[0][0] == "error"
    assert _router(router.id).api_password == router_box.password


def test_setup_form_rejects_bad_input_next_to_the_field(app, signed_in, make_router):
    owner, b = signed_in()
    router = make_router(owner)
    response = b.post(
        f"/dashboard/routers/{router.id}/setup/script",
        {
            "api_username": "bad name;",
            "portal_address": "not-an-ip",
            "hotspot_profile": "hsprof1",
            "html_directory": "../x",
        },
    )
    assert response.status_code == 400
    errors = field_errors(response.text)
    assert "Use letters, digits, dots, dashes and underscores only." in errors
    assert "Enter an IP address or a network like 10.8.0.0/24." in errors
    assert "Use a folder name like hotspot or flash/hotspot." in errors
    assert "setup-script" not in response.text

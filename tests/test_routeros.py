"""portal.routeros against the sandbox router: real librouteros, real RouterOS API bytes, 127.0.0.1 only."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from portal.routeros import (
    RouterCommandFailed,
    RouterConnection,
    RouterCredentials,
    RouterLoginFailed,
    RouterPool,
    RouterUnreachable,
)
from portal.routeros.hotspot import (
    add_hotspot_user,
    disconnect_session,
    ensure_profile,
    format_routeros_duration,
    get_hotspot_user,
    list_active_sessions,
    list_hotspot_servers,
    login_device,
    parse_routeros_duration,
    read_identity,
    remove_hotspot_user,
)
from portal.sandbox.hotspot import SandboxHotspot, chap_response, decode_octal_escapes, meta_refresh_url
from portal.sandbox.router import SandboxRouter

ROUTER_PASSWORD = "sandbox-router-pass"
DEVICE_MAC = "AA:BB:CC:DD:EE:01"
DEVICE_IP = "10.5.50.23"


@pytest.fixture
def router():
    with SandboxRouter(password=ROUTER_PASSWORD) as sandbox:
        ensure_test_profile(sandbox)
        yield sandbox


def ensure_test_profile(sandbox: SandboxRouter) -> None:
    sandbox.profiles["plan-1h"] = {".id": "*FF", "name": "plan-1h", "shared-users": "1"}


@pytest.fixture
def credentials(router):
    return RouterCredentials("127.0.0.1", router.port, "portal", ROUTER_PASSWORD, label="test-router")


@pytest.fixture
def conn(credentials):
    connection = RouterConnection(credentials, connect_timeout=2.0, command_timeout=2.0)
    yield connection
    connection.close()


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False  # never send 127.0.0.1 traffic through a proxy from the environment
    yield session
    session.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- connecting and logging in


def test_login_and_identity_reads_the_router_name(conn):
    assert read_identity(conn) == "SandboxRouter"
    assert list_hotspot_servers(conn) == ["hotspot1"]


def test_wrong_password_raises_login_failed_with_the_routers_reason(router):
    creds = RouterCredentials("127.0.0.1", router.port, "portal", "not-the-password", label="shop-1")
    with pytest.raises(RouterLoginFailed) as caught:
        read_identity(RouterConnection(creds, connect_timeout=2.0))
    assert "invalid user name or password (6)" in str(caught.value)
    assert "not-the-password" not in str(caught.value)
    assert caught.value.router_label == "shop-1"


def test_closed_port_is_unreachable():
    creds = RouterCredentials("127.0.0.1", free_port(), "portal", ROUTER_PASSWORD)
    with pytest.raises(RouterUnreachable, match="refused"):
        RouterConnection(creds, connect_timeout=1.0).run("/system/identity/print")


def test_credentials_repr_hides_the_password(credentials):
    assert ROUTER_PASSWORD not in repr(credentials)


def test_connection_is_reused_for_many_commands(router, conn):
    for _ in range(5):
        read_identity(conn)
    get_hotspot_user(conn, "NOPE")
    assert router.count_commands("/login") == 1


def test_trap_keeps_the_connection_and_carries_the_routers_message(router, conn):
    with pytest.raises(RouterCommandFailed) as caught:
        add_hotspot_user(conn, "V1", "V1", profile="no-such-plan")
    assert caught.value.trap_message == "input does not match any value of profile"
    assert caught.value.category == 1
    assert read_identity(conn) == "SandboxRouter"
    assert router.count_commands("/login") == 1


def test_unknown_command_is_a_command_failure_with_category_0(conn):
    with pytest.raises(RouterCommandFailed) as caught:
        conn.run("/ip/hotspot/nonsense/print")
    assert caught.value.trap_message == "no such command prefix"
    assert caught.value.category == 0


def test_tls_connection(tmp_path):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*self_signed_certificate(tmp_path))
    with SandboxRouter(tls_context=server_context) as sandbox:
        creds = RouterCredentials("127.0.0.1", sandbox.port, "portal", ROUTER_PASSWORD, use_tls=True)
        connection = RouterConnection(creds, connect_timeout=2.0)
        assert read_identity(connection) == "SandboxRouter"
        connection.close()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router-api")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "router.pem", folder / "router.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


# --- hotspot operations


def test_ensure_profile_creates_then_updates_then_leaves_alone(router, conn):
    ensure_profile(conn, "plan-day", rate_limit="2M/2M")
    assert router.profiles["plan-day"]["rate-limit"] == "2M/2M"
    assert router.profiles["plan-day"]["shared-users"] == "1"

    ensure_profile(conn, "plan-day", rate_limit="1M/4M", shared_users=2)
    assert router.profiles["plan-day"]["rate-limit"] == "1M/4M"
    assert router.profiles["plan-day"]["shared-users"] == "2"

    sets_before = router.count_commands("/ip/hotspot/user/profile/set")
    ensure_profile(conn, "plan-day", rate_limit="1M/4M", shared_users=2)
    assert router.count_commands("/ip/hotspot/user/profile/set") == sets_before


def test_ensure_profile_without_rate_limit_clears_it(router, conn):
    ensure_profile(conn, "plan-day", rate_limit="2M/2M")
    ensure_profile(conn, "plan-day", rate_limit=None)
    assert "rate-limit" not in router.profiles["plan-day"]


def test_add_hotspot_user_creates_with_limits(router, conn):
    created = add_hotspot_user(
        conn,
        "K7Q2M9",
        "K7Q2M9",
        profile="plan-1h",
        limit_uptime_s=3600,
        limit_bytes_total=500_000_000,
        comment="voucher 812",
    )
    assert created is True
    user = router.users["K7Q2M9"]
    assert (user["profile"], user["limit-uptime"], user["limit-bytes-total"]) == ("plan-1h", "1h", "500000000")
    assert user["comment"] == "voucher 812"
    sent = router.command_log[-1]
    assert "=limit-uptime=1h" in sent and "=password=***" in sent


def test_adding_the_same_user_twice_is_done_not_an_error(router, conn):
    assert add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h") is True
    assert add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h") is False
    assert list(router.users) == ["K7Q2M9"]


def test_attributes_left_as_none_are_not_sent(router, conn):
    add_hotspot_user(conn, "K7Q2M9", "pw", profile="plan-1h")
    sent = router.command_log[-1]
    assert not any(word.startswith(("=limit-uptime=", "=limit-bytes-total=", "=comment=", "=server=")) for word in sent)


def test_numeric_name_and_yes_comment_come_back_as_the_same_strings(conn):
    add_hotspot_user(conn, "123456", "0042", profile="plan-1h", comment="yes")
    user = get_hotspot_user(conn, "123456")
    assert user is not None
    assert (user["name"], user["password"], user["comment"]) == ("123456", "0042", "yes")
    assert user["disabled"] == "false"
    assert all(isinstance(value, str) for value in user.values())


def test_get_hotspot_user_returns_none_when_missing(conn):
    assert get_hotspot_user(conn, "NOPE") is None


def test_login_device_with_a_known_host_creates_a_session(router, conn):
    router.add_host(DEVICE_MAC, DEVICE_IP)
    add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h")
    login_device(conn, "K7Q2M9", "K7Q2M9", ip=DEVICE_IP, mac=DEVICE_MAC)
    [session] = list_active_sessions(conn)
    assert (session.user, session.address, session.mac_address) == ("K7Q2M9", DEVICE_IP, DEVICE_MAC)
    assert (session.bytes_in, session.bytes_out) == (0, 0)


def test_login_device_for_an_unknown_host_fails(router, conn):
    add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h")
    with pytest.raises(RouterCommandFailed):
        login_device(conn, "K7Q2M9", "K7Q2M9", ip="10.5.50.99", mac=None)
    assert router.active == {}


def test_login_device_with_a_wrong_password_fails(router, conn):
    router.add_host(DEVICE_MAC, DEVICE_IP)
    add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h")
    with pytest.raises(RouterCommandFailed, match="invalid username or password"):
        login_device(conn, "K7Q2M9", "wrong", ip=DEVICE_IP, mac=DEVICE_MAC)


def test_remove_hotspot_user_removes_user_and_session_and_is_idempotent(router, conn):
    router.add_host(DEVICE_MAC, DEVICE_IP)
    add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h")
    add_hotspot_user(conn, "OTHER1", "OTHER1", profile="plan-1h")
    login_device(conn, "K7Q2M9", "K7Q2M9", ip=DEVICE_IP, mac=DEVICE_MAC)

    assert remove_hotspot_user(conn, "K7Q2M9") is True
    assert list(router.users) == ["OTHER1"]
    assert router.active == {}
    assert remove_hotspot_user(conn, "K7Q2M9") is False


def test_remove_finishes_sessions_left_by_an_interrupted_removal(router, conn):
    router.add_host(DEVICE_MAC, DEVICE_IP)
    add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h")
    login_device(conn, "K7Q2M9", "K7Q2M9", ip=DEVICE_IP, mac=DEVICE_MAC)
    del router.users["K7Q2M9"]  # RouterOS keeps the session when only the user is removed
    assert remove_hotspot_user(conn, "K7Q2M9") is False
    assert router.active == {}


def test_disconnect_session_twice_is_fine(router, conn):
    router.add_host(DEVICE_MAC, DEVICE_IP)
    add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h")
    login_device(conn, "K7Q2M9", "K7Q2M9", ip=DEVICE_IP, mac=DEVICE_MAC)
    [session] = list_active_sessions(conn)
    disconnect_session(conn, session.id)
    disconnect_session(conn, session.id)
    assert list_active_sessions(conn) == []


# --- faults


def test_connection_dropped_mid_command_completes_once_on_a_fresh_connection(router, conn):
    read_identity(conn)
    router.drop_connections_on_next_command()
    assert add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h") is True
    assert list(router.users) == ["K7Q2M9"]
    assert router.count_commands("/login") == 2


def test_reply_lost_after_the_router_applied_the_command_still_gives_one_user(router, conn):
    read_identity(conn)
    router.drop_connections_on_next_command(after_executing=True)
    assert add_hotspot_user(conn, "K7Q2M9", "K7Q2M9", profile="plan-1h") is False  # already there
    assert list(router.users) == ["K7Q2M9"]


def test_a_fresh_connection_that_dies_is_not_retried(router, conn):
    router.drop_connections_on_next_command()  # drops the /login
    with pytest.raises(RouterUnreachable):
        read_identity(conn)
    assert router.count_commands("/login") == 1
    assert read_identity(conn) == "SandboxRouter"


def test_router_going_away_and_coming_back_reconnects(router, conn):
    assert read_identity(conn) == "SandboxRouter"
    router.refuse_connections(True)
    with pytest.raises(RouterUnreachable):
        read_identity(conn)
    router.refuse_connections(False)
    assert read_identity(conn) == "SandboxRouter"
    assert router.count_commands("/login") == 2


def test_timeout_is_unreachable_and_the_next_command_gets_its_own_reply(router, credentials):
    connection = RouterConnection(credentials, connect_timeout=2.0, command_timeout=0.2)
    assert read_identity(connection) == "SandboxRouter"
    router.command_delay_s = 0.5
    with pytest.raises(RouterUnreachable, match="no answer"):
        read_identity(connection)
    router.command_delay_s = 0
    # Had the socket been kept, this print would read the identity reply that arrives late.
    assert list_hotspot_servers(connection) == ["hotspot1"]
    assert get_hotspot_user(connection, "NOPE") is None
    connection.close()


def test_slow_login_is_unreachable(router, credentials):
    router.command_delay_s = 0.5
    with pytest.raises(RouterUnreachable):
        read_identity(RouterConnection(credentials, connect_timeout=0.2))


def test_twenty_threads_share_one_connection(router, conn):
    names = [f"T{number:02d}X" for number in range(20)]
    start = threading.Barrier(len(names))

    def add(name: str) -> bool:
        start.wait()
        return add_hotspot_user(conn, name, name, profile="plan-1h")

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(add, names))
    assert results == [True] * 20
    assert sorted(router.users) == names
    assert router.count_commands("/login") == 1


# --- pool


def test_pool_reuses_per_key_and_replaces_on_new_credentials(router, credentials):
    pool = RouterPool(connect_timeout=2.0, command_timeout=2.0)
    first = pool.get("router-1", credentials)
    assert pool.get("router-1", credentials) is first
    read_identity(first)

    changed = RouterCredentials(credentials.host, credentials.port, "portal", "new-pass", label="test-router")
    router.set_password("new-pass")
    second = pool.get("router-1", changed)
    assert second is not first
    assert read_identity(second) == "SandboxRouter"
    pool.discard("router-1")
    assert pool.get("router-1", changed) is not second
    pool.close_all()


# --- durations


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (90, "1m30s"), (3600, "1h"), (5400, "1h30m"), (86400, "1d"), (694_861, "1w1d1h1m1s")],
)
def test_format_routeros_duration(seconds, text):
    assert format_routeros_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1w2d3h4m5s", 788_645),
        ("1d02:03:04", 93_784),
        ("00:30:00", 1800),
        ("1w3d10:51:24", 903_084),
        ("0s", 0),
        ("0", 0),
        ("45", 45),
        ("1s500ms", 1),
    ],
)
def test_parse_routeros_duration(text, seconds):
    assert parse_routeros_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "none", "1x", "h", "1h 2m", "1:2"])
def test_parse_routeros_duration_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_routeros_duration(text)


@given(st.integers(min_value=0, max_value=10 * 365 * 86400))
def test_duration_round_trips(seconds):
    assert parse_routeros_duration(format_routeros_duration(seconds)) == seconds


def test_router_accepts_every_duration_we_format(router, conn):
    for index, seconds in enumerate([1, 59, 61, 3599, 3601, 86399, 90061, 1_209_600]):
        add_hotspot_user(conn, f"D{index}", "pw", profile="plan-1h", limit_uptime_s=seconds)
        assert parse_routeros_duration(router.users[f"D{index}"]["limit-uptime"]) == seconds


# --- the hotspot login servlet


@pytest.fixture
def pap_hotspot(router):
    with SandboxHotspot(router, portal_url="http://portal.test/r/shop-1") as hotspot:
        yield hotspot


@pytest.fixture
def chap_hotspot(router):
    with SandboxHotspot(router, portal_url="http://portal.test/r/shop-1", chap=True) as hotspot:
        yield hotspot


def portal_query(login_page: str) -> dict[str, str]:
    """The hotspot variables the login page forwards to the portal."""
    return dict(parse_qsl(urlsplit(meta_refresh_url(login_page)).query))


def test_login_page_forwards_to_the_portal_with_hotspot_variables(pap_hotspot, http):
    page = http.get(pap_hotspot.login_url, params={"dst": "http://news.test/"}, timeout=5)
    assert meta_refresh_url(page.text).startswith("http://portal.test/r/shop-1?")
    assert portal_query(page.text) == {
        "mac": DEVICE_MAC,
        "ip": DEVICE_IP,
        "link-login-only": pap_hotspot.login_url,
        "link-orig": "http://news.test/",
    }
    assert "document.redirect.submit()" in page.text


def test_pap_login_creates_a_session_and_redirects_to_dst(router, pap_hotspot, http):
    router.users["K7Q2M9"] = {".id": "*A", "name": "K7Q2M9", "password": "K7Q2M9", "profile": "plan-1h"}
    response = http.post(
        pap_hotspot.login_url,
        data={"username": "K7Q2M9", "password": "K7Q2M9", "dst": "http://portal.test/online"},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "http://portal.test/online"
    assert router.session_for_mac(DEVICE_MAC)["user"] == "K7Q2M9"
    assert "logged in as K7Q2M9" in http.get(f"{pap_hotspot.base_url}/status", timeout=5).text


def test_wrong_password_sends_the_device_back_to_the_portal_with_an_error(router, pap_hotspot, http):
    router.users["K7Q2M9"] = {".id": "*A", "name": "K7Q2M9", "password": "K7Q2M9", "profile": "plan-1h"}
    page = http.get(pap_hotspot.login_url, params={"username": "K7Q2M9", "password": "nope"}, timeout=5)
    assert "error=invalid+username+or+password" in meta_refresh_url(page.text)
    assert router.active == {}


def test_chap_login_with_the_offered_challenge(router, chap_hotspot, http):
    router.users["K7Q2M9"] = {".id": "*A", "name": "K7Q2M9", "password": "secret", "profile": "plan-1h"}
    page = http.get(chap_hotspot.login_url, timeout=5)
    query = portal_query(page.text)
    assert len(decode_octal_escapes(query["chap-id"])) == 1
    assert len(decode_octal_escapes(query["chap-challenge"])) == 16

    plain = http.get(
        chap_hotspot.login_url, params={"username": "K7Q2M9", "password": "secret"}, allow_redirects=False, timeout=5
    )
    assert plain.status_code == 200 and router.active == {}  # http-chap only: a plain password fails

    page = http.get(chap_hotspot.login_url, timeout=5)  # every login page brings a fresh challenge
    query = portal_query(page.text)
    hashed = chap_response(query["chap-id"], "secret", query["chap-challenge"])
    response = http.get(
        chap_hotspot.login_url,
        params={"username": "K7Q2M9", "password": hashed, "dst": "http://portal.test/online"},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "http://portal.test/online"
    assert router.session_for_mac(DEVICE_MAC)["login-by"] == "http-chap"


def test_logout_ends_the_session(router, pap_hotspot, http):
    router.users["K7Q2M9"] = {".id": "*A", "name": "K7Q2M9", "password": "pw", "profile": "plan-1h"}
    http.get(pap_hotspot.login_url, params={"username": "K7Q2M9", "password": "pw"}, timeout=5)
    http.get(f"{pap_hotspot.base_url}/logout", timeout=5)
    assert router.active == {}
    assert "not logged in" in http.get(f"{pap_hotspot.base_url}/status", timeout=5).text


def test_chap_response_matches_the_routeros_formula():
    # md5(0x07 + "pw" + 0x01 0x02) written out by hand.
    import hashlib

    assert chap_response(r"\007", "pw", r"\001\002") == hashlib.md5(b"\x07pw\x01\x02").hexdigest()
    assert decode_octal_escapes(r"\371\357\015") == b"\xf9\xef\x0d"

"""The sandbox router speaks RouterOS's wire protocol: checked with librouteros' own framing code."""

from __future__ import annotations

import socket

import pytest
from librouteros.connections import SocketTransport
from librouteros.exceptions import FatalError
from librouteros.protocol import ApiProtocol
from librouteros.protocol import encode_length as librouteros_encode_length

from portal.sandbox.router import SandboxRouter, encode_length

PASSWORD = "sandbox-router-pass"


@pytest.fixture
def router():
    with SandboxRouter(password=PASSWORD) as sandbox:
        yield sandbox


class RawClient:
    """Sends sentences and returns every reply sentence up to !done, as raw words."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.protocol = ApiProtocol(SocketTransport(self.sock), encoding="utf-8")

    def send(self, *words: str) -> list[tuple[str, ...]]:
        self.protocol.writeSentence(*words)
        replies = []
        while True:
            reply_word, rest = self.protocol.readSentence()
            replies.append((reply_word, *rest))
            if reply_word == "!done":
                return replies

    def login(self) -> None:
        assert self.send("/login", "=name=portal", f"=password={PASSWORD}") == [("!done",)]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(router):
    raw = RawClient(router.port)
    raw.login()
    yield raw
    raw.close()


@pytest.mark.parametrize("length", [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 0xFFFFFFF])
def test_length_encoding_matches_librouteros(length):
    assert encode_length(length) == librouteros_encode_length(length)


def test_commands_before_login_are_refused(router):
    raw = RawClient(router.port)
    [trap, done] = raw.send("/system/identity/print")
    assert trap[0] == "!trap" and done == ("!done",)
    raw.close()


def test_wrong_login_is_a_trap_then_done(router):
    raw = RawClient(router.port)
    assert raw.send("/login", "=name=portal", "=password=wrong") == [
        ("!trap", "=message=invalid user name or password (6)"),
        ("!done",),
    ]
    raw.close()


def test_quit_answers_fatal_and_closes(client):
    client.protocol.writeSentence("/quit")
    with pytest.raises(FatalError, match="session terminated on request"):
        client.protocol.readSentence()


def test_print_with_no_rows_answers_empty_then_done(client):
    assert client.send("/ip/hotspot/user/print") == [("!empty",), ("!done",)]


def test_add_returns_ret_and_tags_are_echoed(client):
    replies = client.send("/ip/hotspot/user/add", "=name=A1", "=password=p", ".tag=7")
    assert replies == [("!done", "=ret=*1", ".tag=7")]


def test_queries_proplist_and_or(client, router):
    client.send("/ip/hotspot/user/add", "=name=A1", "=password=p", "=comment=x")
    client.send("/ip/hotspot/user/add", "=name=B2", "=password=p", "=comment=y")
    client.send("/ip/hotspot/user/add", "=name=C3", "=password=p")
    rows = client.send("/ip/hotspot/user/print", "=.proplist=name", "?name=A1", "?=name=B2", "?#|")
    assert rows == [("!re", "=name=A1"), ("!re", "=name=B2"), ("!done",)]
    rows = client.send("/ip/hotspot/user/print", "=.proplist=name", "?-comment")
    assert rows == [("!re", "=name=C3"), ("!done",)]


def test_bad_and_empty_time_values_are_refused(client, router):
    for value in ["", "1 hour", "none"]:
        [trap, _] = client.send("/ip/hotspot/user/add", "=name=A1", "=password=p", f"=limit-uptime={value}")
        assert trap == ("!trap", "=message=invalid time value for argument limit-uptime", "=category=1")
    client.send("/ip/hotspot/user/add", "=name=A1", "=password=p", "=limit-uptime=01:30:00")
    assert router.users["A1"]["limit-uptime"] == "1h30m"


def test_unknown_parameter_is_refused(client):
    [trap, _] = client.send("/ip/hotspot/user/add", "=name=A1", "=limit-uptme=1h")
    assert trap == ("!trap", "=message=unknown parameter limit-uptme")


def test_remove_of_a_missing_item(client):
    [trap, _] = client.send("/ip/hotspot/user/remove", "=.id=*99")
    assert trap == ("!trap", "=message=no such item", "=category=0")


def test_long_words_survive(client, router):
    comment = "ü" * 9000  # 18000 bytes: a three-byte length
    client.send("/ip/hotspot/user/add", "=name=A1", "=password=p", f"=comment={comment}")
    [row, _] = client.send("/ip/hotspot/user/print", "=.proplist=comment")
    assert row == ("!re", f"=comment={comment}")


def test_refused_while_down_then_same_port_again(router):
    port = router.port
    router.refuse_connections(True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    router.refuse_connections(False)
    assert router.port == port
    RawClient(port).close()


def test_passwords_are_masked_in_the_command_log(client, router):
    client.send("/ip/hotspot/user/add", "=name=A1", "=password=hunter2")
    assert all("hunter2" not in word for sentence in router.command_log for word in sentence)
    assert all(PASSWORD not in word for sentence in router.command_log for word in sentence)


def test_shared_users_limit(client, router):
    router.add_host("AA:BB:CC:DD:EE:01", "10.5.50.23")
    router.add_host("AA:BB:CC:DD:EE:02", "10.5.50.24")
    client.send("/ip/hotspot/user/add", "=name=A1", "=password=p")
    assert client.send("/ip/hotspot/active/login", "=user=A1", "=password=p", "=ip=10.5.50.23") == [("!done",)]
    [trap, _] = client.send("/ip/hotspot/active/login", "=user=A1", "=password=p", "=ip=10.5.50.24")
    assert trap == ("!trap", "=message=no more sessions are allowed for user A1")

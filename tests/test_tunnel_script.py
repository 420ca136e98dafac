"""The one pasted script for a tunnel router: a golden copy, rerunnable lines, hostile values quoted.

A golden file changed on purpose is rewritten with ``PORTAL_UPDATE_GOLDEN=1``; read the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from portal.hotspot import router_setup
from portal.hotspot.rsc import comment_text, ros_str
from portal.models import Router
from portal.sandbox.pulling_router import tokenize
from portal.tunnel.peers import TunnelSetup

GOLDEN = Path(__file__).parent / "golden"
BASE = "https://portal.example.com"
HOSTILE = 'Mama "Njeri"; $x\n/system reset-configuration\r:put "$(x)" ?'
ROUTER_KEY = "sDBaCNL2x7xIqTmf624ClI0yEL8z/jBqYtTXXghIo38="
HUB_KEY = "zk+HZezDf4BtugtbV4MQzvKnZxPFD7rJgnynSO/Fl20="


def _router(**kw) -> Router:  # type: ignore[no-untyped-def]
    values = dict(name="Mama Njeri Cafe", slug="mama-njeri-4k2a", host="10.77.0.17", port=8728, use_tls=False,
                  transport="api", connection_mode="tunnel", tunnel_address="10.77.0.17")
    values.update(kw)
    return Router(**values)


def _tunnel(**kw) -> TunnelSetup:  # type: ignore[no-untyped-def]
    values = dict(interface="wg-portal", router_private_key=ROUTER_KEY, router_address="10.77.0.17/16",
                  hub_public_key=HUB_KEY, hub_address="10.77.0.1", endpoint_host="hub.example.net", endpoint_port=51820)
    values.update(kw)
    return TunnelSetup(**values)


def _script(router: Router | None = None, **options) -> str:  # type: ignore[no-untyped-def]
    options.setdefault("tunnel", _tunnel())
    return router_setup.setup_script(router or _router(), BASE, router_setup.SetupOptions(**options), "S3cret-pass_word")


def test_golden_tunnel_setup_script():
    text = _script()
    path = GOLDEN / "tunnel_setup.rsc"
    if os.environ.get("PORTAL_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), "tunnel_setup.rsc changed; rerun with PORTAL_UPDATE_GOLDEN=1 if that is intended"


def test_the_script_holds_every_tunnel_piece_the_router_needs():
    script = _script()
    assert 'persistent-keepalive=25s' in script and "allowed-address=10.77.0.1/32" in script
    assert 'endpoint-address="hub.example.net" endpoint-port=51820' in script
    assert f'public-key="{HUB_KEY}"' in script and f'private-key="{ROUTER_KEY}"' in script
    assert "/ip address add address=10.77.0.17/16 interface=\"wg-portal\"" in script
    assert "/ip service set api disabled=no port=8728 address=10.77.0.1/32" in script
    assert "/ip service set api-ssl address=10.77.0.1/32" in script
    assert re.search(r'/user add name="voucher-portal" group="voucher-portal" password="S3cret-pass_word" address=10.77.0.1/32', script)
    # The input rule accepts the API from the hub only, and is moved before every other rule (so before any drop).
    assert ('/ip firewall filter add chain=input action=accept in-interface="wg-portal" src-address=10.77.0.1 '
            'protocol=tcp dst-port=8728') in script
    assert "/ip firewall filter move ($ours->0) ($ids->0)" in script
    # The WireGuard lines come before the API user: the tunnel exists before the API is limited to it.
    assert script.index("/interface wireguard add") < script.index("/user add") < script.index("/ip service set api ")
    # Still there: least-privilege user and walled garden.
    assert "policy=api,read,write" in script and 'walled-garden add action=allow dst-host="portal.example.com"' in script
    assert 'device-mode get mode' in script and '/system resource get version' in script


def test_every_adding_line_is_guarded_by_a_find_so_a_second_paste_changes_nothing():
    for line in _script().splitlines():
        if line.startswith("#") or " add " not in f" {line} ":
            continue
        assert line.startswith(":if ([:len [") and "= 0) do={" in line, f"unguarded add: {line}"
    # The lines that are not guarded only set values to what they already are on a second run.
    unguarded = [ln for ln in _script().splitlines() if ln.startswith("/") and " add " not in ln]
    assert all(" set " in ln for ln in unguarded), unguarded


def test_tls_routers_get_the_api_ssl_port_and_the_plain_api_limited_too():
    script = _script(_router(port=8729, use_tls=True))
    assert "/ip service set api-ssl disabled=no port=8729 address=10.77.0.1/32" in script
    assert "/ip service set api address=10.77.0.1/32" in script
    assert "dst-port=8729" in script


def _bare_words(text: str) -> list[str]:
    words = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        words += [t for t in tokenize(line) if isinstance(t, str)]
    return words


def test_hostile_values_never_reach_the_tunnel_script_unquoted():
    router = _router(name=HOSTILE)
    evil = 'hub"; /system reset-configuration; :put "$x'
    script = _script(router, tunnel=_tunnel(endpoint_host=evil), api_username=HOSTILE, hotspot_profile=HOSTILE,
                     html_directory='hs"; /system reset-configuration')
    assert not any("reset-configuration" in word for word in _bare_words(script))
    assert f"endpoint-address={ros_str(evil)}" in script
    assert f"/user find name={ros_str(HOSTILE)}" in script
    # The name appears once, in the header comment, flattened to one plain line.
    assert comment_text(HOSTILE) in script.splitlines()[0]
    assert "\n/system reset" not in script and "\r" not in script
    # The only variables are the script's own.
    code = "\n".join(ln for ln in script.splitlines() if not ln.startswith("#"))
    variables = set(re.findall(r"(?<!\\)\$([A-Za-z(]+)", code))
    assert variables <= {"m", "ids", "ours"}, variables


def test_a_direct_router_gets_no_tunnel_lines():
    script = router_setup.setup_script(_router(connection_mode="direct"), BASE, router_setup.SetupOptions(), "pw")
    assert "wireguard" not in script and "device-mode" not in script


@pytest.mark.parametrize("name", ['wg"; flush ruleset; "', "wg\nportal", "wg portal", "x" * 16, ""])
def test_the_hubs_isolation_rules_refuse_an_interface_name_that_could_break_out(name):
    from portal.tunnel import wg

    with pytest.raises(wg.WgError):
        wg.guard_ruleset(name)


def test_the_hubs_isolation_rules_replace_themselves_atomically():
    from portal.tunnel import wg

    rules = wg.guard_ruleset("wg-portal").splitlines()
    assert rules[:2] == ["table inet portal_tunnel_wg_portal", "delete table inet portal_tunnel_wg_portal"]
    assert '    iifname "wg-portal" ct state established,related accept' in rules
    assert rules.index('    iifname "wg-portal" ct state established,related accept') < rules.index('    iifname "wg-portal" counter drop')


def test_the_tunnel_labs_tools_take_a_generated_password_that_starts_with_a_dash():
    """Router API passwords are token_urlsafe: about one in 64 starts with "-", which argparse
    reads as an option unless it is passed as --password=VALUE (how the lab and bench pass it)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    probe = subprocess.run(
        [sys.executable, "-m", "portal.sandbox.tunnel_lab", "probe", "--host", "127.0.0.1", "--port", str(port),
         "--username=portal", "--password=-Xy_dash-first", "--timeout", "0.5"],
        capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parents[1],
    )
    assert probe.returncode == 1, probe.stderr  # unreachable, as it should be: not 2, an argument error

"""What a pull router runs: golden copies of both script forms, the .rsc answer and the setup
script, and hostile values (quotes, ``;``, ``$``, newlines) that never reach a script unquoted.

A golden file changed on purpose is rewritten with ``PORTAL_UPDATE_GOLDEN=1``; read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portal.hotspot import pull_scripts, router_setup
from portal.hotspot.pull_sync import AddItem, ProfileItem, RemoveItem, SyncAnswer
from portal.hotspot.rsc import comment_text, ros_str
from portal.models import Router
from portal.sandbox.pulling_router import Str, tokenize

GOLDEN = Path(__file__).parent / "golden"
TOKEN = "T0k3n_example-abcdefghijklmnopqrstuvwxyz0123"
BASE = "https://portal.example.com"
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUexample\n-----END CERTIFICATE-----\n"
HOSTILE = 'Mama "Njeri"; $x\n/system reset-configuration\r:put "$(x)" ?'


def _router(**kw) -> Router:  # type: ignore[no-untyped-def]
    values = dict(name="Mama Njeri Cafe", slug="mama-njeri-4k2a", hotspot_server="hotspot1", transport="pull")
    values.update(kw)
    return Router(**values)


def _answer(**kw) -> SyncAnswer:  # type: ignore[no-untyped-def]
    values = dict(
        interval=15,
        profiles=[ProfileItem("portal-plan-3", "2M/5M"), ProfileItem("portal-plan-4", None)],
        add=[AddItem("w17", "ABCDE23456", "portal-plan-3", 3600, 0),
             AddItem("w18", "ZZZZ22RRTT", "portal-plan-4", 86400, 1 << 30, "AA:BB:CC:DD:EE:01")],
        remove=[RemoveItem("w19", "QQQQ33WWEE")],
        router_slug="mama-njeri-4k2a",
        hotspot_server="hotspot1",
    )
    values.update(kw)
    return SyncAnswer(**values)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PORTAL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with PORTAL_UPDATE_GOLDEN=1 if that is intended"


# ---------------------------------------------------------------------------------------------
# Golden copies


def test_golden_json_form_for_routeros_7_13_and_later():
    script = pull_scripts.sync_script(_router(), BASE, TOKEN, "json")
    _golden("pull_sync_json.rsc", script)
    # The parts the issue names, so a golden rewrite cannot quietly drop one.
    assert "/tool fetch url=$syncUrl http-method=post" in script and "output=user as-value" in script
    assert ':deserialize from=json value=($reply->"data")' in script
    assert 'find script="portal-sync"]] > 1) do={ :error' in script  # refuses to run twice
    assert "check-certificate=yes" in script and ":log warning" in script


def test_golden_rsc_form_for_routeros_6():
    script = pull_scripts.sync_script(_router(), BASE, TOKEN, "rsc")
    _golden("pull_sync_rsc.rsc", script)
    assert 'dst-path="portal-sync.rsc" check-certificate=yes' in script
    assert '/import file-name="portal-sync.rsc"' in script
    assert 'sync\\?format=rsc"' in script  # RouterOS 6 reads a bare ? as a request for help
    assert 'find script="portal-sync"]] > 1) do={ :error' in script and ":log warning" in script


def test_golden_rsc_answer():
    _golden("pull_answer.rsc", pull_scripts.answer_rsc(_answer()))


def test_golden_setup_scripts_for_both_forms():
    for form in pull_scripts.FORMS:
        options = pull_scripts.PullSetupOptions(form=form, interval_s=20, ca_pem=CA)
        _golden(f"pull_setup_{form}.rsc", pull_scripts.pull_setup_script(_router(), BASE, TOKEN, options))


def test_the_setup_script_carries_the_sync_script_intact():
    for form in pull_scripts.FORMS:
        setup = pull_scripts.pull_setup_script(_router(), BASE, TOKEN, pull_scripts.PullSetupOptions(form=form))
        line = next(line for line in setup.splitlines() if " source=" in line)
        source = [t for t in tokenize(line) if isinstance(t, Str)][-1].value
        assert source == pull_scripts.sync_script(_router(), BASE, TOKEN, form)
        assert "device-mode" in setup and "home" in setup  # the 7.17+ warning


def test_plain_http_portals_skip_the_certificate_check():
    script = pull_scripts.sync_script(_router(), "http://127.0.0.1:5000", TOKEN, "json")
    assert "check-certificate" not in script
    setup = pull_scripts.pull_setup_script(_router(), "http://127.0.0.1:5000", TOKEN, pull_scripts.PullSetupOptions())
    assert "certificate import" not in setup


def test_a_ca_is_imported_before_the_first_sync():
    setup = pull_scripts.pull_setup_script(_router(), BASE, TOKEN, pull_scripts.PullSetupOptions(ca_pem=CA))
    assert setup.index("/certificate import") < setup.index('/system script run "portal-sync"')


# ---------------------------------------------------------------------------------------------
# Hostile values


def _bare_words(text: str) -> list[str]:
    """Every unquoted word of every non-comment line: where a value would run as code."""
    words = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        words += [t for t in tokenize(line) if isinstance(t, str)]
    return words


@pytest.mark.parametrize("form", pull_scripts.FORMS)
def test_a_hostile_router_name_and_hotspot_server_never_reach_a_pull_script_unquoted(form):
    router = _router(name=HOSTILE, hotspot_server='hs1" ; /system reset-configuration ; :put "$x')
    setup = pull_scripts.pull_setup_script(router, BASE, TOKEN, pull_scripts.PullSetupOptions(form=form, html_directory=HOSTILE))
    for text in (setup, pull_scripts.sync_script(router, BASE, TOKEN, form)):
        assert not any("reset-configuration" in word for word in _bare_words(text))
    assert "server=" not in pull_scripts.sync_script(router, BASE, TOKEN, form)  # not a safe name: left out
    # The name is in the header comment, on one line, and nowhere else.
    assert comment_text(HOSTILE) in setup.splitlines()[0] and "\n/system reset" not in setup


def test_a_hostile_router_name_never_reaches_the_api_setup_script_unquoted():
    router = _router(name=HOSTILE, transport="api", port=8728, use_tls=False)
    options = router_setup.SetupOptions(html_directory=HOSTILE)
    script = router_setup.setup_script(router, BASE, options, "secret-password")
    assert not any("reset-configuration" in word for word in _bare_words(script))
    assert f"html-directory={ros_str(HOSTILE)}" in script


def test_hostile_plan_values_never_reach_the_rsc_answer():
    answer = _answer(
        profiles=[ProfileItem("portal-plan-3", '2M/5M"; /system reset-configuration; :put "$x\n')],
        hotspot_server=HOSTILE,
    )
    text = pull_scripts.answer_rsc(answer)
    assert not any("reset-configuration" in word for word in _bare_words(text))
    assert "server=" not in text


def test_the_sync_service_keeps_hostile_plans_out_of_the_answer(app, make_owner, make_plan):
    from portal.hotspot.pull_sync import _profile_for

    class Row:
        plan_id, rate_limit, devices = 7, '2M/5M"; /system reset-configuration', 1

    assert _profile_for(Row()) == ProfileItem("portal-plan-7", None)
    Row.rate_limit = "2M/5M 4M/8M 1M/2M 8/8 8"
    assert _profile_for(Row()).rate_limit == "2M/5M 4M/8M 1M/2M 8/8 8"


def test_ros_str_quotes_every_byte_so_that_routeros_reads_it_back():
    every = "".join(chr(c) for c in range(1, 128)) + "é€"
    for ros6 in (False, True):
        quoted = ros_str(every, ros6=ros6)
        assert "\n" not in quoted and "\r" not in quoted
        [token] = tokenize(quoted)
        assert token.value == every.encode("utf-8").decode("latin-1")

"""Every dashboard route, found by walking app.url_map (so routes added later are covered too):
signed-out visitors are sent to sign in, POSTs need a CSRF token, owners never reach another
owner's objects."""

from __future__ import annotations

from typing import Any

import pytest

from portal.dashboard import NAV_ITEMS
from portal.dashboard.access import OBJECT_ID_PARAMS, OBJECT_KEY_PARAMS, PUBLIC_ENDPOINTS

from .dashboard_support import Everything

SKIP_METHODS = {"HEAD", "OPTIONS"}



def dashboard_rules(app: Any) -> list[Any]:
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("dashboard.")]
    assert len(rules) > 10, "the dashboard routes were not found"
    return rules


def fill(rule: Any, everything: Everything | None) -> dict[str, Any]:
    """URL values for a rule: each parameter is the id (or key) of ``everything``'s object of that kind."""
    values: dict[str, Any] = {}
    for name in rule.arguments:
        if name in OBJECT_ID_PARAMS:
            model = OBJECT_ID_PARAMS[name]
            values[name] = everything.ids[model] if everything else 1
        elif name in OBJECT_KEY_PARAMS:
            model, column = OBJECT_KEY_PARAMS[name]
            values[name] = everything.keys[(model, column)] if everything else "X"
        else:
            pytest.fail(
                f"{rule.rule}: parameter <{name}> is not in access.OBJECT_ID_PARAMS/OBJECT_KEY_PARAMS, "
                "so nothing checks that owners cannot reach each other's objects through it"
            )
    return values


def build(app: Any, rule: Any, values: dict[str, Any]) -> str:
    with app.test_request_context():
        return app.url_map.bind("localhost").build(rule.endpoint, values, force_external=False)


def test_no_dashboard_route_is_reachable_without_signing_in(app, browser):
    visitor = browser()
    token = visitor.token()  # a real token, so a refusal is the sign-in check and not CSRF
    checked = 0
    for rule in dashboard_rules(app):
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        path = build(app, rule, fill(rule, None))
        for method in sorted(rule.methods - SKIP_METHODS):
            if method == "GET":
                response = visitor.get(path)
            else:
                response = visitor.post(path, {"csrf_token": token}, csrf=False)
            assert response.status_code == 302, f"{method} {path} answered {response.status_code} without sign-in"
            assert "/dashboard/sign-in" in response.headers["Location"], f"{method} {path}"
            checked += 1
    assert checked > 10


def test_only_the_sign_in_and_self_service_pages_are_public(app):
    # Sign-up answers 404 unless PORTAL_OPEN_SIGNUP; the reset page needs a signed link.
    assert PUBLIC_ENDPOINTS == {"dashboard.sign_in", "dashboard.sign_up", "dashboard.forgot_password",
                                "dashboard.reset_password"}


def test_every_dashboard_post_without_a_csrf_token_is_refused(app, signed_in, make_everything):
    owner, b = signed_in()
    mine = make_everything(owner)
    refused = 0
    for rule in dashboard_rules(app):
        if "POST" not in rule.methods:
            continue
        path = build(app, rule, fill(rule, mine))
        response = b.post(path, {"name": "x"}, csrf=False)
        assert response.status_code == 400, f"POST {path} without CSRF token answered {response.status_code}"
        assert "CSRF" in response.text
        refused += 1
    # Signed out too: the sign-in form itself.
    response = b.__class__(app).post("/dashboard/sign-in", {"email": owner.email, "password": "x"}, csrf=False)
    assert response.status_code == 400
    assert refused >= 10


def test_an_owner_gets_404_for_every_url_of_another_owners_objects(app, signed_in, make_owner, make_everything):
    owner_a, browser_a = signed_in()
    make_everything(owner_a)
    theirs = make_everything(make_owner())
    checked = 0
    for rule in dashboard_rules(app):
        if not rule.arguments:
            continue
        path = build(app, rule, fill(rule, theirs))
        for method in sorted(rule.methods - SKIP_METHODS):
            response = browser_a.get(path) if method == "GET" else browser_a.post(path, {})
            assert response.status_code == 404, f"owner A: {method} {path} (owner B's) answered {response.status_code}"
            checked += 1
    assert checked >= 15


def test_the_same_urls_work_for_the_objects_own_owner_and_for_an_admin(app, signed_in, make_everything):
    owner, own_browser = signed_in()
    mine = make_everything(owner)
    _, admin_browser = signed_in(admin=True)
    for rule in dashboard_rules(app):
        if not rule.arguments or "GET" not in rule.methods:
            continue
        path = build(app, rule, fill(rule, mine))
        for b in (own_browser, admin_browser):
            response = b.get(path)
            assert response.status_code == 200, f"GET {path} answered {response.status_code} for an allowed user"


def test_dashboard_root_sends_a_signed_in_owner_to_a_page(app, signed_in):
    _, b = signed_in()
    response = b.get("/dashboard/")
    assert response.status_code == 302
    landing = b.follow(response)
    assert landing.status_code == 200
    assert "Sign out" in landing.text


def test_the_layout_links_only_to_pages_that_exist(app, signed_in):
    _, b = signed_in()
    page = b.get("/dashboard/routers").text
    for label in ("Routers", "Plans", "Paybills", "Account"):
        assert f">{label}" in page
    for endpoint, label, _ in NAV_ITEMS:
        if endpoint not in app.view_functions:
            assert f">{label}<" not in page
    assert "<script>" not in page and "https://" not in page  # no inline script, nothing from a CDN


JUNK_SEGMENTS = ("abc", "999999999", "-1", "%00", "x%27%3B%20DROP%20TABLE%20users%3B--")
JUNK_QUERIES = ("page=abc&per_page=-5", "q=%00%27%22%3B&from=not-a-date&to=2026-13-45",
                "status=%24%7Bjndi%7D&router=abc&paybill=-1&sort=%3Cscript%3E", "lang=xx&page=99999999999999999999")


def _with_junk(rule: Any, segment: str) -> str:
    """The rule's path with every parameter replaced by ``segment``, bypassing its converter."""
    import re

    return re.sub(r"<[^>]+>", segment, rule.rule)


@pytest.mark.parametrize("who", ["signed out", "owner", "admin"])
def test_no_dashboard_url_answers_500_for_unknown_paths_bad_ids_or_junk_queries(app, browser, signed_in, make_everything, who):
    # Reproduced: /dashboard/does-not-exist and /dashboard/plans/abc/edit answered 500, because the
    # error page read current_user outside any dashboard route.
    if who == "signed out":
        b = browser()
    else:
        user, b = signed_in(admin=(who == "admin"))
        make_everything(user)
    paths = ["/dashboard/does-not-exist", "/dashboard/plans/abc/edit", "/dashboard/%00", "/dashboard/a/b/c/d"]
    for rule in dashboard_rules(app):
        if "GET" not in rule.methods:
            continue
        if rule.arguments:
            paths += [_with_junk(rule, junk) for junk in JUNK_SEGMENTS]
        else:
            paths += [f"{rule.rule}?{query}" for query in JUNK_QUERIES]
    answers = {path: b.get(path).status_code for path in paths}
    crashed = {path: code for path, code in answers.items() if code >= 500}
    assert not crashed, crashed
    assert answers["/dashboard/does-not-exist"] == 404
    assert answers["/dashboard/plans/abc/edit"] in (302, 404)  # signed out: sent to sign in first
    page = b.get("/dashboard/does-not-exist")
    assert page.status_code == 404 and "Not Found" in page.text

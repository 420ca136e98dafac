"""The customer pages over real HTTP: weight, languages, every M-Pesa outcome, "send again",
voucher login, receipt recovery, router refusals and mixed content."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
import sqlalchemy as sa

from portal.captive.router_login import chap_password
from portal.core.extensions import db
from portal.models import Activation, AuditLog, Payment, Router, Voucher, utcnow

from .conftest import form_fields
from .wording import TEXT, meaning_of

CHAP_ID = "\\371"
CHAP_CHALLENGE = "\\357\\015\\330\\013\\124\\045\\266\\001\\202\\377\\000\\017\\100\\200\\221\\033"
HOTSPOT = {
    "mac": "AA:BB:CC:DD:EE:01",
    "ip": "10.5.50.23",
    "link-login-only": "http://10.5.50.1/login",
    "link-orig": "http://example.com/",
}
CHAP_HOTSPOT = dict(HOTSPOT, **{"chap-id": CHAP_ID, "chap-challenge": CHAP_CHALLENGE})
WEIGHT_BUDGET = 30 * 1024
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _location(response: requests.Response, customer: Any) -> str:
    assert response.status_code == 303, response.text[:800]
    return response.headers["Location"].replace(customer.base, "")


def _buy(customer, shop, phone: str = "0712 345 678", **hotspot: str) -> str:  # type: ignore[no-untyped-def]
    return _location(customer.buy(shop.router.slug, shop.plan.id, phone, **(hotspot or HOTSPOT)), customer)


def _page(customer, path: str, **params: str) -> requests.Response:  # type: ignore[no-untyped-def]
    return customer.http.get(customer.base + path, params=params, timeout=5)


def _text(page: str) -> str:
    """The words a customer sees (tags dropped, entities decoded, spaces collapsed)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _post_form(customer, path: str, page: requests.Response, **values: str) -> requests.Response:  # type: ignore[no-untyped-def]
    fields = form_fields(page.text)
    fields.update(values)
    return customer.http.post(customer.base + path, data=fields, allow_redirects=False, timeout=10)


def _voucher(shop, status: str = "active", **kw: Any) -> Voucher:  # type: ignore[no-untyped-def]
    values = dict(
        code=kw.pop("code", "ABCD2345XY"),
        owner_id=shop.owner.id,
        plan_id=shop.plan.id,
        router_id=shop.router.id,
        status=status,
        expires_at=utcnow() + timedelta(hours=1),
    )
    values.update(kw)
    voucher = Voucher(**values)
    db.session.add(voucher)
    db.session.commit()
    return voucher


def _age_rate_limit_hits(seconds: int) -> None:
    from portal.models import RateLimitHit

    for hit in db.session.scalars(sa.select(RateLimitHit)):
        hit.created_at = hit.created_at - timedelta(seconds=seconds)
    db.session.commit()


# ---------------------------------------------------------------------------------------------
# Weight, hosts, caching


_RESOURCE = re.compile(r'<(?:link|script|img|iframe|source|embed|object)\b[^>]*?\b(?:href|src|data)="([^"]*)"', re.I)
_NAVIGATION = re.compile(r'<(?:a|form)\b[^>]*?\b(?:href|action)="([^"]*)"', re.I)
_CSS_URL = re.compile(r"url\(|@import", re.I)


def test_plans_wait_and_success_pages_stay_under_30_kb_and_load_only_from_the_portal(shop, customer, daraja, worker):
    plans = customer.open_plans(shop.router.slug, **CHAP_HOTSPOT)
    pending = _buy(customer, shop, "0700 099 999", **CHAP_HOTSPOT)  # never answers: stays on the wait page
    done = _buy(customer, shop, "0712 345 678", **CHAP_HOTSPOT)
    assert customer.wait_for(done, ("active",))["status"] == "active"
    pages = {"plans": plans.text, "wait": _page(customer, pending).text, "success": _page(customer, done).text}
    assert 'data-status="pending"' in pages["wait"] and 'data-status="active"' in pages["success"]

    portal = urlsplit(customer.base)
    assets: dict[str, int] = {}
    weights = {}
    for name, page in pages.items():
        resources = _RESOURCE.findall(page)
        assert resources, name
        for ref in resources:
            url = urlsplit(urljoin(customer.base + "/", html.unescape(ref)))
            assert (url.scheme, url.netloc) == (portal.scheme, portal.netloc), f"{name} loads {ref} from another host"
            assert url.path.startswith("/static/") and "v=" in url.query, f"{ref} has no version in its URL"
            response = customer.http.get(url.geturl(), timeout=5)
            assert response.status_code == 200
            assert "max-age" in response.headers.get("Cache-Control", "")
            assert not _CSS_URL.search(response.text), f"{ref} pulls in more files"
            assets[url.path] = len(response.content)
        for ref in _NAVIGATION.findall(page):
            target = urlsplit(urljoin(customer.base + "/", html.unescape(ref)))
            # Links go to the portal, or (to log in) to the router's own login URL it handed over.
            assert target.netloc in (portal.netloc, "10.5.50.1"), f"{name} links to {ref}"
        weights[name] = len(page.encode())

    total = sum(weights.values()) + sum(assets.values())
    each_with_assets = sum(weights.values()) + len(pages) * sum(assets.values())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "page-weights.txt").write_text(
        "".join(f"{name}: {size} B html\n" for name, size in weights.items())
        + "".join(f"{path}: {size} B\n" for path, size in assets.items())
        + f"total (assets once): {total} B\ntotal (assets counted per page): {each_with_assets} B\n"
    )
    assert total < WEIGHT_BUDGET, (weights, assets)
    assert each_with_assets < WEIGHT_BUDGET, (weights, assets)


def test_a_changed_stylesheet_gets_a_new_url(app, shop, customer, tmp_path, monkeypatch):
    first = re.search(r"captive\.css\?v=(\w+)", customer.open_plans(shop.router.slug).text).group(1)
    static = tmp_path / "static"
    static.mkdir()
    for name in ("captive.css", "captive.js"):
        (static / name).write_bytes((Path(app.static_folder) / name).read_bytes())
    (static / "captive.css").write_text((static / "captive.css").read_text() + "\nb{font-weight:700}")
    monkeypatch.setattr(app, "static_folder", str(static))

    second = re.search(r"captive\.css\?v=(\w+)", customer.open_plans(shop.router.slug).text).group(1)

    assert first != second


# ---------------------------------------------------------------------------------------------
# Languages


def test_both_languages_have_every_text():
    assert set(TEXT["en"]) == set(TEXT["sw"])
    for key, english in TEXT["en"].items():
        assert TEXT["sw"][key].strip(), key
        assert re.findall(r"{\w+}", english) == re.findall(r"{\w+}", TEXT["sw"][key]), key


def test_language_follows_the_browser_and_the_switch_is_kept(shop, customer):
    swahili = customer.http.get(
        f"{customer.base}/r/{shop.router.slug}",
        params=HOTSPOT,
        headers={"Accept-Language": "sw-KE,sw;q=0.9"},
        timeout=5,
    )
    assert '<html lang="sw">' in swahili.text and TEXT["sw"]["pay"] in swahili.text
    switch = html.unescape(re.search(r'<footer><a href="([^"]+)"', swahili.text).group(1))
    assert "lang=en" in switch and "link-login-only=" in switch  # the router's variables survive the switch

    english = customer.http.get(customer.base + switch, headers={"Accept-Language": "sw"}, timeout=5)
    assert '<html lang="en">' in english.text and TEXT["en"]["pay"] in english.text
    again = customer.http.get(f"{customer.base}/r/{shop.router.slug}", headers={"Accept-Language": "sw"}, timeout=5)
    assert '<html lang="en">' in again.text  # the choice is remembered on this device


@pytest.mark.parametrize("lang", ["en", "sw"])
def test_form_errors_are_in_the_pages_language(shop, customer, daraja, lang):
    page = customer.open_plans(shop.router.slug, lang=lang, **HOTSPOT)

    bad_phone = _post_form(customer, f"/r/{shop.router.slug}/buy", page, plan_id=str(shop.plan.id), phone="12345")
    no_phone = _post_form(customer, f"/r/{shop.router.slug}/buy", page, plan_id=str(shop.plan.id), phone="")
    no_plan = _post_form(customer, f"/r/{shop.router.slug}/buy", page, plan_id="999999", phone="0712345678")
    expired = _post_form(
        customer, f"/r/{shop.router.slug}/buy", page, plan_id=str(shop.plan.id), phone="0712345678", csrf_token="stale"
    )

    t = TEXT[lang]
    assert bad_phone.status_code == 400 and t["err_phone_invalid"] in _text(bad_phone.text)
    assert 'id="phone-error"' in bad_phone.text
    assert t["err_phone_required"] in _text(no_phone.text)
    assert t["err_choose_plan"] in _text(no_plan.text)
    assert expired.status_code == 400 and t["err_expired_form"] in _text(expired.text)
    assert daraja.pushes == []
    for response in (bad_phone, no_phone, no_plan, expired):
        assert f'<html lang="{lang}">' in response.text
        assert "err_" not in _text(response.text)


# ---------------------------------------------------------------------------------------------
# Every M-Pesa outcome, in both languages, with the next step


OUTCOMES = {
    "cancelled": 1032,
    "timed out": 1037,
    "insufficient funds": 1,
    "wrong PIN": 2001,
    "M-Pesa busy": 1001,
    "unknown": 9876,
}


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_mpesa_outcome_has_words_and_a_next_step_in_both_languages(outcome, shop, customer, daraja):
    code = OUTCOMES[outcome]
    purchase = _buy(customer, shop, phone=f"07000{code:05d}")
    assert customer.wait_for(purchase, ("failed",))["status"] == "failed"
    meaning = meaning_of(code)
    assert meaning.reason != "unknown" or outcome == "unknown"

    for lang, words in (("en", meaning.text_en), ("sw", meaning.text_sw)):
        page = _page(customer, purchase, lang=lang)
        seen = _text(page.text)
        assert words in seen, (lang, outcome)
        assert customer.http.get(f"{customer.base}{purchase}/status", timeout=5).json()["status"] == "failed"
        assert TEXT[lang]["send_again"] in seen and TEXT[lang]["back"] in seen  # the next step
        assert TEXT[lang]["paid_not_online"] in seen
        assert f'<html lang="{lang}">' in page.text


def test_an_expired_purchase_offers_the_receipt_and_another_prompt(shop, customer, daraja):
    purchase = _buy(customer, shop, phone="0700 099 999")
    db.session.execute(sa.update(Payment).values(status="expired"))
    db.session.commit()

    for lang in ("en", "sw"):
        seen = _text(_page(customer, purchase, lang=lang).text)
        assert "M-Pesa" in seen and TEXT[lang]["send_again"] in seen and TEXT[lang]["paid_not_online"] in seen


def test_send_again_waits_out_darajas_minute_then_pushes_a_new_purchase(shop, customer, daraja):
    failed = _buy(customer, shop, phone="0700 001 032")  # cancelled
    customer.wait_for(failed, ("failed",))
    page = _page(customer, failed)
    assert TEXT["en"]["retry_in"].split("{")[0] in _text(page.text)

    too_soon = _post_form(customer, f"{failed}/retry", page)
    assert too_soon.status_code == 429
    assert re.search(r"Wait \d+ seconds", _text(too_soon.text))
    assert len(daraja.pushes) == 1

    _age_rate_limit_hits(61)
    page = _page(customer, failed)
    again = _post_form(customer, f"{failed}/retry", page)
    twice = _post_form(customer, f"{failed}/retry", page)  # a double tap on the same button
    new_purchase = _location(again, customer)

    assert _location(twice, customer) == new_purchase != failed
    assert len(daraja.pushes) == 2
    first, second = daraja.pushes
    assert first["PhoneNumber"] == second["PhoneNumber"] and first["Amount"] == second["Amount"]
    assert first["AccountReference"] != second["AccountReference"]
    db.session.expire_all()
    statuses = sorted(p.status for p in db.session.scalars(sa.select(Payment)))
    assert statuses[0] == "failed"  # the old purchase stays on record as it was


# ---------------------------------------------------------------------------------------------
# Rate limits


def test_one_push_per_phone_per_minute(shop, customer, daraja):
    _buy(customer, shop, phone="0712 345 678")
    second = customer.buy(shop.router.slug, shop.plan.id, "+254 712 345 678", **HOTSPOT)
    swahili_page = customer.open_plans(shop.router.slug, lang="sw", **HOTSPOT)
    third = _post_form(
        customer, f"/r/{shop.router.slug}/buy", swahili_page, plan_id=str(shop.plan.id), phone="0712345678"
    )

    assert second.status_code == third.status_code == 429
    assert re.search(r"one payment prompt per phone each minute\. Wait \d+ seconds", _text(second.text))
    assert re.search(r"kila dakika\. Subiri sekunde \d+", _text(third.text))
    assert len(daraja.pushes) == 1
    assert 'value="+254 712 345 678"' in second.text  # what they typed is kept for the next try


def test_five_pushes_per_phone_per_hour(shop, customer, daraja):
    for _ in range(5):  # one every ten minutes
        _buy(customer, shop, phone="0712 345 678")
        _age_rate_limit_hits(60 * 10)
    assert len(daraja.pushes) == 5

    sixth = customer.buy(shop.router.slug, shop.plan.id, "0712 345 678", **HOTSPOT)

    assert sixth.status_code == 429
    assert re.search(r"Too many payment prompts for this number\. Wait \d+ minutes", _text(sixth.text))
    assert len(daraja.pushes) == 5


def test_ten_pushes_per_device_per_hour(shop, customer, daraja):
    for n in range(10):
        _buy(customer, shop, phone=f"0711 000 0{n:02d}")
    eleventh = customer.buy(shop.router.slug, shop.plan.id, "0722 000 000", **HOTSPOT)
    other_device = customer.buy(
        shop.router.slug, shop.plan.id, "0722 000 000", **dict(HOTSPOT, mac="AA:BB:CC:DD:EE:99")
    )

    assert eleventh.status_code == 429 and "from this device" in _text(eleventh.text)
    assert other_device.status_code == 303
    assert len(daraja.pushes) == 11


@pytest.mark.parametrize("kind", ["voucher", "receipt"])
def test_five_code_tries_per_device_per_ten_minutes(kind, shop, customer, daraja):
    voucher = _voucher(shop)
    field, good = ("code", voucher.code) if kind == "voucher" else ("receipt", "NOTAREAL01")
    page = customer.open_plans(shop.router.slug, **HOTSPOT)
    for n in range(5):
        answer = _post_form(customer, f"/r/{shop.router.slug}/{kind}", page, **{field: f"WRONG{n}CODE9"})
        assert answer.status_code in (400, 404)

    blocked = _post_form(customer, f"/r/{shop.router.slug}/{kind}", page, **{field: good})
    swahili = _post_form(customer, f"/r/{shop.router.slug}/{kind}?lang=sw", page, **{field: good})

    assert blocked.status_code == swahili.status_code == 429
    assert re.search(r"Too many codes tried from this device\. Wait \d+ (seconds|minutes)", _text(blocked.text))
    assert re.search(r"kutoka kwa kifaa hiki\. Subiri (sekunde|dakika) \d+", _text(swahili.text))
    assert "router-login" not in blocked.text and "router-login" not in swahili.text
    _age_rate_limit_hits(601)
    if kind == "voucher":
        assert _post_form(customer, f"/r/{shop.router.slug}/voucher", page, code=good).status_code == 200


def _tries_from(customer, shop, page, forwarded_for: str) -> int:  # type: ignore[no-untyped-def]
    """One wrong voucher code from a browser that our proxy says is ``forwarded_for``."""
    fields = dict(form_fields(page.text), code="WRONG0CODE9")
    headers = {"X-Forwarded-For": forwarded_for}
    url = f"{customer.base}/r/{shop.router.slug}/voucher"
    return customer.http.post(url, data=fields, headers=headers, allow_redirects=False, timeout=10).status_code


def test_behind_a_trusted_proxy_each_client_has_its_own_code_bucket(app, shop, customer):
    # No mac or ip from the router: the device is the client address, so its 5 tries are the limit.
    app.config["PORTAL_TRUSTED_PROXIES"] = 1
    page = customer.open_plans(shop.router.slug)
    assert [_tries_from(customer, shop, page, "198.51.100.7") for _ in range(5)] == [400] * 5
    assert _tries_from(customer, shop, page, "198.51.100.7") == 429
    assert _tries_from(customer, shop, page, "198.51.100.8") == 400  # another client is not locked out


def test_without_a_trusted_proxy_x_forwarded_for_cannot_dodge_the_limit(app, shop, customer):
    app.config["PORTAL_TRUSTED_PROXIES"] = 0
    page = customer.open_plans(shop.router.slug)
    assert [_tries_from(customer, shop, page, f"198.51.100.{n}") for n in range(5)] == [400] * 5
    assert _tries_from(customer, shop, page, "198.51.100.99") == 429


def test_rate_limit_counts_a_double_submitted_form_once_and_reports_the_wait(app):
    from portal.core.rate_limits import Limit, RateLimited, record_attempt, seconds_until_allowed

    limit = Limit("phone_minute", 1, 60)
    record_attempt([("t:phone", limit)], token="form-1")
    record_attempt([("t:phone", limit)], token="form-1")  # the same form again: not a new attempt
    with pytest.raises(RateLimited) as refused:
        record_attempt([("t:phone", limit)], token="form-2")
    assert 55 <= refused.value.retry_after_s <= 60
    assert 55 <= seconds_until_allowed([("t:phone", limit)]) <= 60
    assert seconds_until_allowed([("t:other", limit)]) == 0


# ---------------------------------------------------------------------------------------------
# "I already have a voucher"


def test_a_voucher_code_logs_in_with_chap_and_lands_on_link_orig(shop, customer):
    voucher = _voucher(shop, code="ABCD2345XY")
    page = customer.open_plans(shop.router.slug, **CHAP_HOTSPOT)

    answer = _post_form(customer, f"/r/{shop.router.slug}/voucher", page, code=" abcd-2345 xy ")

    assert answer.status_code == 200 and voucher.code in answer.text
    assert TEXT["en"]["save_code"] in _text(answer.text)
    assert answer.headers["Cache-Control"] == "no-store"
    fields = form_fields(answer.text.split('id="router-login"', 1)[1])
    assert 'action="http://10.5.50.1/login"' in answer.text
    assert fields["username"] == voucher.code and fields["dst"] == "http://example.com/"
    assert fields["password"] == chap_password(CHAP_ID, voucher.code, CHAP_CHALLENGE) != voucher.code


@pytest.mark.parametrize(
    "link",
    [
        "http://203.0.113.9/login",  # a public IP
        "http://evil.example.com/login",  # a public host name
        "http://10.0.0.1@evil.com/",  # userinfo: the browser goes to evil.com
        "http://user:pw@10.5.50.1/login",
        "http://10.5.50.1\\@evil.com/login",  # a backslash some browsers read as a slash
        "http://10.5.50.1.evil.com/login",
        "http://10.5.50.1:notaport/login",
        "javascript:alert(1)//10.5.50.1",
        "ftp://10.5.50.1/login",
    ],
)
def test_a_login_link_that_is_not_the_routers_own_gets_the_code_but_no_auto_login(shop, customer, link, caplog):
    voucher = _voucher(shop, code="ABCD2345XY")
    page = customer.open_plans(shop.router.slug, **dict(HOTSPOT, **{"link-login-only": link}))

    answer = _post_form(customer, f"/r/{shop.router.slug}/voucher", page, link_login_only=link, code=voucher.code)

    assert answer.status_code == 200 and voucher.code in answer.text
    assert 'id="router-login"' not in answer.text and f'action="{link}"' not in answer.text
    assert TEXT["en"]["err_no_login_link"] in _text(answer.text)


@pytest.mark.parametrize(
    ("link", "dns_name", "accepted"),
    [
        ("http://10.5.50.1/login", None, True),
        ("http://192.168.88.1/login", None, True),
        ("https://172.16.0.1:8443/login", None, True),
        ("http://169.254.1.1/login", None, True),
        ("http://[fe80::1]/login", None, True),  # IPv6 link-local
        ("http://wifi.cafe.co.ke/login", "wifi.cafe.co.ke", True),  # the name the owner set
        ("https://WIFI.cafe.co.ke./login", "wifi.cafe.co.ke", True),
        ("http://wifi.cafe.co.ke/login", None, False),
        ("http://wifi.cafe.co.ke.evil.com/login", "wifi.cafe.co.ke", False),
        ("http://wifi.cafe.co.ke@evil.com/login", "wifi.cafe.co.ke", False),
        ("http://evil.com@wifi.cafe.co.ke/login", "wifi.cafe.co.ke", False),  # no userinfo at all
        ("http://[2001:db8::1]/login", None, False),
        ("http://[::ffff:203.0.113.9]/login", None, False),
        ("http://0.0.0.0/login", None, False),
        ("javascript:alert(1)", "wifi.cafe.co.ke", False),
        ("http:///login", None, False),
    ],
)
def test_only_the_routers_own_hotspot_address_is_a_login_link(link, dns_name, accepted):
    from portal.captive.router_login import is_router_login_url

    assert is_router_login_url(link, dns_name) is accepted


def test_the_configured_hotspot_dns_name_logs_the_browser_in(shop, customer):
    shop.router.hotspot_dns_name = "wifi.cafe.co.ke"
    db.session.commit()
    voucher = _voucher(shop, code="ABCD2345XY")
    link = "http://wifi.cafe.co.ke/login"
    page = customer.open_plans(shop.router.slug, **dict(HOTSPOT, **{"link-login-only": link}))

    answer = _post_form(customer, f"/r/{shop.router.slug}/voucher", page, code=voucher.code)

    assert answer.status_code == 200 and f'action="{link}"' in answer.text and 'id="router-login"' in answer.text


def test_printed_qr_link_prefills_the_code(shop, customer):
    page = customer.open_plans(shop.router.slug, voucher="abcd 2345 xy", **HOTSPOT)

    assert re.search(r'<details id="voucher" open>', page.text)
    assert 'name="code"' in page.text and 'value="abcd 2345 xy"' in page.text


def test_a_typo_and_a_foreign_code_read_alike_but_a_spent_disabled_or_unpaid_code_says_so(
    shop, customer, make_owner, make_plan, make_router
):
    _voucher(shop, code="EXPIRED234", expires_at=utcnow() - timedelta(minutes=1))
    _voucher(shop, code="USEDUP2345", status="expired")
    _voucher(shop, code="UNPAID2345", status="pending_payment")
    _voucher(shop, code="OFFCODE234", status="cancelled")
    other = make_owner()
    other_plan = make_plan(other)
    other_router = make_router(other, name="Other shop")
    db.session.add(
        Voucher(code="FOREIGN234", owner_id=other.id, plan_id=other_plan.id, router_id=other_router.id, status="active")
    )
    db.session.commit()
    page = customer.open_plans(shop.router.slug, **HOTSPOT)

    answers = {}
    for code in ("NOSUCH2345", "FOREIGN234", "EXPIRED234", "USEDUP2345", "UNPAID2345", "OFFCODE234"):
        answers[code] = _text(_post_form(customer, f"/r/{shop.router.slug}/voucher", page, code=code).text)
        _age_rate_limit_hits(601)  # six tries: more than one device's allowance in ten minutes

    # Another owner's code is answered exactly like a typo: a reply never confirms a code elsewhere.
    assert answers["NOSUCH2345"].replace("NOSUCH2345", "CODE") == answers["FOREIGN234"].replace("FOREIGN234", "CODE")
    assert TEXT["en"]["err_bad_code"] in answers["NOSUCH2345"]
    for code in ("EXPIRED234", "USEDUP2345"):
        assert TEXT["en"]["err_code_used_up"] in answers[code] and TEXT["en"]["err_bad_code"] not in answers[code]
    assert TEXT["en"]["err_code_unpaid"] in answers["UNPAID2345"]
    assert TEXT["en"]["err_code_disabled"] in answers["OFFCODE234"]


# ---------------------------------------------------------------------------------------------
# "Paid but not online?"


def test_receipt_of_a_paid_purchase_shows_its_voucher_on_this_device(shop, customer, daraja, worker):
    purchase = _buy(customer, shop)
    code = customer.wait_for(purchase, ("active",))["voucher"]
    receipt = db.session.scalars(sa.select(Payment.receipt)).one()
    elsewhere = dict(CHAP_HOTSPOT, mac="AA:BB:CC:DD:EE:02", ip="10.5.50.24")
    page = customer.open_plans(shop.router.slug, **elsewhere)

    answer = _post_form(customer, f"/r/{shop.router.slug}/receipt", page, receipt=receipt.lower())

    assert _location(answer, customer) == purchase
    shown = _page(customer, purchase).text
    assert code in shown
    fields = form_fields(shown.split('id="router-login"', 1)[1])
    assert fields["password"] == chap_password(CHAP_ID, code, CHAP_CHALLENGE)  # this device's challenge


def test_unmatched_buy_goods_payment_becomes_one_voucher_for_the_best_plan(
    make_owner, make_paybill, make_router, make_plan, customer, daraja, router_box, worker
):
    from portal.owners.paybills import register_c2b_urls

    owner = make_owner()
    till = make_paybill(owner, kind="till")
    register_c2b_urls(till)
    router = make_router(owner)
    make_plan(owner, name="1 Hour", price=10, duration_s=3600)
    day = make_plan(owner, name="1 Day", price=50, duration_s=86400)
    make_plan(owner, name="1 Week", price=250, duration_s=7 * 86400)
    daraja.simulate_c2b("5123456", 60, None, trans_id="SGR7XK2M9P", kind="CustomerBuyGoodsOnline")
    unmatched = db.session.scalars(sa.select(Payment)).one()
    assert unmatched.status == "unmatched" and unmatched.voucher_id is None
    page = customer.open_plans(router.slug, **HOTSPOT)

    first = _post_form(customer, f"/r/{router.slug}/receipt", page, receipt="sgr7 xk2m 9p")
    purchase = _location(first, customer)
    body = customer.wait_for(purchase, ("active",))
    again = _post_form(customer, f"/r/{router.slug}/receipt", page, receipt="SGR7XK2M9P")

    assert body["status"] == "active" and body["voucher"] in router_box.users
    assert _location(again, customer) == purchase
    db.session.expire_all()
    vouchers = db.session.scalars(sa.select(Voucher)).all()
    assert len(vouchers) == 1 and vouchers[0].plan_id == day.id and vouchers[0].router_id == router.id
    payment = db.session.get(Payment, unmatched.id)
    assert payment.status == "paid" and payment.amount == 60 and payment.amount_expected == 50
    assert payment.voucher_id == vouchers[0].id and "claimed" in payment.note
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Activation)) == 1
    assert db.session.scalars(sa.select(AuditLog.action)).all() == ["payment.claimed_by_receipt"]


def test_an_unmatched_payment_is_claimed_once_even_when_claims_race(app, shop, daraja):
    from concurrent.futures import ThreadPoolExecutor

    from portal.hotspot.login_context import HotspotContext
    from portal.money.recovery import recover_by_receipt

    daraja.simulate_c2b("174379", 10, None, trans_id="RACE000001")
    router_id = shop.router.id

    def claim(_: int) -> str:
        with app.app_context():
            from portal.models import Router

            router = db.session.get(Router, router_id)
            outcome = recover_by_receipt(router, "RACE000001", HotspotContext()).outcome
            db.session.remove()
            return outcome

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(claim, range(4)))

    assert outcomes.count("claimed") == 1 and set(outcomes) <= {"claimed", "found"}
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Voucher)) == 1


@pytest.mark.parametrize("lang", ["en", "sw"])
def test_receipts_that_cannot_give_access_say_why(lang, shop, customer, daraja, make_owner, make_paybill):
    daraja.simulate_c2b("174379", 5, None, trans_id="TOOLITTLE1")
    t = TEXT[lang]
    page = customer.open_plans(shop.router.slug, lang=lang, **HOTSPOT)

    too_little = _post_form(customer, f"/r/{shop.router.slug}/receipt", page, receipt="TOOLITTLE1")
    unknown = _post_form(customer, f"/r/{shop.router.slug}/receipt", page, receipt="NOSUCHCODE")

    assert t["err_too_little"].format(amount=5) in _text(too_little.text)
    assert unknown.status_code == 404 and t["err_receipt_not_found"] in _text(unknown.text)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Voucher)) == 0


def test_another_owners_receipt_is_not_found_here(shop, customer, daraja, make_owner, make_router, make_plan):
    daraja.simulate_c2b("174379", 10, None, trans_id="OTHERS0001")  # paid into shop's paybill
    other = make_owner()
    make_plan(other)
    elsewhere = make_router(other, name="Another cafe")
    page = customer.open_plans(elsewhere.slug, **HOTSPOT)

    answer = _post_form(customer, f"/r/{elsewhere.slug}/receipt", page, receipt="OTHERS0001")

    assert answer.status_code == 404
    assert db.session.scalars(sa.select(Payment.status)).one() == "unmatched"


def test_a_phone_number_alone_never_reveals_a_voucher(shop, customer, daraja, worker):
    purchase = _buy(customer, shop, phone="0712 345 678")
    code = customer.wait_for(purchase, ("active",))["voucher"]
    stranger = requests.Session()  # another device: no cookies from the purchase
    plans = stranger.get(f"{customer.base}/r/{shop.router.slug}", params=dict(HOTSPOT, phone="0712345678"), timeout=5)
    fields = form_fields(plans.text)

    answers = [plans]
    for phone in ("0712345678", "0712 345 678", "+254712345678", "254712345678", "712345678"):
        for kind, field in (("receipt", "receipt"), ("voucher", "code")):
            answers.append(
                stranger.post(
                    f"{customer.base}/r/{shop.router.slug}/{kind}",
                    data=dict(fields, **{field: phone}),
                    allow_redirects=False,
                    timeout=5,
                )
            )
        _age_rate_limit_hits(601)

    for answer in answers:
        assert code not in answer.text
        assert answer.status_code in (200, 400, 404), answer.status_code
        assert "Location" not in answer.headers


# ---------------------------------------------------------------------------------------------
# The router's refusals, and mixed content


ROUTER_ERRORS = {
    "invalid username or password": "rerr_invalid",
    "user ABCD2345XY is not allowed to log in from this MAC address": "rerr_mac",
    "no more sessions are allowed for user ABCD2345XY": "rerr_sessions",
    "user ABCD2345XY has reached uptime limit": "rerr_uptime",
    "user ABCD2345XY has reached traffic limit": "rerr_traffic",
    "web browser did not send challenge response (try again, enable JavaScript)": "rerr_chap",
    "already authorizing, retry later": "rerr_busy",
    "RADIUS server is not responding": "rerr_radius",
    "cannot assign ip address - no more free addresses from pool": "rerr_pool",
    "you are not logged in (ip 10.5.50.23)": "rerr_not_logged_in",
    "something new in RouterOS 8": "rerr_other",
}


@pytest.mark.parametrize("lang", ["en", "sw"])
def test_router_login_errors_are_shown_in_plain_words(lang, shop, customer):
    for error, key in ROUTER_ERRORS.items():
        page = customer.open_plans(shop.router.slug, lang=lang, error=error, **HOTSPOT)
        seen = _text(page.text)
        assert TEXT[lang]["router_refused"] in seen and TEXT[lang][key] in seen, error
        assert error in seen  # the router's own words too, for the owner


def test_https_portal_sends_the_browser_to_an_http_router_by_link_not_form(app, shop, customer, daraja, worker):
    purchase = _buy(customer, shop, **CHAP_HOTSPOT)
    code = customer.wait_for(purchase, ("active",))["voucher"]
    client = app.test_client()

    secure = client.get(purchase, base_url="https://portal.example").get_data(as_text=True)
    plain = client.get(purchase, base_url="http://portal.example").get_data(as_text=True)

    assert '<form method="post" action="http://' not in secure
    link = html.unescape(re.search(r'<a class="button" id="router-login" href="([^"]+)"', secure).group(1))
    assert link.startswith("http://10.5.50.1/login?") and f"username={code}" in link
    assert f"password={chap_password(CHAP_ID, code, CHAP_CHALLENGE)}" in link
    assert '<form method="post" action="http://10.5.50.1/login" id="router-login">' in plain


# ---------------------------------------------------------------------------------------------
# The router-side status and logout pages


def test_router_status_and_logout_pages_show_time_left_and_log_out(router_box):
    from portal.sandbox.hotspot import ROUTER_PAGES, SandboxHotspot

    router_box.users["ABCD2345XY"] = {
        ".id": "*9",
        "name": "ABCD2345XY",
        "password": "ABCD2345XY",
        "profile": "default",
        "limit-uptime": "1h",
        "limit-bytes-total": str(500 << 20),
    }
    with SandboxHotspot(router_box, pages_dir=ROUTER_PAGES) as hotspot:
        out = requests.get(f"{hotspot.base_url}/status", timeout=5).text
        login = requests.get(
            hotspot.login_url,
            params={"username": "ABCD2345XY", "password": "ABCD2345XY"},
            allow_redirects=False,
            timeout=5,
        )
        status = requests.get(f"{hotspot.base_url}/status", timeout=5).text
        logout = requests.post(f"{hotspot.base_url}/logout", timeout=5).text

    assert "You are not logged in" in out and "$(" not in out
    assert login.status_code == 302
    assert "You are online" in status and "Uko mtandaoni" in status and "$(" not in status
    assert 'id="username">ABCD2345XY<' in status and 'id="time-left">1h<' in status and "500.0 MiB" in status
    assert f'action="{hotspot.base_url}/logout"' in status
    assert "You have logged out" in logout and "ABCD2345XY" in logout
    assert router_box.session_for_mac(hotspot.device_mac) is None


def test_the_hotspot_dns_name_the_router_reports_becomes_its_login_address(shop, customer, router_box):
    """Issue 11 point 9: the owner sets the name, or the router reports one (Test connection)."""
    from portal.hotspot.routers import check_connection

    link = "http://login.cafe.example/login"
    voucher = _voucher(shop, code="ABCD2345XY")
    page = customer.open_plans(shop.router.slug, **dict(HOTSPOT, **{"link-login-only": link}))
    before = _post_form(customer, f"/r/{shop.router.slug}/voucher", page, code=voucher.code)
    assert f'action="{link}"' not in before.text  # unknown name: no auto-login

    router_box.hotspot_dns_name = "Login.Cafe.Example."
    report = check_connection(shop.router)
    db.session.expire_all()
    assert report.learned_dns_name == "login.cafe.example" == db.session.get(Router, shop.router.id).hotspot_dns_name

    page = customer.open_plans(shop.router.slug, **dict(HOTSPOT, **{"link-login-only": link}))
    after = _post_form(customer, f"/r/{shop.router.slug}/voucher", page, code=voucher.code)
    assert f'action="{link}"' in after.text and 'id="router-login"' in after.text


@pytest.mark.parametrize("reported", ["other.cafe.example", "10.5.50.1", "evil name;$x"])
def test_a_reported_dns_name_never_replaces_the_owners_and_junk_is_not_kept(shop, router_box, reported):
    from portal.hotspot.routers import check_connection

    router_box.hotspot_dns_name = reported
    if reported == "other.cafe.example":
        shop.router.hotspot_dns_name = "wifi.cafe.co.ke"  # the owner's own entry wins
        db.session.commit()
    report = check_connection(shop.router)
    db.session.expire_all()
    assert report.learned_dns_name is None
    assert db.session.get(Router, shop.router.id).hotspot_dns_name == ("wifi.cafe.co.ke" if reported == "other.cafe.example" else None)

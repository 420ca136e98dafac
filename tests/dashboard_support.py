"""Shared by the dashboard tests: a signed-in browser over real HTTP, and one of every object kind.

A test module loads the fixtures (browser, signed_in, make_everything) with
``pytest_plugins = ["tests.dashboard_support"]`` and imports the plain helpers (field_errors, flashes).
Test modules import this before pytest could rewrite its asserts, so the asserts here carry their
own messages: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from portal.core.extensions import db
from portal.models import Activation, AuditLog, Payment, StkInitiation, User, Voucher, WebhookLog

PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
FIELD_ERROR = re.compile(r'<p class="field-error">(.*?)</p>', re.S)
FLASH = re.compile(r'<p class="flash flash-(\w+)"[^>]*>(.*?)</p>', re.S)


class Browser:
    """An owner's browser: a cookie jar and the CSRF token from the last page that had one."""

    def __init__(self, app: Any) -> None:
        self.base = app.live_url
        self.http = requests.Session()
        self.csrf: str | None = None

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("allow_redirects", False)
        response = self.http.get(self.url(path), timeout=10, **kw)
        self._remember_csrf(response)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any) -> requests.Response:
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.token())
        kw.setdefault("allow_redirects", False)
        response = self.http.post(self.url(path), data=data, timeout=15, **kw)
        self._remember_csrf(response)
        return response

    def follow(self, response: requests.Response) -> requests.Response:
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        return self.get(response.headers["Location"])

    def token(self) -> str:
        if self.csrf is None:
            self.get("/dashboard/sign-in")
        assert self.csrf, "no CSRF token found on the sign-in page"
        return self.csrf

    def sign_in(self, email: str, password: str = PASSWORD) -> requests.Response:
        self.csrf = None
        self.get("/dashboard/sign-in")
        response = self.post("/dashboard/sign-in", {"email": email, "password": password})
        if response.status_code == 302:
            self.csrf = None  # the session was renewed at sign-in, and with it the token
            self.get("/dashboard/account")
        return response

    def _remember_csrf(self, response: requests.Response) -> None:
        match = CSRF_INPUT.search(response.text) if "text/html" in response.headers.get("Content-Type", "") else None
        if match:
            self.csrf = html_lib.unescape(match.group(1))


def field_errors(page: str) -> list[str]:
    return [html_lib.unescape(e).strip() for e in FIELD_ERROR.findall(page)]


def flashes(page: str) -> list[tuple[str, str]]:
    return [(kind, html_lib.unescape(text).strip()) for kind, text in FLASH.findall(page)]


@pytest.fixture
def browser(app: Any) -> Callable[[], Browser]:
    return lambda: Browser(app)


@pytest.fixture
def signed_in(app: Any, make_owner: Callable[..., User]) -> Callable[..., tuple[User, Browser]]:
    """``owner, b = signed_in()`` (a new owner) or ``signed_in(user)``."""

    def make(user: User | None = None, *, admin: bool = False) -> tuple[User, Browser]:
        user = user or make_owner(admin=admin)
        b = Browser(app)
        assert b.sign_in(user.email).status_code == 302
        return user, b

    return make


@dataclass
class Everything:
    """One row of every object kind the dashboard addresses by id, all belonging to ``owner``."""

    owner: User
    ids: dict[type, int] = field(default_factory=dict)
    keys: dict[tuple[type, str], str] = field(default_factory=dict)


@pytest.fixture
def make_everything(make_paybill, make_router, make_plan) -> Callable[[User], Everything]:  # type: ignore[no-untyped-def]
    """Every kind in access.OBJECT_ID_PARAMS for one owner. Add a line here when a new kind is registered."""
    counter = iter(range(1, 10_000))

    def make(owner: User) -> Everything:
        n = next(counter)
        paybill = make_paybill(owner, number=f"17{n:04d}")
        router = make_router(owner, name=f"Router {owner.id}")
        plan = make_plan(owner)
        voucher = Voucher(
            code=f"T{owner.id}X{n}".upper()[:12], owner_id=owner.id, plan_id=plan.id, router_id=router.id, status="paid"
        )
        if hasattr(Voucher, "batch_ref"):  # printed cash-sale batches are addressed through a voucher
            voucher.batch_ref, voucher.source = f"B{owner.id}X{n}", "batch"
        db.session.add(voucher)
        db.session.flush()
        payment = Payment(
            public_id=f"pub-{owner.id}-{n}",
            owner_id=owner.id,
            router_id=router.id,
            paybill_id=paybill.id,
            voucher_id=voucher.id,
            amount_expected=10,
            amount=10,
            phone="254712345678",
            status="paid",
            receipt=f"R{owner.id}X{n}",
            source="stk",
        )
        db.session.add(payment)
        db.session.flush()
        initiation = StkInitiation(
            checkout_request_id=f"ws_CO_{owner.id}_{n}",
            account_reference=voucher.code,
            phone_number="254712345678",
            amount=10,
            paybill_number=paybill.number,
            paybill_id=paybill.id,
            router_id=router.id,
            voucher_id=voucher.id,
            payment_id=payment.id,
        )
        activation = Activation(voucher_id=voucher.id, router_id=router.id, status="failed", last_error="router down")
        log = WebhookLog(kind="stk_callback", paybill_id=paybill.id, payload=json.dumps({"x": 1}), status="processed")
        audit_row = AuditLog(owner_id=owner.id, actor_id=owner.id, actor=owner.email, action="test")
        db.session.add_all([initiation, activation, log, audit_row])
        db.session.commit()
        everything = Everything(owner=owner)
        for row in (paybill, router, plan, voucher, payment, initiation, activation, log, audit_row):
            everything.ids[type(row)] = row.id
        everything.ids[User] = owner.id  # /owners/<owner_id>/…: admin only
        from portal.models import Payout, Refund  # issue 15: payouts and refunds are addressed by id

        payout = Payout(owner_id=owner.id, paybill_id=paybill.id, amount=100, phone="254712345678", state="failed",
                        is_retryable=True, kind="test")
        refund = Refund(owner_id=owner.id, paybill_id=paybill.id, payment_id=payment.id, amount=10,
                        phone="254712345678", state="failed", is_retryable=True, reason="test")
        db.session.add_all([payout, refund])
        db.session.commit()
        everything.ids[Payout], everything.ids[Refund] = payout.id, refund.id
        everything.keys[(Voucher, "code")] = voucher.code
        everything.keys[(Payment, "public_id")] = payment.public_id
        everything.keys[(Payment, "receipt")] = payment.receipt
        return everything

    return make

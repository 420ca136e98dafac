"""Test harness: the portal served over real HTTP, the sandbox Daraja over real HTTP, the sandbox
router over real RouterOS API bytes, on SQLite always and on PostgreSQL when TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from portal import create_app
from portal.core.database import use_autocommit_in_this_thread
from portal.core.extensions import db
from portal.hotspot.activations import ActivationWorker
from portal.models import Plan, User
from portal.sandbox.daraja import SandboxDaraja
from portal.sandbox.router import SandboxRouter

# Fixture modules shared by several test files: the dashboard's signed-in browser and factories,
# and headless Chromium for the customer flows.
pytest_plugins = ["tests.dashboard_support", "tests.browser", "tests.tunnel_support", "tests.money_support",
                  "tests.sms_support"]

TEST_FERNET_KEY = "hKGDXyRf0s3f0hP1mS0uV9f8yqQmG1GZ0m3vCq7bN3w="
PG_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]
CONSUMER_KEY, CONSUMER_SECRET = "test-consumer-key-4b1f", "test-consumer-secret-9c2e"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"


# ---------------------------------------------------------------------------------------------
# Nothing leaves this machine


@pytest.fixture(autouse=True)
def _only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                if not ipaddress.ip_address(host).is_loopback:
                    raise AssertionError(f"test tried to connect to non-loopback {host}")
            except ValueError:
                if host != "localhost":
                    raise AssertionError(f"test tried to connect to {host}") from None
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


# ---------------------------------------------------------------------------------------------
# Databases


def _worker_suffix() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str | None]:
    """A private PostgreSQL database per xdist worker, created fresh for the session."""
    if not PG_URL:
        yield None
        return
    import psycopg

    admin_url = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    # Per process, so two test runs on one machine never drop each other's database.
    name = f"portal_test_{_worker_suffix()}_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield re.sub(r"/[^/]*$", f"/{name}", admin_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_pg_schema_ready = False


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any, pg_database_url: str | None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/portal.db"
    assert pg_database_url, "TEST_DATABASE_URL is set but PostgreSQL is unreachable"
    return pg_database_url


def _reset_schema(app: Any) -> None:
    global _pg_schema_ready
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            if not _pg_schema_ready:
                db.drop_all()
                db.create_all()
                _pg_schema_ready = True
            else:
                tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
                with db.engine.begin() as conn:
                    conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        else:
            db.create_all()


# ---------------------------------------------------------------------------------------------
# Sandboxes


@pytest.fixture
def daraja() -> Iterator[SandboxDaraja]:
    sandbox = SandboxDaraja(callback_delay_s=0.2)
    sandbox.enforce_subscriber_lock = False  # tests push to the same test number back to back
    sandbox.add_app(CONSUMER_KEY, CONSUMER_SECRET)
    sandbox.add_shortcode("174379", SANDBOX_PASSKEY)
    sandbox.add_shortcode("600100", "till-store-passkey", till_numbers=("5123456",))
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def router_box() -> Iterator[SandboxRouter]:
    sandbox = SandboxRouter().start()
    sandbox.add_host("AA:BB:CC:DD:EE:01", "10.5.50.23")
    yield sandbox
    sandbox.stop()


# ---------------------------------------------------------------------------------------------
# The app, served for real


class LiveServer:
    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()


def build_app(database_url: str, daraja_url: str, **overrides: Any) -> Any:
    config = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key",
        "PORTAL_ENCRYPTION_KEYS": TEST_FERNET_KEY,
        "DARAJA_BASE_URL": daraja_url,
        "PORTAL_SCHEDULER": "off",
        "PORTAL_DARAJA_TIMEOUT_S": 2.0,
        "PORTAL_ROUTER_CONNECT_TIMEOUT_S": 1.0,
        "PORTAL_ROUTER_COMMAND_TIMEOUT_S": 2.0,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    """Override in a test module to change settings."""
    return {}


@pytest.fixture
def app(database_url: str, daraja: SandboxDaraja, app_overrides: dict[str, Any]) -> Iterator[Any]:
    application = build_app(database_url, daraja.base_url, **app_overrides)
    _reset_schema(application)
    live = LiveServer(application).start()
    application.config["PORTAL_BASE_URL"] = live.url
    application.live_url = live.url
    # The test thread only inspects and pokes; its reads must not hold SQLite's write lock
    # while the live server (other threads) works.
    use_autocommit_in_this_thread(True)
    with application.app_context():
        yield application
        db.session.remove()
    live.stop()
    pool = application.extensions.get("portal_router_pool")
    if pool is not None:
        pool.close_all()
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def worker(app: Any) -> Iterator[ActivationWorker]:
    """The in-process activation worker, as in demo mode (woken by each payment)."""
    w = ActivationWorker(app, threads=4, poll_interval_s=0.5).start()
    yield w
    w.stop()


# ---------------------------------------------------------------------------------------------
# Factories


@pytest.fixture
def make_owner(app: Any) -> Callable[..., User]:
    from portal.owners.accounts import create_owner

    counter = iter(range(1, 10_000))

    def make(email: str | None = None, password: str = "correct horse battery", admin: bool = False) -> User:
        user = create_owner(email or f"owner{next(counter)}@example.com", password, admin=admin)
        db.session.commit()
        return user

    return make


@pytest.fixture
def make_paybill(app: Any) -> Callable[..., Any]:
    from portal.owners.paybills import create_paybill

    def make(owner: User | None, kind: str = "paybill", **kw: Any) -> Any:
        if kind == "till":
            defaults = dict(number="5123456", store_number="600100", passkey="till-store-passkey")
        else:
            defaults = dict(number="174379", passkey=SANDBOX_PASSKEY)
        defaults = dict(consumer_key=CONSUMER_KEY, consumer_secret=CONSUMER_SECRET, **defaults)
        defaults.update(kw)
        paybill = create_paybill(owner=owner, kind=kind, environment="sandbox", **defaults)
        db.session.flush()
        if owner is not None and owner.default_paybill_id is None:
            owner.default_paybill_id = paybill.id
        db.session.commit()
        return paybill

    return make


@pytest.fixture
def make_router(app: Any, router_box: SandboxRouter) -> Callable[..., Any]:
    from portal.hotspot.routers import create_router

    def make(owner: User, name: str = "Mama Njeri Cafe", box: SandboxRouter | None = None, **kw: Any) -> Any:
        box = box or router_box
        router = create_router(
            owner=owner, name=name, host=box.host, port=box.port, username=box.username,
            password=box.password, **kw,
        )
        db.session.commit()
        return router

    return make


@pytest.fixture
def make_pull_router(app: Any) -> Callable[..., Any]:
    """A router that syncs by pull: returns (router, token)."""
    from portal.hotspot.pull_sync import create_pull_router

    def make(owner: User, name: str = "Kibanda Kiosk", **kw: Any) -> Any:
        router, token = create_pull_router(owner=owner, name=name, **kw)
        db.session.commit()
        return router, token

    return make


@pytest.fixture
def pulling_router(app: Any, router_box: SandboxRouter) -> Iterator[Callable[..., Any]]:
    """A sandbox pulling router for (router, token), syncing against the live server (stopped at the end)."""
    from portal.hotspot.pull_sync import sync_url
    from portal.sandbox.pulling_router import SandboxPullingRouter

    made: list[Any] = []

    def make(router: Any, token: str, box: SandboxRouter | None = None, **kw: Any) -> Any:
        kw.setdefault("timeout_s", 20.0)  # a loaded test machine must not look like a lost answer
        puller = SandboxPullingRouter(box or router_box, sync_url(router, app.live_url), token, **kw)
        made.append(puller)
        return puller

    yield make
    for puller in made:
        puller.stop()


@pytest.fixture
def make_plan(app: Any) -> Callable[..., Plan]:
    def make(owner: User, name: str = "1 Hour", price: int = 10, duration_s: int = 3600, **kw: Any) -> Plan:
        plan = Plan(owner_id=owner.id, name=name, price=price, duration_s=duration_s, **kw)
        db.session.add(plan)
        db.session.commit()
        return plan

    return make


@pytest.fixture
def shop(make_owner, make_paybill, make_router, make_plan) -> Any:  # type: ignore[no-untyped-def]
    """One owner with a paybill, a sandbox router and a 1-hour plan: the common starting point."""

    class Shop:
        pass

    s = Shop()
    s.owner = make_owner()
    s.paybill = make_paybill(s.owner)
    from portal.owners.paybills import register_c2b_urls

    register_c2b_urls(s.paybill)  # through the sandbox Daraja, as `flask c2b register` does
    s.router = make_router(s.owner)
    s.plan = make_plan(s.owner, rate_limit="2M/5M", data_limit_bytes=500 * 1024 * 1024)
    return s


# ---------------------------------------------------------------------------------------------
# A customer's browser (real HTTP against the live server)


HIDDEN_INPUT = re.compile(r'<input[^>]*name="(?P<name>[^"]+)"[^>]*value="(?P<value>[^"]*)"', re.S)


def form_fields(html: str) -> dict[str, str]:
    import html as html_lib

    return {m["name"]: html_lib.unescape(m["value"]) for m in HIDDEN_INPUT.finditer(html)}


class Customer:
    def __init__(self, app: Any) -> None:
        self.base = app.live_url
        self.http = requests.Session()

    def open_plans(self, slug: str, **hotspot: str) -> requests.Response:
        return self.http.get(f"{self.base}/r/{slug}", params=hotspot, timeout=5)

    def buy(self, slug: str, plan_id: int, phone: str, page: requests.Response | None = None, **hotspot: str) -> requests.Response:
        page = page or self.open_plans(slug, **hotspot)
        fields = form_fields(page.text)
        fields.update(plan_id=str(plan_id), phone=phone)
        return self.http.post(f"{self.base}/r/{slug}/buy", data=fields, allow_redirects=False, timeout=10)

    def status(self, purchase_url: str) -> dict[str, Any]:
        return self.http.get(f"{self.base}{purchase_url}/status", timeout=5).json()

    def wait_for(self, purchase_url: str, states: tuple[str, ...], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(purchase_url)
            if body["status"] in states or time.monotonic() > deadline:
                return body
            time.sleep(0.05)


@pytest.fixture
def customer(app: Any) -> Customer:
    return Customer(app)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)

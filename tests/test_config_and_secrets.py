"""Settings, production guards, and secrets at rest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.core.config import ConfigError
from portal.core.extensions import db
from portal.models import utcnow
from portal.mpesa.client import CachedToken
from portal.owners.paybills import PaybillTokenStore

from .conftest import CONSUMER_KEY, CONSUMER_SECRET, SANDBOX_PASSKEY


def test_importing_the_package_does_nothing(tmp_path):
    import subprocess as sp
    import sys

    code = "import portal, threading, sys; assert threading.active_count() == 1; print('ok')"
    out = sp.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "ok", out.stderr


def test_development_secrets_are_generated_once_into_the_instance_folder(tmp_path, monkeypatch):
    for name in ("SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "DATABASE_URL", "PORTAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    from portal.core.config import load_settings

    first = load_settings(str(tmp_path))
    second = load_settings(str(tmp_path))

    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(first["SECRET_KEY"]) > 40
    assert first["PORTAL_ENCRYPTION_KEYS"] == second["PORTAL_ENCRYPTION_KEYS"]
    assert first["DATABASE_URL"].startswith("sqlite:///") and str(tmp_path) in first["DATABASE_URL"]
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


GOOD_PRODUCTION = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": "a-real-secret-key-from-the-environment",
    "PORTAL_ENCRYPTION_KEYS": "hKGDXyRf0s3f0hP1mS0uV9f8yqQmG1GZ0m3vCq7bN3w=",
    "PORTAL_BASE_URL": "https://portal.example.com",
    "DATABASE_URL": "postgresql://portal@127.0.0.1/portal",
}


@pytest.mark.parametrize(
    ("missing", "words"),
    [
        ("SECRET_KEY", "SECRET_KEY"),
        ("PORTAL_ENCRYPTION_KEYS", "PORTAL_ENCRYPTION_KEYS"),
        ("PORTAL_BASE_URL", "https://"),
        ("DATABASE_URL", "DATABASE_URL"),
    ],
)
def test_production_refuses_to_start_without_each_guard(monkeypatch, tmp_path, missing, words):
    for name in GOOD_PRODUCTION:
        monkeypatch.delenv(name, raising=False)
    settings = dict(GOOD_PRODUCTION)
    settings[missing] = "http://portal.example.com" if missing == "PORTAL_BASE_URL" else ""

    with pytest.raises(ConfigError, match=words):
        create_app(settings)


def test_production_with_every_guard_set_starts(monkeypatch):
    app = create_app(GOOD_PRODUCTION)
    assert app.config["IS_PRODUCTION"] and app.config["SESSION_COOKIE_SECURE"]
    assert app.config["DARAJA_BASE_URL"] == ""  # resolved per paybill: production host for production paybills


def test_a_bad_encryption_key_is_refused_by_name():
    with pytest.raises(ConfigError, match="PORTAL_ENCRYPTION_KEYS"):
        create_app({"PORTAL_ENCRYPTION_KEYS": "not-a-key", "SECRET_KEY": "x", "DATABASE_URL": "sqlite://"})


SEEDED_SECRETS = (CONSUMER_KEY, CONSUMER_SECRET, SANDBOX_PASSKEY, "sandbox-router-pass", "live-access-token-7f3a9")


def _seed_secrets(shop) -> None:  # type: ignore[no-untyped-def]
    PaybillTokenStore(shop.paybill.id).save(CachedToken("live-access-token-7f3a9", utcnow()))
    db.session.expire_all()


def _dump(app) -> bytes:  # type: ignore[no-untyped-def]
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        db.session.commit()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    pg_dump = shutil.which("pg_dump") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None)
    assert pg_dump, "pg_dump is needed to check the PostgreSQL dump"
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    return subprocess.run([str(pg_dump), "--data-only", plain], capture_output=True, check=True).stdout


def test_database_dump_holds_no_secret_in_plain_text(app, shop):
    _seed_secrets(shop)
    assert shop.paybill.access_token == "live-access-token-7f3a9"  # it is stored, decryptable

    dump = _dump(app)

    assert len(dump) > 1000
    for secret in SEEDED_SECRETS:
        assert secret.encode() not in dump, secret
    assert shop.paybill.webhook_token.encode() not in dump


def test_secret_columns_hold_fernet_tokens(app, shop):
    row = db.session.execute(sa.text("SELECT consumer_secret_encrypted, passkey_encrypted FROM paybills")).one()
    assert all(value.startswith("gAAAA") for value in row)


def test_every_response_carries_the_security_headers(app, shop):
    client = app.test_client()
    for path in (f"/r/{shop.router.slug}", "/healthz", "/static/captive.css", "/dashboard/", "/nope"):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/r/{shop.router.slug}").headers["Referrer-Policy"] == "no-referrer"
    assert "max-age" in client.get("/static/captive.css").headers["Cache-Control"]


def test_production_sends_hsts_and_secure_cookies_behind_https(monkeypatch):
    app = create_app(dict(GOOD_PRODUCTION, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"))
    response = app.test_client().get("/static/captive.css", base_url="https://portal.example.com")
    assert "max-age=31536000" in response.headers["Strict-Transport-Security"]
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_HTTPONLY"]
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"

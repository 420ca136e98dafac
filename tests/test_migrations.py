"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from portal.core.extensions import db

from .conftest import build_app

MIGRATIONS = str(Path(__file__).resolve().parents[1] / "portal" / "migrations")


def _fresh_app(database_url):  # type: ignore[no-untyped-def]
    app = build_app(database_url, "http://127.0.0.1:1")
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    return app


def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(database_url):
    app = _fresh_app(database_url)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []
        downgrade(directory=MIGRATIONS, revision="base")
        remaining = set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert remaining == set()
        db.create_all()  # leave the schema the other tests expect
        db.engine.dispose()
    import tests.conftest as harness

    harness._pg_schema_ready = False

"""Time the dashboard's money queries against 1,000,000 payments in PostgreSQL (not a test).

    .venv/bin/python scripts/bench_dashboard.py [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Creates (and drops first) the database ``bench_dashboard_money``, seeds one owner with ``rows``
payments, vouchers and STK initiations over 90 days by INSERT … SELECT generate_series, plus a
second owner with a tenth as many, runs ANALYZE, then times each query (median of 15 runs after
warm-up). The bar is 150 ms per page; ``bench(database_url)`` returns the figures for a caller.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEST_FERNET_KEY = "hKGDXyRf0s3f0hP1mS0uV9f8yqQmG1GZ0m3vCq7bN3w="
DATABASE = "bench_dashboard_money"


def recreate_database(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"


SEED_SQL = """
INSERT INTO vouchers (code, owner_id, plan_id, router_id, status, phone, source, created_at, paid_at, activated_at, expires_at)
SELECT 'B' || lpad(to_hex(i + %(offset)s), 10, '0'), %(owner)s, %(plan)s, %(router)s,
       -- Paid vouchers past their hour are expired (the expiry job's work), the rest active.
       CASE WHEN i %% 10 >= 7 THEN 'pending_payment'
            WHEN now() - (i * interval '90 days' / %(rows)s) + interval '1 hour' > now() THEN 'active'
            ELSE 'expired' END,
       '2547' || lpad((i %% 100000000)::text, 8, '0'), 'purchase',
       now() - (i * interval '90 days' / %(rows)s),
       CASE WHEN i %% 10 < 7 THEN now() - (i * interval '90 days' / %(rows)s) END,
       CASE WHEN i %% 10 < 7 THEN now() - (i * interval '90 days' / %(rows)s) + interval '3 seconds' END,
       CASE WHEN i %% 10 < 7 THEN now() - (i * interval '90 days' / %(rows)s) + interval '1 hour' END
FROM generate_series(1, %(rows)s) AS i;

INSERT INTO payments (public_id, owner_id, router_id, paybill_id, voucher_id, amount_expected, amount, phone,
                      status, provider, receipt, source, created_at, paid_at)
SELECT 'p' || v.id || '-' || %(offset)s, v.owner_id, v.router_id, %(paybill)s, v.id, 10,
       CASE WHEN v.paid_at IS NOT NULL THEN 10 END, v.phone,
       CASE WHEN v.paid_at IS NOT NULL THEN 'paid' WHEN v.id %% 10 = 7 THEN 'failed' ELSE 'expired' END,
       'mpesa', CASE WHEN v.paid_at IS NOT NULL THEN 'R' || lpad(to_hex(v.id), 9, '0') END, 'stk', v.created_at, v.paid_at
FROM vouchers v WHERE v.owner_id = %(owner)s;

INSERT INTO stk_initiations (checkout_request_id, account_reference, phone_number, amount, paybill_number, paybill_id,
                             router_id, voucher_id, payment_id, status, result_code, outcome_unknown, query_count, created_at)
SELECT 'ws_CO_' || p.id, v.code, p.phone, 10, '174379', %(paybill)s, p.router_id, v.id, p.id,
       CASE p.status WHEN 'paid' THEN 'completed' WHEN 'failed' THEN 'failed' ELSE 'expired' END,
       CASE p.status WHEN 'paid' THEN '0' WHEN 'failed' THEN '1032' END, false, 0, p.created_at
FROM payments p JOIN vouchers v ON v.id = p.voucher_id WHERE p.owner_id = %(owner)s;
"""


def seed(app: Any, rows: int) -> dict[str, Any]:
    from portal.core.extensions import db
    from portal.hotspot.routers import create_router
    from portal.models import Plan
    from portal.owners.accounts import create_owner
    from portal.owners.paybills import create_paybill

    owners = []
    with app.app_context():
        db.create_all()
        for n, count in ((1, rows), (2, max(1, rows // 10))):
            owner = create_owner(f"bench{n}@example.com", "correct horse battery")
            db.session.flush()
            paybill = create_paybill(owner=owner, kind="paybill", number=f"17437{n}", passkey="x", consumer_key="k",
                                     consumer_secret="s", environment="sandbox")
            router = create_router(owner=owner, name=f"Bench {n}", host="127.0.0.1", port=8728, username="u",
                                   password="p")
            plan = Plan(owner_id=owner.id, name="1 Hour", price=10, duration_s=3600)
            db.session.add(plan)
            db.session.commit()
            started = time.perf_counter()
            with db.engine.begin() as conn:
                params = {"owner": owner.id, "plan": plan.id, "router": router.id, "paybill": paybill.id,
                          "rows": count, "offset": n * 10**8}
                for statement in filter(str.strip, SEED_SQL.split(";")):
                    conn.exec_driver_sql(statement, params)
            print(f"seeded {count:,} payments for owner {owner.id} in {time.perf_counter() - started:.1f} s")
            owners.append(owner.id)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return {"owner_id": owners[0]}


def _time(fn: Any, runs: int = 15) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench(database_url: str, owner_id: int) -> dict[str, float]:
    """Median seconds per query, for the owner with the big history and for an admin (all owners)."""
    from portal import create_app
    from portal.core.extensions import db
    from portal.models import User
    from portal.money import problems
    from portal.owners import payment_search, reports

    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "bench", "PORTAL_ENCRYPTION_KEYS": TEST_FERNET_KEY,
                      "PORTAL_SCHEDULER": "off"})
    figures: dict[str, float] = {}
    with app.app_context():
        owner = db.session.get(User, owner_id)
        admin = User(id=0, email="admin@bench", password_hash="-", role="admin")
        everything = payment_search.PaymentFilter()
        deep = payment_search.search_payments(owner, everything, limit=50)
        for _ in range(200):  # 10,000 rows in: a keyset page costs what page 1 costs
            deep = payment_search.search_payments(owner, everything, after=deep.next_cursor, limit=50)
        cases = {
            "overview (owner)": lambda: reports.build_overview(owner),
            "overview (admin, all owners)": lambda: reports.build_overview(admin),
            "payments page 1": lambda: payment_search.search_payments(owner, everything),
            "payments page 202 (keyset)": lambda: payment_search.search_payments(owner, everything, after=deep.next_cursor),
            "payments status=failed": lambda: payment_search.search_payments(owner, payment_search.PaymentFilter(status="failed")),
            "payments by phone": lambda: payment_search.search_payments(owner, payment_search.PaymentFilter(phone="254700001234")),
            "payments admin page 1": lambda: payment_search.search_payments(admin, everything),
            "problems badge count": lambda: problems.problems_count(owner),
        }
        for name, fn in cases.items():
            figures[name] = _time(lambda fn=fn: (fn(), db.session.rollback()))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    from portal import create_app

    url = recreate_database(args.pg)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "PORTAL_ENCRYPTION_KEYS": TEST_FERNET_KEY,
                      "PORTAL_SCHEDULER": "off"})
    seeded = seed(app, args.rows)
    for name, seconds in bench(url, seeded["owner_id"]).items():
        verdict = "ok" if seconds < 0.150 else "SLOW"
        print(f"{name:32s} {seconds * 1000:8.1f} ms  {verdict}")


if __name__ == "__main__":
    main()

"""Generated data, written through the portal's own models (or bulk SQL for the million rows)."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import procs

SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
OWNER_PASSWORD = "bench password 1234"


def bench_app(database_url: str, *, daraja_url: str = "") -> Any:
    """The portal app in the bench process, only to seed and inspect (never to serve or time)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING)  # create_app would otherwise log every payment at INFO
    from portal import create_app

    app = create_app(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": procs.SECRET_KEY,
            "PORTAL_ENCRYPTION_KEYS": procs.FERNET_KEY,
            "PORTAL_BASE_URL": procs.PUBLIC_URL,
            "PORTAL_SCHEDULER": "off",
            "DARAJA_BASE_URL": daraja_url,
        }
    )
    with app.app_context():
        from portal.core.extensions import db

        # The schema from the models, as the tests build it: the working tree may be ahead of its migrations.
        db.create_all()
    return app


@dataclass
class Shop:
    owner_id: int
    owner_email: str
    paybill_id: int
    webhook_token: str
    plan_id: int
    plan_price: int
    router_ids: list[int] = field(default_factory=list)
    router_slugs: list[str] = field(default_factory=list)


def make_shop(app: Any, boxes: list[Any], *, email: str = "owner@bench.example", number: str = "174379") -> Shop:
    """One owner, one paybill, one plan and a router row per sandbox router in ``boxes``."""
    from portal.core.extensions import db
    from portal.hotspot.routers import create_router
    from portal.models import Plan
    from portal.owners.accounts import create_owner
    from portal.owners.paybills import create_paybill

    with app.app_context():
        owner = create_owner(email, OWNER_PASSWORD)
        db.session.flush()
        paybill = create_paybill(
            owner=owner, number=number, kind="paybill", consumer_key="bench-key", consumer_secret="bench-secret",
            passkey=SANDBOX_PASSKEY, environment="sandbox", name="Bench paybill",
        )
        db.session.flush()
        owner.default_paybill_id = paybill.id
        token = paybill.webhook_token
        plan = Plan(owner_id=owner.id, name="1 Hour", price=10, duration_s=3600, rate_limit="2M/5M")
        db.session.add(plan)
        for order, (name, price, duration) in enumerate([("1 Day", 50, 86400), ("1 Week", 250, 7 * 86400)]):
            db.session.add(Plan(owner_id=owner.id, name=name, price=price, duration_s=duration, rate_limit="3M/8M", sort_order=order + 1))
        routers = []
        for i, box in enumerate(boxes):
            routers.append(create_router(
                owner=owner, name=f"Bench Cafe {i}", host=box.host, port=box.port,
                username=box.username, password=box.password,
            ))
        db.session.commit()
        return Shop(owner.id, email, paybill.id, token, plan.id, plan.price,
                    [r.id for r in routers], [r.slug for r in routers])


@dataclass(frozen=True)
class Purchase:
    checkout_id: str
    code: str
    amount: int
    phone: str
    receipt: str
    router_index: int
    public_id: str
    mac: str
    ip: str


def seed_purchases(app: Any, shop: Shop, count: int, *, tag: str, created_ago_s: float = 5.0) -> list[Purchase]:
    """``count`` purchases waiting for their callback (voucher + payment + initiation with a CheckoutRequestID),
    spread round-robin over the shop's routers. ``tag`` keeps ids unique across runs."""
    from portal.core.extensions import db
    from portal.hotspot.login_context import HotspotContext
    from portal.hotspot.vouchers import new_voucher_code
    from portal.models import Payment, StkInitiation, Voucher, utcnow

    purchases: list[Purchase] = []
    with app.app_context():
        created = utcnow() - timedelta(seconds=created_ago_s)
        for start in range(0, count, 1000):
            batch = []
            for i in range(start, min(count, start + 1000)):
                router_index = i % max(1, len(shop.router_ids))
                mac = f"02:BE:{(i >> 16) & 255:02X}:{(i >> 8) & 255:02X}:{i & 255:02X}:{router_index:02X}"
                ip = f"10.5.{(i >> 8) & 255}.{i & 255}"
                phone = f"2547{secrets.randbelow(10**8):08d}"
                code = new_voucher_code()
                voucher = Voucher(code=code, owner_id=shop.owner_id, plan_id=shop.plan_id,
                                  router_id=shop.router_ids[router_index], phone=phone, device_mac=mac, device_ip=ip,
                                  created_at=created)
                public_id = secrets.token_urlsafe(16)
                payment = Payment(public_id=public_id, owner_id=shop.owner_id, router_id=shop.router_ids[router_index],
                                  paybill_id=shop.paybill_id, voucher=voucher, amount_expected=shop.plan_price,
                                  phone=phone, source="stk", hotspot_json=HotspotContext(mac=mac, ip=ip).to_json(),
                                  created_at=created)
                checkout_id = f"ws_CO_{tag}_{i:08d}"
                initiation = StkInitiation(checkout_request_id=checkout_id, merchant_request_id=f"{i}-{tag}-1",
                                           account_reference=code, phone_number=phone, amount=shop.plan_price,
                                           paybill_number="174379", paybill_id=shop.paybill_id,
                                           router_id=shop.router_ids[router_index], voucher=voucher, payment=payment,
                                           created_at=created)
                batch += [voucher, payment, initiation]
                receipt = f"B{tag}{i:07d}".upper()
                purchases.append(Purchase(checkout_id, code, shop.plan_price, phone, receipt, router_index, public_id, mac, ip))
            db.session.add_all(batch)
            db.session.commit()
    return purchases


def seed_jobs_data(app: Any, daraja: Any, *, paybills: int, query_paybills: int, stuck: int) -> dict[str, Any]:
    """``paybills`` active paybills (each its own Daraja app), and ``stuck`` initiations whose callback
    never came, spread over the first ``query_paybills`` of them, answered only by STK query."""
    from portal.core.extensions import db
    from portal.hotspot.routers import create_router
    from portal.hotspot.vouchers import new_voucher_code
    from portal.models import Payment, Plan, StkInitiation, Voucher, utcnow
    from portal.owners.accounts import create_owner
    from portal.owners.paybills import create_paybill

    with app.app_context():
        owner = create_owner("jobs@bench.example", OWNER_PASSWORD)
        db.session.flush()
        plan = Plan(owner_id=owner.id, name="1 Hour", price=10, duration_s=3600)
        db.session.add(plan)
        router = create_router(owner=owner, name="Jobs Cafe", host="127.0.0.1", port=9, username="x", password="y")
        paybill_rows = []
        for i in range(paybills):
            number = f"{600000 + i}"
            key, secret = f"bench-key-{i:04d}", f"bench-secret-{i:04d}"
            daraja.add_app(key, secret)
            daraja.add_shortcode(number, SANDBOX_PASSKEY)
            paybill_rows.append(create_paybill(owner=owner, number=number, kind="paybill", consumer_key=key,
                                               consumer_secret=secret, passkey=SANDBOX_PASSKEY, environment="sandbox"))
        db.session.flush()
        router.paybill_id = paybill_rows[0].id
        db.session.commit()
        created = utcnow() - timedelta(seconds=120)
        per_paybill: dict[str, int] = {}
        for start in range(0, stuck, 1000):
            batch = []
            for i in range(start, min(stuck, start + 1000)):
                paybill = paybill_rows[i % query_paybills]
                phone = f"2547{secrets.randbelow(10**8):08d}"
                code = new_voucher_code()
                checkout_id = f"ws_CO_STUCK_{i:08d}"
                result = 1032 if i % 5 == 4 else 0
                daraja.add_answered_push(checkout_id, shortcode=paybill.number, phone=phone, amount=10,
                                         result_code=result, receipt=f"S{i:09d}")
                per_paybill[paybill.number] = per_paybill.get(paybill.number, 0) + 1
                voucher = Voucher(code=code, owner_id=owner.id, plan_id=plan.id, router_id=router.id, phone=phone, created_at=created)
                payment = Payment(public_id=secrets.token_urlsafe(16), owner_id=owner.id, router_id=router.id,
                                  paybill_id=paybill.id, voucher=voucher, amount_expected=10, phone=phone, created_at=created)
                batch += [voucher, payment, StkInitiation(
                    checkout_request_id=checkout_id, account_reference=code, phone_number=phone, amount=10,
                    paybill_number=paybill.number, paybill_id=paybill.id, router_id=router.id, voucher=voucher,
                    payment=payment, created_at=created)]
            db.session.add_all(batch)
            db.session.commit()
    return {"per_paybill": per_paybill}


def reset_tokens(app: Any) -> None:
    """Every paybill's token missing again, so the next refresh fetches all of them."""
    from portal.core.extensions import db
    from portal.models import Paybill

    with app.app_context():
        db.session.execute(sa.update(Paybill).values(access_token_encrypted=None, token_expires_at=None, last_token_refresh=None))
        db.session.commit()


def count(app: Any, model_name: str, *where: Any) -> int:
    from portal import models
    from portal.core.extensions import db

    model = getattr(models, model_name)
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def settle_backlog(app: Any) -> int:
    """Mark every unfinished activation done (the throughput runs leave thousands, with no worker running)."""
    from portal.core.extensions import db
    from portal.models import Activation

    with app.app_context():
        n = db.session.execute(sa.update(Activation).where(Activation.status != "done").values(status="done")).rowcount
        db.session.commit()
        return n


def seed_million_payments(database_url: str, owner_id: int, router_id: int, paybill_id: int, plan_id: int, rows: int) -> None:
    """``rows`` vouchers and payments spread over 90 days, by INSERT … SELECT generate_series (fast)."""
    import psycopg

    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO vouchers (code, owner_id, plan_id, router_id, status, phone, source, created_at, paid_at)
            SELECT 'M' || lpad(to_hex(i), 10, '0'), %(owner)s, %(plan)s, %(router)s,
                   (ARRAY['active','expired','expired','paid','pending_payment'])[1 + i %% 5],
                   '2547' || lpad((i::bigint * 7919 %% 100000000)::text, 8, '0'), 'purchase',
                   now() - (i %% 7776000) * interval '1 second', now() - (i %% 7776000) * interval '1 second'
            FROM generate_series(1, %(rows)s) AS i
            """,
            {"owner": owner_id, "plan": plan_id, "router": router_id, "rows": rows},
        )
        conn.execute(
            """
            INSERT INTO payments (public_id, owner_id, router_id, paybill_id, voucher_id, amount_expected, amount,
                                  phone, status, provider, receipt, source, created_at, paid_at)
            SELECT md5(v.id::text || 'bench'), v.owner_id, v.router_id, %(paybill)s, v.id, 10,
                   CASE WHEN v.status IN ('active','expired','paid') THEN 10 END,
                   v.phone,
                   CASE v.status WHEN 'pending_payment' THEN 'failed' ELSE 'paid' END, 'mpesa',
                   CASE WHEN v.status IN ('active','expired','paid') THEN 'M' || lpad(to_hex(v.id), 11, '0') END,
                   'stk', v.created_at, v.paid_at
            FROM vouchers v WHERE v.code LIKE 'M%%'
            """,
            {"paybill": paybill_id},
        )
        conn.execute("ANALYZE vouchers")
        conn.execute("ANALYZE payments")


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'bench.db'}"

"""Vouchers on the dashboard: search, batches for cash sales (print sheet, CSV), and disabling.

A batch voucher is created ``paid`` with source ``batch`` and goes to the router through the same
activation outbox as a bought one, so a router that is down gets it later and the owner sees the
backlog on the Problems page. Each batch has a ``batch_ref`` that names its printed sheet.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import segno
import sqlalchemy as sa
from markupsafe import Markup

from ..core.extensions import db
from ..models import Activation, Plan, Router, User, Voucher, VoucherBatch, utcnow
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import normalise_phone
from ..owners import audit
from ..owners.scope import NotFound, owned
from . import activations, brands
from .catalogue import describe_bytes, describe_devices, describe_duration
from .vouchers import awaiting_payment, is_awaiting_payment, new_voucher_code, normalise_code

MAX_BATCH = 500
SEARCH_LIMIT = 100


class VoucherActionError(Exception):
    """Refused; the message is for the owner, ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------------------------------------
# Search


# What the owner reads for a voucher, and the list's status filter. Cash (batch) vouchers read
# "unsold" until the router first counts time on them, then "in use", then "used up".
VOUCHER_VIEWS: dict[str, str] = {
    "": "everything but unpaid prompts",
    "unsold": "unsold cash vouchers",
    "in_use": "in use",
    "used_up": "used up",
    "disabled": "disabled",
    "unpaid": "unpaid prompts",
    "all": "everything",
}


def _unused_cash() -> sa.ColumnElement[bool]:
    return sa.and_(Voucher.source == "batch", Voucher.status.in_(("paid", "active")),
                   Voucher.first_used_at.is_(None), Voucher.expires_at.is_(None))


def view_clause(view: str) -> sa.ColumnElement[bool]:
    """The WHERE clause of one VOUCHER_VIEWS entry. Raises ValueError for an unknown one."""
    if view not in VOUCHER_VIEWS:
        raise ValueError(f"unknown voucher view {view!r}")
    return {
        "": sa.not_(awaiting_payment(Voucher)),
        "unsold": _unused_cash(),
        "in_use": sa.and_(Voucher.status.in_(("paid", "active")), sa.not_(_unused_cash())),
        "used_up": sa.and_(Voucher.status == "expired", Voucher.paid_at.is_not(None)),
        "disabled": Voucher.status == "cancelled",
        "unpaid": awaiting_payment(Voucher),
        "all": sa.true(),
    }[view]


def voucher_state(voucher: Voucher) -> tuple[str, str]:
    """(words for the owner, tag colour) for one voucher."""
    if voucher.status == "cancelled":
        return "disabled", "bad"
    if is_awaiting_payment(voucher):
        return ("prompt expired, unpaid" if voucher.status == "expired" else "awaiting payment"), ""
    if voucher.status == "expired":
        return "used up", ""
    if voucher.source == "batch" and voucher.first_used_at is None and voucher.expires_at is None:
        return ("unsold" if voucher.status == "active" else "unsold, going to the router"), "warn"
    if voucher.status == "paid":
        return "paid, going to the router", "warn"
    return "in use", "ok"


def search_vouchers(user: User, query: str | None, *, view: str = "", limit: int = SEARCH_LIMIT) -> list[Voucher]:
    """Newest first. A phone number (07…, +254…) matches the voucher's phone; anything else is a
    code or the start of one. An empty query lists the latest vouchers. ``view`` is a
    VOUCHER_VIEWS key; the default leaves out prompts nobody paid."""
    where: list[sa.ColumnElement[bool]] = [owned(Voucher.owner_id, user), view_clause(view)]
    text = (query or "").strip()
    if text:
        where.append(_match(text))
    return list(db.session.scalars(
        sa.select(Voucher).where(*where).order_by(Voucher.created_at.desc(), Voucher.id.desc()).limit(limit)
    ))


def _match(text: str) -> sa.ColumnElement[bool]:
    try:
        return Voucher.phone == normalise_phone(text)
    except InvalidPhoneNumber:
        code = normalise_code(text)
        return Voucher.code.startswith(code, autoescape=True) if code else sa.false()


def owned_voucher(user: User, voucher_id: int) -> Voucher:
    voucher = db.session.scalars(sa.select(Voucher).where(Voucher.id == voucher_id, owned(Voucher.owner_id, user))).first()
    if voucher is None:
        raise NotFound(f"voucher {voucher_id}")
    return voucher


# ---------------------------------------------------------------------------------------------
# Batches


def generate_batch(
    user: User, *, plan_id: int, router_id: int, count: int, note: str = "", source_ip: str | None = None
) -> str:
    """Create ``count`` paid vouchers of a plan for cash sale and queue each for the router.

    One transaction (vouchers, activations, audit entry); the worker is woken after the commit.
    Returns the batch reference for the print sheet and CSV. Raises ``VoucherActionError``.
    """
    if not 1 <= count <= MAX_BATCH:
        raise VoucherActionError(f"Make between 1 and {MAX_BATCH} vouchers at a time.", field="count")
    plan = db.session.scalars(sa.select(Plan).where(Plan.id == plan_id, owned(Plan.owner_id, user))).first()
    if plan is None:
        raise VoucherActionError("Choose one of your plans.", field="plan_id")
    router = db.session.scalars(
        sa.select(Router).where(Router.id == router_id, Router.owner_id == plan.owner_id)
    ).first()
    if router is None or not owned_router_visible(user, router):
        raise VoucherActionError("Choose one of your routers.", field="router_id")
    batch_ref = secrets.token_hex(6)
    now = utcnow()
    vouchers = [
        Voucher(code=new_voucher_code(), owner_id=plan.owner_id, plan_id=plan.id, router_id=router.id,
                status="paid", source="batch", batch_ref=batch_ref, paid_at=now)
        for _ in range(count)
    ]
    db.session.add_all(vouchers)
    db.session.add(VoucherBatch(ref=batch_ref, owner_id=plan.owner_id, note=note.strip()[:200] or None, created_at=now))
    db.session.flush()
    for voucher in vouchers:
        activations.queue_activation(voucher_id=voucher.id, router_id=router.id, device_mac=None, device_ip=None)
    audit.record(
        "voucher.batch", actor=user, owner_id=plan.owner_id, object_type="voucher_batch", object_id=batch_ref,
        detail=f"{count} × {plan.name} (KES {plan.price}) on {router.name}" + (f"; note: {note.strip()}" if note.strip() else ""),
        source_ip=source_ip,
    )
    db.session.commit()
    activations.wake_worker()
    return batch_ref


def owned_router_visible(user: User, router: Router) -> bool:
    return user.is_admin or router.owner_id == user.id


def batch_vouchers(user: User, batch_ref: str) -> list[Voucher]:
    vouchers = list(db.session.scalars(
        sa.select(Voucher).where(Voucher.batch_ref == batch_ref, owned(Voucher.owner_id, user)).order_by(Voucher.id)
    ))
    if not vouchers:
        raise NotFound(f"batch {batch_ref}")
    return vouchers


@dataclass(frozen=True)
class BatchSummary:
    batch_ref: str
    count: int
    created_at: datetime
    first_voucher_id: int  # the dashboard addresses a batch through one of its vouchers
    note: str | None = None


def recent_batches(user: User, limit: int = 10) -> list[BatchSummary]:
    recent = (
        sa.select(Voucher.batch_ref, sa.func.count().label("n"), sa.func.min(Voucher.created_at).label("made"),
                  sa.func.min(Voucher.id).label("first_id"))
        .where(Voucher.batch_ref.is_not(None), owned(Voucher.owner_id, user))
        .group_by(Voucher.batch_ref)
        .order_by(sa.func.min(Voucher.id).desc())
        .limit(limit)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(recent.c.batch_ref, recent.c.n, recent.c.made, recent.c.first_id, VoucherBatch.note)
        .outerjoin(VoucherBatch, VoucherBatch.ref == recent.c.batch_ref)
        .order_by(recent.c.first_id.desc())
    ).all()
    return [BatchSummary(*row) for row in rows]


def batch_note(batch_ref: str) -> str | None:
    """The note typed when the batch was made (batches from before notes were kept have none)."""
    return db.session.scalar(sa.select(VoucherBatch.note).where(VoucherBatch.ref == batch_ref))


def voucher_login_url(base_url: str, router: Router, code: str) -> str:
    """Where the printed QR code leads: the router's portal page with the code filled in."""
    return f"{base_url.rstrip('/')}/r/{router.slug}?{urlencode({'voucher': code})}"


def qr_svg(url: str) -> Markup:
    """An inline SVG QR code (segno; no style attributes, so the CSP allows it)."""
    return Markup(segno.make(url, error="m").svg_inline(scale=3, border=2, title=None))


# Printed sheets: A4 with 8, 12 or 24 cards, or one long strip for a 58 mm thermal printer.
PRINT_LAYOUTS: dict[str, str] = {
    "a4-8": "A4, 8 per page (large)",
    "a4-12": "A4, 12 per page",
    "a4-24": "A4, 24 per page (small)",
    "thermal-58": "Thermal printer, 58 mm roll",
}
DEFAULT_LAYOUT = "a4-24"


@dataclass(frozen=True)
class SheetEntry:
    """Everything one printed card carries, in the words the customer reads."""

    code: str
    business_name: str
    wifi_name: str | None
    plan_name: str
    price: int
    duration: str
    data_cap: str
    speed: str
    support_phone: str | None
    url: str
    qr: Markup
    devices: str = "1 device"


def describe_speed(rate_limit: str | None) -> str:
    """RouterOS "rx/tx" is from the router's side (rx = the customer's upload): "5M down / 2M up"."""
    if not rate_limit:
        return "full speed"
    upload, _, download = rate_limit.split()[0].partition("/")
    return f"{download}bps down / {upload}bps up" if download else f"up to {upload}bps"


def sheet_entries(user: User, batch_ref: str, *, base_url: str) -> list[SheetEntry]:
    """One printable card per voucher of the batch: the business name (Account page, else the
    customer pages' hotspot name, else the router's name), the support phone the customer pages
    show (the brand's, else the Account page's), the router's Wi-Fi name, the plan's price,
    length, data and speed."""
    entries = []
    for voucher in batch_vouchers(user, batch_ref):
        plan, router, owner = voucher.plan, voucher.router, voucher.router.owner
        brand = brands.brand_for(router.id)
        url = voucher_login_url(base_url, router, voucher.code)
        entries.append(SheetEntry(
            code=voucher.code, business_name=owner.business_name or brand.hotspot_name or router.name,
            wifi_name=router.wifi_name, plan_name=plan.name, price=plan.price,
            duration=describe_duration(plan.duration_s), data_cap=describe_bytes(plan.data_limit_bytes) or "no data cap",
            speed=describe_speed(plan.rate_limit), support_phone=brand.support_phone or owner.support_phone,
            url=url, qr=qr_svg(url), devices=describe_devices(plan.devices),
        ))
    return entries


def batch_csv(user: User, batch_ref: str, *, base_url: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("code", "plan", "price_kes", "duration_s", "router", "status", "login_url"))
    for voucher in batch_vouchers(user, batch_ref):
        writer.writerow((voucher.code, voucher.plan.name, voucher.plan.price, voucher.plan.duration_s,
                         voucher.router.name, voucher.status, voucher_login_url(base_url, voucher.router, voucher.code)))
    yield buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Disabling


DISABLEABLE = ("pending_payment", "paid", "active")


def disable_voucher(user: User, voucher_id: int, *, reason: str, source_ip: str | None = None) -> None:
    """Cancel a voucher and take it off the router. Exactly once: the status change is the gate.

    A queued activation that has not been claimed yet is stopped; one already running may still
    add the user, and the queued removal, which never runs before or alongside it (see
    ``activations``), takes it away again."""
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise VoucherActionError("Say why, in a few words: it goes into the audit log.", field="reason")
    voucher = owned_voucher(user, voucher_id)
    previous = voucher.status
    won = db.session.execute(
        sa.update(Voucher)
        .where(Voucher.id == voucher.id, Voucher.status.in_(DISABLEABLE))
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not won:
        db.session.rollback()
        raise VoucherActionError(f"Voucher {voucher.code} is already {voucher.status}.")
    db.session.execute(
        sa.update(Activation)
        .where(Activation.voucher_id == voucher.id, Activation.kind == "activate",
               Activation.status.in_(("pending", "failed")))
        .values(status="done", last_error="voucher cancelled before it reached the router", done_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    # Whenever an activation exists, whatever the status read above: a payment that settled (and
    # an activation that ran) between that read and the cancel may have put the user on the
    # router. A removal of a user that is not there is harmless; one left there is not.
    has_activation = db.session.scalar(
        sa.select(sa.func.count()).select_from(Activation)
        .where(Activation.voucher_id == voucher.id, Activation.kind == "activate")
    )
    queued = bool(previous in ("paid", "active") or has_activation) and activations.queue_removal(voucher)
    audit.record(
        "voucher.disable", actor=user, owner_id=voucher.owner_id, object_type="voucher", object_id=str(voucher.id),
        detail=f"{voucher.code} was {previous}; reason: {reason[:500]}", source_ip=source_ip,
    )
    db.session.commit()
    if queued:
        activations.wake_worker()

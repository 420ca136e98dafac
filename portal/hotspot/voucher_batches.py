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
from ..models import Activation, Plan, Router, User, Voucher, utcnow
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import normalise_phone
from ..owners import audit
from ..owners.scope import NotFound, owned
from . import activations
from .vouchers import new_voucher_code, normalise_code

MAX_BATCH = 500
SEARCH_LIMIT = 100


class VoucherActionError(Exception):
    """Refused; the message is for the owner, ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------------------------------------
# Search


def search_vouchers(user: User, query: str | None, *, limit: int = SEARCH_LIMIT) -> list[Voucher]:
    """Newest first. A phone number (07…, +254…) matches the voucher's phone; anything else is a
    code or the start of one. An empty query lists the latest vouchers."""
    where: list[sa.ColumnElement[bool]] = [owned(Voucher.owner_id, user)]
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


def recent_batches(user: User, limit: int = 10) -> list[BatchSummary]:
    return [BatchSummary(*row) for row in db.session.execute(
        sa.select(Voucher.batch_ref, sa.func.count(), sa.func.min(Voucher.created_at), sa.func.min(Voucher.id))
        .where(Voucher.batch_ref.is_not(None), owned(Voucher.owner_id, user))
        .group_by(Voucher.batch_ref)
        .order_by(sa.func.min(Voucher.id).desc())
        .limit(limit)
    ).all()]


def voucher_login_url(base_url: str, router: Router, code: str) -> str:
    """Where the printed QR code leads: the router's portal page with the code filled in."""
    return f"{base_url.rstrip('/')}/r/{router.slug}?{urlencode({'voucher': code})}"


def qr_svg(url: str) -> Markup:
    """An inline SVG QR code (segno; no style attributes, so the CSP allows it)."""
    return Markup(segno.make(url, error="m").svg_inline(scale=3, border=2, title=None))


@dataclass(frozen=True)
class SheetEntry:
    code: str
    plan_name: str
    price: int
    duration_s: int
    url: str
    qr: Markup


def sheet_entries(user: User, batch_ref: str, *, base_url: str) -> list[SheetEntry]:
    """One printable card per voucher of the batch."""
    entries = []
    for voucher in batch_vouchers(user, batch_ref):
        url = voucher_login_url(base_url, voucher.router, voucher.code)
        entries.append(SheetEntry(voucher.code, voucher.plan.name, voucher.plan.price, voucher.plan.duration_s, url,
                                  qr_svg(url)))
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
    add the user, and the queued removal (which runs after) takes it away again."""
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
    queued = previous in ("paid", "active") and activations.queue_removal(voucher)
    audit.record(
        "voucher.disable", actor=user, owner_id=voucher.owner_id, object_type="voucher", object_id=str(voucher.id),
        detail=f"{voucher.code} was {previous}; reason: {reason[:500]}", source_ip=source_ip,
    )
    db.session.commit()
    if queued:
        activations.wake_worker()

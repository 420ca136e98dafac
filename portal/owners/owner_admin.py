"""The admin's owner list: lock an owner out (their sessions end), open them again, or delete an
owner who has no money history.

Deleting never destroys money records: an owner with payments, vouchers or webhook records is
refused ("lock instead"). What such an empty account has (plans, routers, paybills, brand) goes with it;
its audit trail stays, detached from the deleted user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from ..core.extensions import db
from ..models import (
    Activation,
    AuditLog,
    Brand,
    Paybill,
    Payment,
    Plan,
    Router,
    User,
    Voucher,
    WebhookLog,
    router_plans,
    utcnow,
)
from . import audit
from .scope import NotFound


class OwnerActionError(Exception):
    """Refused; the message is for the admin."""


@dataclass(frozen=True)
class OwnerRow:
    id: int
    email: str
    phone: str | None
    phone_confirmed: bool
    business_name: str | None
    created_at: datetime
    locked_at: datetime | None
    routers: int
    payments: int


def list_owners(limit: int = 500) -> list[OwnerRow]:
    routers = sa.select(sa.func.count()).where(Router.owner_id == User.id).scalar_subquery()
    payments = sa.select(sa.func.count()).where(Payment.owner_id == User.id).scalar_subquery()
    rows = db.session.execute(
        sa.select(User.id, User.email, User.phone, User.phone_confirmed_at, User.business_name, User.created_at,
                  User.locked_by_admin_at, routers, payments)
        .where(User.role == "owner").order_by(User.created_at.desc(), User.id.desc()).limit(limit)
    ).all()
    return [OwnerRow(r[0], r[1], r[2], r[2] is None or r[3] is not None, r[4], r[5], r[6], r[7], r[8]) for r in rows]


def _owner(owner_id: int) -> User:
    user = db.session.get(User, owner_id)
    if user is None or user.role != "owner":
        raise NotFound(f"owner {owner_id}")
    return user


def set_locked(admin: User, owner_id: int, locked: bool, *, reason: str, source_ip: str | None) -> User:
    """Lock (every session ends at once, sign-in refused) or unlock an owner. Commits."""
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise OwnerActionError("Say why, in a few words: it goes into the audit log.")
    owner = _owner(owner_id)
    if locked:
        db.session.execute(sa.update(User).where(User.id == owner.id, User.locked_by_admin_at.is_(None))
                           .values(locked_by_admin_at=utcnow(), session_version=User.session_version + 1))
    else:
        db.session.execute(sa.update(User).where(User.id == owner.id).values(locked_by_admin_at=None))
    audit.record("owner.lock" if locked else "owner.unlock", actor=admin, owner_id=owner.id, object_type="user",
                 object_id=str(owner.id), detail=f"{owner.email}; reason: {reason[:500]}", source_ip=source_ip)
    db.session.commit()
    db.session.refresh(owner)
    return owner


def delete_owner(admin: User, owner_id: int, *, confirm_email: str, source_ip: str | None) -> str:
    """Delete an owner with no money history, and their plans, routers and paybills. Commits;
    returns the deleted email. Raises OwnerActionError (history, or the email not typed back)."""
    owner = _owner(owner_id)
    if confirm_email.strip().lower() != owner.email:
        raise OwnerActionError(f"Type the owner's e-mail ({owner.email}) to delete the account.")
    paybill_ids = list(db.session.scalars(sa.select(Paybill.id).where(Paybill.owner_id == owner.id)))
    router_ids = list(db.session.scalars(sa.select(Router.id).where(Router.owner_id == owner.id)))
    history = (
        db.session.scalar(sa.select(sa.func.count()).select_from(Payment).where(Payment.owner_id == owner.id))
        or db.session.scalar(sa.select(sa.func.count()).select_from(Voucher).where(Voucher.owner_id == owner.id))
        or (paybill_ids and db.session.scalar(sa.select(sa.func.count()).select_from(WebhookLog)
                                              .where(WebhookLog.paybill_id.in_(paybill_ids))))
        or (router_ids and db.session.scalar(sa.select(sa.func.count()).select_from(Activation)
                                             .where(Activation.router_id.in_(router_ids))))
    )
    if history:
        raise OwnerActionError(f"{owner.email} has payments or vouchers; those records must stay. Lock the account instead.")
    email = owner.email
    db.session.execute(sa.update(User).where(User.id == owner.id).values(default_paybill_id=None))
    db.session.execute(sa.update(AuditLog).where(AuditLog.owner_id == owner.id).values(owner_id=None))
    db.session.execute(sa.update(AuditLog).where(AuditLog.actor_id == owner.id).values(actor_id=None))
    if router_ids:
        db.session.execute(sa.delete(router_plans).where(router_plans.c.router_id.in_(router_ids)))
    db.session.execute(sa.delete(Brand).where(Brand.owner_id == owner.id))  # its customer-page looks
    db.session.execute(sa.delete(Router).where(Router.owner_id == owner.id))
    plan_ids = list(db.session.scalars(sa.select(Plan.id).where(Plan.owner_id == owner.id)))
    if plan_ids:
        db.session.execute(sa.delete(router_plans).where(router_plans.c.plan_id.in_(plan_ids)))
    db.session.execute(sa.delete(Plan).where(Plan.owner_id == owner.id))
    db.session.execute(sa.delete(Paybill).where(Paybill.owner_id == owner.id))
    db.session.execute(sa.delete(User).where(User.id == owner.id))
    audit.record("owner.delete", actor=admin, owner_id=None, object_type="user", object_id=str(owner_id),
                 detail=f"deleted {email} (no money history)", source_ip=source_ip)
    db.session.commit()
    return email

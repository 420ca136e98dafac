"""Paying owners what the ledger says the platform owes them, by B2C from the platform's paybill.

States: requested → approved (by an admin when PORTAL_PAYOUT_REQUIRES_APPROVAL) → sent →
completed / failed; sending and answers are ``b2c_transfers``'. An owner has at most one open
payout (a partial unique index), and a payout never asks for more than the balance less what is
already on its way, so a scheduled run, a request and a second run cannot pay the same money twice.
The ledger entry is posted when M-Pesa confirms the payment, never before.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..core.extensions import db
from ..models import LedgerEntry, OwnerMoneySettings, Paybill, Payment, Payout, Refund, User, utcnow
from ..mpesa.b2c import MIN_AMOUNT
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import mask_phone, normalise_phone
from ..owners import audit
from . import b2c_transfers, ledger

log = logging.getLogger(__name__)

OPEN_STATES = ("requested", "approved", "sent")
TEST_PAYOUT_AMOUNT = MIN_AMOUNT  # the smallest B2C payment M-Pesa takes


class PayoutError(ValueError):
    """A payout the rules refuse; the message says why in words."""


# --- the payout phone ---------------------------------------------------------------------------


def set_payout_phone(owner: User, phone: str, *, actor: Any, send: bool = True) -> Payout:
    """Register the owner's payout phone (unconfirmed) and send it a small test payout; the phone is
    confirmed when M-Pesa confirms that payment. Commits; sends after the commit."""
    try:
        msisdn = normalise_phone(phone)
    except InvalidPhoneNumber as exc:
        raise PayoutError("enter a Safaricom number like 0712 345 678") from exc
    paybill = b2c_transfers.platform_b2c_paybill()
    if paybill is None:
        raise PayoutError("the platform's paybill has no B2C credentials yet (flask paybill b2c)")
    settings = ledger.money_settings(owner.id)
    settings.payout_phone, settings.payout_phone_confirmed_at = msisdn, None
    check = Payout(owner_id=owner.id, paybill_id=paybill.id, amount=TEST_PAYOUT_AMOUNT, phone=msisdn, kind="test",
                   state="approved", requested_by=_actor_label(actor))
    db.session.add(check)
    audit.record("owner.payout_phone_set", actor=actor, owner_id=owner.id, object_type="user", object_id=owner.id,
                 detail=f"payout phone {mask_phone(msisdn)}; a KES {TEST_PAYOUT_AMOUNT} test payout confirms it")
    db.session.commit()
    if send:
        b2c_transfers.send_transfer(Payout, check.id)
    return check


def payout_phone(owner_id: int) -> tuple[str | None, bool]:
    settings = db.session.get(OwnerMoneySettings, owner_id)
    if settings is None:
        return None, False
    return settings.payout_phone, settings.payout_phone_confirmed_at is not None


# --- requesting and approving -------------------------------------------------------------------


def _held_by_owner(owner_ids: list[int] | None = None) -> dict[int, int]:
    """Money in an owner's balance that is not theirs to take yet: payouts on their way, refunds on
    their way (or failed and retryable), and money held for a refund or an assignment (second, unmatched and underpaid payments
    on the platform's paybill not settled yet). {owner id: KES}."""
    held: dict[int, int] = {}

    def add(rows: Any) -> None:
        for owner_id, amount in rows:
            held[owner_id] = held.get(owner_id, 0) + int(amount or 0)

    scope = (lambda column: column.in_(owner_ids)) if owner_ids is not None else (lambda column: sa.true())
    on_platform = sa.select(Paybill.id).where(Paybill.owner_id.is_(None))
    add(db.session.execute(sa.select(Payout.owner_id, sa.func.sum(Payout.amount)).where(
        scope(Payout.owner_id), Payout.kind == "payout", Payout.state.in_(OPEN_STATES)).group_by(Payout.owner_id)))
    add(db.session.execute(sa.select(Refund.owner_id, sa.func.sum(Refund.amount)).where(
        scope(Refund.owner_id), Refund.paybill_id.in_(on_platform),
        sa.or_(Refund.state.in_(OPEN_STATES), sa.and_(Refund.state == "failed", Refund.is_retryable.is_(True))))
        .group_by(Refund.owner_id)))
    add(db.session.execute(sa.select(Payment.owner_id, sa.func.sum(Payment.amount)).where(
        scope(Payment.owner_id), Payment.status.in_(("unmatched", "underpaid")), Payment.resolved_at.is_(None),
        Payment.amount > 0, Payment.paybill_id.in_(on_platform)).group_by(Payment.owner_id)))
    return held


def available(owner_id: int, balance: int | None = None) -> int:
    """What can be paid out now: the balance (read now unless given) less what is held (see
    ``_held_by_owner``), so a payout never takes money a refund will give back."""
    return (ledger.balance(owner_id) if balance is None else balance) - _held_by_owner([owner_id]).get(owner_id, 0)


def request_payout(owner: User, *, amount: int | None = None, actor: Any, now: datetime | None = None) -> Payout:
    """A payout of ``amount`` (default: all that is available). Approved at once unless the
    platform requires an admin's approval. Commits; does not send (``send_approved`` does)."""
    phone, confirmed = payout_phone(owner.id)
    if not phone or not confirmed:
        raise PayoutError("confirm a payout phone first (a small test payment is sent to it)")
    paybill = b2c_transfers.platform_b2c_paybill()
    if paybill is None:
        raise PayoutError("the platform's paybill has no B2C credentials yet")
    free = available(owner.id)
    amount = free if amount is None else amount
    if amount < MIN_AMOUNT:
        raise PayoutError(f"M-Pesa pays at least KES {MIN_AMOUNT}; KES {max(free, 0)} is available")
    if amount > free:
        raise PayoutError(f"only KES {max(free, 0)} is available")
    needs_approval = current_app.config["PORTAL_PAYOUT_REQUIRES_APPROVAL"]
    payout = Payout(owner_id=owner.id, paybill_id=paybill.id, amount=amount, phone=phone, kind="payout",
                    state="requested" if needs_approval else "approved", requested_by=_actor_label(actor),
                    created_at=now or utcnow())
    db.session.add(payout)
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise PayoutError("a payout is already on its way; wait for it to finish") from exc
    audit.record("payout.requested", actor=actor, owner_id=owner.id, object_type="payout", object_id=payout.id,
                 detail=f"KES {amount} to {mask_phone(phone)}")
    db.session.commit()
    return payout


def approve(payout_id: int, *, admin: User, source_ip: str | None = None) -> bool:
    """requested → approved by a conditional UPDATE: of two admins approving at once, one wins
    (True) and only the winner goes on to send. Commits."""
    moved = db.session.execute(
        sa.update(Payout).where(Payout.id == payout_id, Payout.state == "requested")
        .values(state="approved", approved_by=admin.email, approved_at=utcnow())
    ).rowcount
    if moved:
        owner_id = db.session.scalar(sa.select(Payout.owner_id).where(Payout.id == payout_id))
        audit.record("payout.approved", actor=admin, owner_id=owner_id, object_type="payout", object_id=payout_id,
                     source_ip=source_ip)
    db.session.commit()
    return moved == 1


def approve_and_send(payout_id: int, *, admin: User, source_ip: str | None = None) -> str:
    if not approve(payout_id, admin=admin, source_ip=source_ip):
        return "already approved"
    return b2c_transfers.send_transfer(Payout, payout_id)


def retry(payout_id: int, *, admin: User) -> str:
    if not b2c_transfers.approve_retry(Payout, payout_id, actor=admin):
        return "not retryable"
    return b2c_transfers.send_transfer(Payout, payout_id)


def send_approved(*, limit: int = 5000, rate_per_s: float | None = None) -> dict[str, str]:
    """Send every approved payout, starting no more than PORTAL_B2C_REQUESTS_PER_S a second (Daraja's
    rate), several at once (each waits on Daraja). {payout id: outcome}. Each send claims its payout,
    so a second run at the same moment sends none of them twice."""
    rate = rate_per_s or current_app.config["PORTAL_B2C_REQUESTS_PER_S"]
    ids = list(db.session.scalars(
        sa.select(Payout.id).where(Payout.state == "approved").order_by(Payout.id).limit(limit)))
    db.session.commit()
    if not ids:
        return {}
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    b2c_transfers.warm_up_token(db.session.get(Payout, ids[0]).paybill_id)  # or the first sends queue behind one fetch
    slots = _RateSlots(rate)

    def send(payout_id: int) -> str:
        with app.app_context():
            try:
                # Paced just before the request goes out, not where it is queued or claimed.
                return b2c_transfers.send_transfer(Payout, payout_id, pace=slots.wait_for_slot)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=current_app.config["PORTAL_B2C_SEND_THREADS"]) as pool:
        futures = {str(payout_id): pool.submit(send, payout_id) for payout_id in ids}
    return {payout_id: future.result() for payout_id, future in futures.items()}


class _RateSlots:
    """At most ``rate`` starts a second across threads: each caller takes the next free slot."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()
        self.lock = threading.Lock()

    def wait_for_slot(self) -> None:
        with self.lock:
            now = time.monotonic()
            start = max(self.next_at, now)
            self.next_at = start + self.interval
        if start > now:
            time.sleep(start - now)


# --- the scheduled (or operator's) run ----------------------------------------------------------


@dataclass(frozen=True)
class RunLine:
    email: str
    text: str

    def line(self) -> str:
        return f"{self.email}: {self.text}"


def run_payouts(*, now: datetime | None = None, scheduled: bool = False, rate_per_s: float | None = None) -> list[RunLine]:
    """Pay every owner due a payout: balance (less payouts on their way) at least
    PORTAL_PAYOUT_MINIMUM and a confirmed payout phone. ``scheduled`` (the job) pays only on
    PORTAL_PAYOUT_WEEKDAY; the CLI pays now. One line per owner with money or a payout phone."""
    now = now or utcnow()
    if scheduled and now.weekday() != current_app.config["PORTAL_PAYOUT_WEEKDAY"]:
        return []
    ledger.post_sales()
    minimum = max(current_app.config["PORTAL_PAYOUT_MINIMUM"], MIN_AMOUNT)
    balances = dict(db.session.execute(
        sa.select(LedgerEntry.owner_id, sa.func.sum(LedgerEntry.amount))
        .where(LedgerEntry.account == "balance").group_by(LedgerEntry.owner_id)).all())
    phones = {s.owner_id: s for s in db.session.scalars(sa.select(OwnerMoneySettings))}
    open_payouts = dict(db.session.execute(
        sa.select(Payout.owner_id, Payout.id).where(Payout.kind == "payout", Payout.state.in_(OPEN_STATES))).all())
    owners = db.session.scalars(sa.select(User).where(User.id.in_(set(balances) | set(phones))).order_by(User.email)).all()
    held = _held_by_owner()
    lines: list[tuple[User, str, int | None]] = []
    due: list[tuple[User, int, str]] = []
    for owner in owners:
        balance = int(balances.get(owner.id) or 0) - held.get(owner.id, 0)
        settings = phones.get(owner.id)
        if owner.id in open_payouts:
            lines.append((owner, f"payout {open_payouts[owner.id]} already on its way (balance KES {balance})", None))
        elif balance < minimum:
            lines.append((owner, f"below the KES {minimum} minimum (balance KES {balance})", None))
        elif settings is None or settings.payout_phone_confirmed_at is None:
            lines.append((owner, f"no confirmed payout phone (balance KES {balance})", None))
        else:
            due.append((owner, balance, settings.payout_phone or ""))
    lines.extend(_request_many(due, now))
    outcomes = send_approved(rate_per_s=rate_per_s)
    result = []
    for owner, text, payout_id in lines:
        if payout_id is not None:
            outcome = outcomes.get(str(payout_id), "waiting for an admin's approval")
            text = f"{text}: {outcome}"
        result.append(RunLine(owner.email, text))
    return sorted(result, key=lambda line: line.email)


def _request_many(due: list[tuple[User, int, str]], now: datetime) -> list[tuple[User, str, int | None]]:
    """Payouts for many owners in one transaction (a batch of a thousand costs one commit). The
    one-open-payout index still guards each owner: on a conflict the batch is redone one by one."""
    paybill = b2c_transfers.platform_b2c_paybill()
    if not due:
        return []
    if paybill is None:
        return [(owner, "not paid: the platform's paybill has no B2C credentials yet", None) for owner, _, _ in due]
    state = "requested" if current_app.config["PORTAL_PAYOUT_REQUIRES_APPROVAL"] else "approved"
    made = [Payout(owner_id=owner.id, paybill_id=paybill.id, amount=amount, phone=phone, kind="payout", state=state,
                   requested_by="payouts run", created_at=now) for owner, amount, phone in due]
    db.session.add_all(made)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return [_request_one(owner, now) for owner, _, _ in due]
    for (owner, amount, phone), payout in zip(due, made, strict=True):
        audit.record("payout.requested", actor="payouts run", owner_id=owner.id, object_type="payout",
                     object_id=payout.id, detail=f"KES {amount} to {mask_phone(phone)}")
    db.session.commit()
    return [(owner, f"payout {payout.id} of KES {payout.amount}", payout.id)
            for (owner, _, _), payout in zip(due, made, strict=True)]


def _request_one(owner: User, now: datetime) -> tuple[User, str, int | None]:
    try:
        payout = request_payout(owner, actor="payouts run", now=now)
    except PayoutError as exc:
        return owner, f"not paid: {exc}", None
    return owner, f"payout {payout.id} of KES {payout.amount}", payout.id


def scheduled_run() -> dict[str, int]:
    lines = run_payouts(scheduled=True)
    return {"owners": len(lines)}


def _actor_label(actor: Any) -> str:
    return actor.email if isinstance(actor, User) else str(actor or "system")

"""The Problems page: money or router work that needs the owner, and the manual actions that fix it.

The kinds of problem: activations the router has not taken (failed, or overdue), payments nobody
could match (C2B with an unknown account number, or a second payment), STK initiations still
waiting for an answer, underpaid payments, rejected payment notices, payment notices we gave up
recording, and pull routers that have stopped syncing.

Every action is exactly-once: it starts with a conditional UPDATE on the row it resolves (its
"gate"), so a double-clicked button, two tabs or two owners race for one row and the loser sees
zero rows and gets ``AlreadyHandled``. Each action writes an audit entry with who and why in the
same transaction, commits once, and wakes the activation worker after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..core.extensions import db
from ..hotspot import activations, pull_sync
from ..hotspot.login_context import HotspotContext
from ..hotspot.vouchers import awaiting_payment, is_awaiting_payment, new_voucher_code, normalise_code
from ..models import Activation, Payment, Plan, Router, StkInitiation, User, Voucher, WebhookLog, utcnow
from ..owners import audit
from ..owners.scope import NotFound, owned, via_paybill, via_router
from . import reconciliation, settlement, webhook_log

log = logging.getLogger(__name__)

LIST_LIMIT = 100
OVERDUE_PENDING = timedelta(minutes=2)  # a pending activation this late means no worker is running
MIN_REASON = 3


class ProblemActionError(Exception):
    """A manual action was refused; the message is for the owner. ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AlreadyHandled(ProblemActionError):
    """Someone (or an earlier click) already resolved this row; nothing was changed."""


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Problems:
    failed_activations: list[Activation]
    unmatched_payments: list[Payment]
    stuck_initiations: list[StkInitiation]
    underpaid_payments: list[Payment]
    rejected_payment_notices: list[WebhookLog]
    silent_pull_routers: list[Router] = field(default_factory=list)  # pull routers not syncing for 10 minutes
    given_up_payment_notices: list[WebhookLog] = field(default_factory=list)  # failed every retry

    @property
    def total(self) -> int:
        return sum(map(len, (self.failed_activations, self.unmatched_payments, self.stuck_initiations,
                             self.underpaid_payments, self.rejected_payment_notices, self.silent_pull_routers,
                             self.given_up_payment_notices)))


def _activation_problem(user: User, now: datetime) -> sa.ColumnElement[bool]:
    # "offered": a pull router got it in a sync answer but has not acknowledged it.
    overdue = sa.and_(Activation.status.in_(("pending", "offered")), Activation.next_attempt_at < now - OVERDUE_PENDING)
    return sa.and_(via_router(Activation.router_id, user), sa.or_(Activation.status == "failed", overdue))


def _payment_problem(user: User, status: str) -> sa.ColumnElement[bool]:
    return sa.and_(owned(Payment.owner_id, user), Payment.status == status, Payment.resolved_at.is_(None))


GIVEN_UP_SHOWN = timedelta(days=7)  # a given-up initiation stays on the page this long


def _stuck_initiation(user: User, now: datetime) -> sa.ColumnElement[bool]:
    """Waiting past the reconcile delay, expired but still asked about, or given up this week.
    Each branch reads an index: (status, created_at) or (status, next_query_at)."""
    older_than = now - timedelta(seconds=current_app.config["PORTAL_RECONCILE_AFTER_S"])
    # Given up a day after the push, so "given up within 7 days" is "pushed within 8 days".
    given_up_since = now - GIVEN_UP_SHOWN - timedelta(seconds=current_app.config["PORTAL_LATE_QUERY_GIVE_UP_S"])
    c = StkInitiation.__table__.c
    return sa.and_(
        via_router(StkInitiation.router_id, user),
        sa.or_(
            sa.and_(c.status == "initiated", c.created_at < older_than),
            sa.and_(c.status == "expired", c.next_query_at.is_not(None)),
            sa.and_(c.status == "expired", c.created_at > given_up_since, c.query_given_up_at > now - GIVEN_UP_SHOWN),
        ),
    )


REJECTED_NOTICE_WINDOW = timedelta(days=7)


def _claims_money() -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(WebhookLog.kind == "stk_callback", WebhookLog.result_code == "0"),
        WebhookLog.kind == "c2b_confirmation",
    )


def _rejected_payment_notice(user: User, now: datetime) -> sa.ColumnElement[bool]:
    """A "paid" callback or a C2B confirmation that failed a check (path, address, paybill,
    shortcode): never activated, so the owner must see it (a spoof, or a misconfiguration)."""
    return sa.and_(
        via_paybill(WebhookLog.paybill_id, user),
        WebhookLog.status == "rejected",
        _claims_money(),
        WebhookLog.received_at > now - REJECTED_NOTICE_WINDOW,
    )


GIVEN_UP_NOTICE_WINDOW = timedelta(days=30)


def _given_up_payment_notice(user: User, now: datetime) -> sa.ColumnElement[bool]:
    """A "paid" callback or a C2B confirmation whose recording failed every attempt: the money
    may be real and is not recorded, so the owner must see it. (The status index finds them.)"""
    return sa.and_(
        via_paybill(WebhookLog.paybill_id, user),
        WebhookLog.status == "failed",
        WebhookLog.attempts >= webhook_log.MAX_ATTEMPTS,
        _claims_money(),
        WebhookLog.received_at > now - GIVEN_UP_NOTICE_WINDOW,
    )


def list_problems(user: User, *, now: datetime | None = None) -> Problems:
    now = now or utcnow()
    return Problems(
        failed_activations=list(db.session.scalars(
            sa.select(Activation).where(_activation_problem(user, now)).order_by(Activation.created_at).limit(LIST_LIMIT)
        )),
        unmatched_payments=list(db.session.scalars(
            sa.select(Payment).where(_payment_problem(user, "unmatched")).order_by(Payment.created_at.desc())
            .limit(LIST_LIMIT)
        )),
        stuck_initiations=list(db.session.scalars(
            sa.select(StkInitiation).where(_stuck_initiation(user, now)).order_by(StkInitiation.created_at)
            .limit(LIST_LIMIT)
        )),
        underpaid_payments=list(db.session.scalars(
            sa.select(Payment).where(_payment_problem(user, "underpaid")).order_by(Payment.created_at.desc())
            .limit(LIST_LIMIT)
        )),
        rejected_payment_notices=list(db.session.scalars(
            sa.select(WebhookLog).where(_rejected_payment_notice(user, now)).order_by(WebhookLog.received_at.desc())
            .limit(LIST_LIMIT)
        )),
        silent_pull_routers=pull_sync.silent_pull_routers(user, now, limit=LIST_LIMIT),
        given_up_payment_notices=list(db.session.scalars(
            sa.select(WebhookLog).where(_given_up_payment_notice(user, now)).order_by(WebhookLog.received_at.desc())
            .limit(LIST_LIMIT)
        )),
    )


def problems_count(user: User, *, now: datetime | None = None) -> int:
    """How many rows need the owner (the menu badge). A few small indexed counts."""
    now = now or utcnow()
    count = 0
    for model, clause in (
        (Activation, _activation_problem(user, now)),
        (Payment, _payment_problem(user, "unmatched")),
        (StkInitiation, _stuck_initiation(user, now)),
        (Payment, _payment_problem(user, "underpaid")),
        (WebhookLog, _rejected_payment_notice(user, now)),
        (WebhookLog, _given_up_payment_notice(user, now)),
    ):
        count += db.session.scalar(sa.select(sa.func.count()).select_from(model).where(clause)) or 0
    return count + pull_sync.count_silent_pull_routers(user, now)


def plans_for_payment(user: User, payment: Payment) -> list[Plan]:
    """Plans a voucher may be issued on for this payment: its owner's (any owner's, for an admin
    on a payment to the platform paybill)."""
    owner_clause = Plan.owner_id == payment.owner_id if payment.owner_id else owned(Plan.owner_id, user)
    return list(db.session.scalars(sa.select(Plan).where(owner_clause).order_by(Plan.sort_order, Plan.price)))


def plan_covered_by(plans: list[Plan], amount: int | None) -> Plan | None:
    """The plan "Issue a voucher" offers first: the dearest active plan the amount paid covers."""
    covered = [p for p in plans if p.is_active and amount is not None and p.price <= amount]
    return max(covered, key=lambda p: (p.price, -p.sort_order), default=None)


def check_plan_covered(payment: Payment, plan: Plan, *, allow_over_price: bool) -> None:
    """Refuse a plan worth more than was paid unless the owner said so (a gift is their call)."""
    paid = payment.amount or 0
    if plan.price > paid and not allow_over_price:
        raise ProblemActionError(
            f"{plan.name} costs KES {plan.price:,} but KES {paid:,} was paid. Tick \"Issue it anyway\" to give it.",
            field="plan_id",
        )


def routers_for_payment(user: User, payment: Payment) -> list[Router]:
    owner_clause = Router.owner_id == payment.owner_id if payment.owner_id else owned(Router.owner_id, user)
    return list(db.session.scalars(sa.select(Router).where(owner_clause).order_by(Router.name)))


# ---------------------------------------------------------------------------------------------
# Actions


def _check_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise ProblemActionError("Say why, in a few words: it goes into the audit log.", field="reason")
    return text[:500]


def _owned_row(model: type, row_id: int, clause: sa.ColumnElement[bool]) -> object:
    row = db.session.scalars(sa.select(model).where(model.id == row_id, clause)).first()
    if row is None:
        raise NotFound(f"{model.__name__} {row_id}")
    return row


def _audit(user: User, action: str, *, owner_id: int | None, object_type: str, object_id: int, detail: str,
           source_ip: str | None) -> None:
    audit.record(
        action, actor=user, owner_id=owner_id, object_type=object_type, object_id=str(object_id),
        detail=detail, source_ip=source_ip,
    )


def _commit_or_already_handled() -> None:
    try:
        db.session.commit()
    except IntegrityError as exc:
        # The unique (voucher, kind) activation: a concurrent action already queued this voucher.
        db.session.rollback()
        raise AlreadyHandled("This was already done a moment ago; nothing was changed.") from exc


def retry_activation(user: User, activation_id: int, *, reason: str, source_ip: str | None = None) -> None:
    """Make a failed (or overdue) activation due now and wake the worker.

    The gate only moves a row whose next try is still in the future, so a second click finds it
    already due (or running) and changes nothing."""
    reason = _check_reason(reason)
    activation = _owned_row(Activation, activation_id, via_router(Activation.router_id, user))
    now = utcnow()
    won = db.session.execute(
        sa.update(Activation)
        .where(Activation.id == activation.id, Activation.status.in_(("failed", "pending")),
               Activation.next_attempt_at > now)
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not won:
        db.session.rollback()
        activations.wake_worker()  # it is due anyway; make sure someone looks
        raise AlreadyHandled("This activation is already due or running; the worker has been woken.")
    router = db.session.get(Router, activation.router_id)
    _audit(user, "problem.retry_activation", owner_id=router.owner_id, object_type="activation",
           object_id=activation.id, detail=f"retry now; reason: {reason}", source_ip=source_ip)
    db.session.commit()
    activations.wake_worker()


def _gate_payment(payment_id: int, from_status: str, **values: object) -> None:
    won = db.session.execute(
        sa.update(Payment)
        .where(Payment.id == payment_id, Payment.status == from_status, Payment.resolved_at.is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not won:
        db.session.rollback()
        raise AlreadyHandled("This payment was already resolved; nothing was changed.")


def assign_payment_to_voucher(
    user: User, payment_id: int, voucher_code: str, *, reason: str, source_ip: str | None = None
) -> Voucher:
    """Put an unmatched payment's money on an existing unpaid voucher, which then activates.

    If the voucher has a purchase still waiting for money, that purchase is settled with this
    amount and receipt (source ``manual``) and the unmatched row is marked resolved with neither,
    so the money counts once in every total.
    Otherwise the unmatched row itself becomes the voucher's paid payment. One transaction.
    Raises ``NotFound``, ``ProblemActionError`` (field ``voucher_code``) or ``AlreadyHandled``.
    """
    reason = _check_reason(reason)
    payment = _owned_row(Payment, payment_id, owned(Payment.owner_id, user))
    _raise_if_resolved(payment)
    voucher = _assignable_voucher(user, payment, voucher_code)
    now = utcnow()
    note = f"assigned to voucher {voucher.code} by {user.email}"[:300]
    waiting = db.session.scalars(
        sa.select(Payment)
        .where(Payment.voucher_id == voucher.id, Payment.status.in_(settlement.SETTLEABLE_STATES))
        .order_by(Payment.id.desc())
    ).first()
    receipt, amount = payment.receipt, payment.amount
    if waiting is not None:
        # The money moves to the purchase, receipt and amount with it, so every total counts it once
        # (the unmatched row stays as the history of where it went).
        moved = f"{note}: KES {amount} and receipt {receipt} moved to purchase {waiting.public_id}"
        _gate_payment(payment.id, "unmatched", resolved_at=now, note=moved[:300], receipt=None, amount=None)
        _settle_waiting_purchase(waiting, receipt, amount, now)
    else:
        _gate_payment(payment.id, "unmatched", status="paid", resolved_at=now, note=note, voucher_id=voucher.id,
                      router_id=voucher.router_id, amount_expected=voucher.plan.price)
        _mark_voucher_paid(voucher, now)
        activations.queue_activation(voucher_id=voucher.id, router_id=voucher.router_id,
                                     device_mac=voucher.device_mac, device_ip=voucher.device_ip)
    _audit(user, "problem.assign_payment", owner_id=voucher.owner_id, object_type="payment", object_id=payment.id,
           detail=f"receipt {receipt} KES {amount} → voucher {voucher.code}; reason: {reason}",
           source_ip=source_ip)
    _commit_or_already_handled()
    activations.wake_worker()
    log.info("unmatched payment %s assigned to voucher %s by user %s", payment.receipt, voucher.code, user.id)
    return voucher


def _assignable_voucher(user: User, payment: Payment, voucher_code: str) -> Voucher:
    code = normalise_code(voucher_code)
    owner_clause = Voucher.owner_id == payment.owner_id if payment.owner_id else owned(Voucher.owner_id, user)
    voucher = db.session.scalars(sa.select(Voucher).where(Voucher.code == code, owner_clause)).first() if code else None
    if voucher is None:
        raise ProblemActionError("No voucher of yours has that code.", field="voucher_code")
    if not is_awaiting_payment(voucher):
        _raise_if_resolved(payment)  # a double click: the first click paid this voucher
        raise ProblemActionError(
            f"Voucher {voucher.code} is already {voucher.status.replace('_', ' ')}; issue a new voucher instead.",
            field="voucher_code",
        )
    return voucher


def _raise_if_resolved(payment: Payment) -> None:
    db.session.refresh(payment)
    if payment.resolved_at is not None or payment.status not in ("unmatched", "underpaid"):
        raise AlreadyHandled("This payment was already resolved; nothing was changed.")


def _settle_waiting_purchase(waiting: Payment, receipt: str | None, amount: int | None, now: datetime) -> None:
    won = db.session.execute(
        sa.update(Payment)
        .where(Payment.id == waiting.id, Payment.status.in_(settlement.SETTLEABLE_STATES))
        .values(status="paid", amount=amount, receipt=receipt, paid_at=now, source="manual",
                note=f"paid by receipt {receipt} (assigned by hand)"[:300])
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not won:
        db.session.rollback()
        raise AlreadyHandled("The voucher's purchase was paid meanwhile; nothing was changed.")
    settlement.complete_initiations([waiting.id], now)
    # Keeps the device MAC/IP the purchase came with; a voucher cancelled meanwhile takes nothing.
    if settlement.mark_vouchers_paid_and_queue([waiting], now):
        db.session.rollback()
        raise AlreadyHandled("The voucher was cancelled or paid meanwhile; nothing was changed.")


def _mark_voucher_paid(voucher: Voucher, now: datetime) -> None:
    won = db.session.execute(
        sa.update(Voucher)
        .where(Voucher.id == voucher.id, awaiting_payment(Voucher))
        .values(status="paid", paid_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not won:
        db.session.rollback()
        raise AlreadyHandled("The voucher was paid or cancelled meanwhile; nothing was changed.")


def issue_voucher_for_payment(
    user: User, payment_id: int, plan_id: int, router_id: int, *, reason: str, source_ip: str | None = None,
    allow_over_price: bool = False,
) -> Voucher:
    """Turn an unmatched payment into a new paid voucher on ``plan_id`` at ``router_id`` and queue it
    for the router. The payment becomes that voucher's paid payment. One transaction; the gate on
    the payment comes first, so a losing double-click inserts nothing. A plan dearer than the
    amount paid is refused unless ``allow_over_price``."""
    reason = _check_reason(reason)
    payment = _owned_row(Payment, payment_id, owned(Payment.owner_id, user))
    plan = next((p for p in plans_for_payment(user, payment) if p.id == plan_id), None)
    if plan is None:
        raise ProblemActionError("Choose one of your plans.", field="plan_id")
    check_plan_covered(payment, plan, allow_over_price=allow_over_price)
    router = next((r for r in routers_for_payment(user, payment) if r.id == router_id and r.owner_id == plan.owner_id),
                  None)
    if router is None:
        raise ProblemActionError("Choose one of your routers.", field="router_id")
    now = utcnow()
    _gate_payment(payment.id, "unmatched", status="paid", resolved_at=now, router_id=router.id,
                  amount_expected=plan.price, note=f"new voucher issued by {user.email}"[:300])
    voucher = Voucher(code=new_voucher_code(), owner_id=plan.owner_id, plan_id=plan.id, router_id=router.id,
                      status="paid", source="manual", paid_at=now)
    db.session.add(voucher)
    db.session.flush()
    db.session.execute(sa.update(Payment).where(Payment.id == payment.id).values(voucher_id=voucher.id)
                       .execution_options(synchronize_session=False))
    activations.queue_activation(voucher_id=voucher.id, router_id=router.id, device_mac=None, device_ip=None)
    _audit(user, "problem.issue_voucher", owner_id=plan.owner_id, object_type="payment", object_id=payment.id,
           detail=f"receipt {payment.receipt} KES {payment.amount} → new voucher {voucher.code} ({plan.name}); "
                  f"reason: {reason}", source_ip=source_ip)
    _commit_or_already_handled()
    activations.wake_worker()
    return voucher


def accept_underpaid(user: User, payment_id: int, *, reason: str, source_ip: str | None = None) -> Voucher:
    """Honour an underpaid purchase: its voucher is marked paid and activated as if paid in full
    (the amount recorded stays what M-Pesa reported)."""
    reason = _check_reason(reason)
    payment = _owned_row(Payment, payment_id, owned(Payment.owner_id, user))
    _raise_if_resolved(payment)
    voucher = db.session.get(Voucher, payment.voucher_id) if payment.voucher_id else None
    if voucher is None or not is_awaiting_payment(voucher):
        raise ProblemActionError("This payment's voucher cannot be activated; mark it resolved instead.")
    now = utcnow()
    _gate_payment(payment.id, "underpaid", status="paid", resolved_at=now,
                  note=f"underpaid (KES {payment.amount} of {payment.amount_expected}) accepted by {user.email}"[:300])
    _mark_voucher_paid(voucher, now)
    hotspot = HotspotContext.from_json(payment.hotspot_json)
    activations.queue_activation(voucher_id=voucher.id, router_id=voucher.router_id,
                                 device_mac=hotspot.mac, device_ip=hotspot.ip)
    _audit(user, "problem.accept_underpaid", owner_id=voucher.owner_id, object_type="payment", object_id=payment.id,
           detail=f"receipt {payment.receipt} KES {payment.amount} accepted for voucher {voucher.code}; "
                  f"reason: {reason}", source_ip=source_ip)
    _commit_or_already_handled()
    activations.wake_worker()
    return voucher


def mark_payment_resolved(user: User, payment_id: int, *, reason: str, source_ip: str | None = None) -> None:
    """Take an unmatched or underpaid payment off the Problems page without issuing anything
    (refunded, or settled in cash). Its status stays, so the money's history stays readable."""
    reason = _check_reason(reason)
    payment = _owned_row(Payment, payment_id, owned(Payment.owner_id, user))
    if payment.status not in ("unmatched", "underpaid"):
        raise AlreadyHandled("This payment needs nothing.")
    _gate_payment(payment.id, payment.status, resolved_at=utcnow())
    _audit(user, "problem.resolve_payment", owner_id=payment.owner_id, object_type="payment", object_id=payment.id,
           detail=f"{payment.status} receipt {payment.receipt} KES {payment.amount} marked resolved; reason: {reason}",
           source_ip=source_ip)
    db.session.commit()


def query_initiation_now(user: User, initiation_id: int, *, reason: str, source_ip: str | None = None) -> str:
    """Ask Daraja about one waiting (or expired) initiation now; a final answer is recorded like
    a callback, so money found after expiry still opens the voucher.

    Returns ``settled``, ``pending`` or ``errors``. Shares the reconciliation job's claim, so a
    double click (or the job at the same moment) queries once."""
    reason = _check_reason(reason)
    initiation = _owned_row(StkInitiation, initiation_id, via_router(StkInitiation.router_id, user))
    if initiation.status not in ("initiated", "expired"):
        raise AlreadyHandled(f"This payment request is already {initiation.status}.")
    if not initiation.checkout_request_id:
        raise ProblemActionError("M-Pesa never gave this request an id, so it cannot be queried; it will expire.")
    if not reconciliation.claim_query(initiation.id):
        raise AlreadyHandled("It was queried in the last few seconds; wait a moment and look again.")
    checkout_id, paybill_id, owner_id = initiation.checkout_request_id, initiation.paybill_id, _router_owner(initiation)
    outcome = reconciliation.query_and_record(checkout_id, paybill_id)
    _audit(user, "problem.query_initiation", owner_id=owner_id, object_type="stk_initiation", object_id=initiation_id,
           detail=f"STK query {checkout_id} → {outcome}; reason: {reason}", source_ip=source_ip)
    db.session.commit()
    return outcome


def _router_owner(initiation: StkInitiation) -> int | None:
    return db.session.scalar(sa.select(Router.owner_id).where(Router.id == initiation.router_id))

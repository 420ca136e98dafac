"""Money owed and money returned (issue 15): the owner's Balance (statement, CSV, payouts), the
admins' Payouts queue, a payment's page with its refund, and the refund action of the Problems page."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

import sqlalchemy as sa
from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for

from ..core.extensions import db
from ..models import LedgerEntry, Paybill, PaybillB2C, Payment, Payout, Refund, User, utcnow
from ..money import b2c_transfers, ledger, payouts, refunds
from ..mpesa.errors import DarajaError
from ..owners.scope import NAIROBI, nairobi_day_start
from . import bp
from .access import client_ip, get_owned_or_404, register_object_param, require_admin, signed_in_user
from .forms import ActionForm
from .forms_ledger import (
    AdjustmentForm,
    PaybillB2CForm,
    PayoutPhoneForm,
    RefundForm,
    RequestPayoutForm,
    StatementFilterForm,
)

PAYOUTS_SHOWN = 20
register_object_param("payout_id", Payout)
register_object_param("refund_id", Refund)
QUEUE_LIMIT = 200


def _whose_balance(form: StatementFilterForm) -> User | None:
    """The signed-in owner; an admin picks an owner (None: the admins' overview)."""
    user = signed_in_user()
    if not user.is_admin:
        return user
    if not form.owner.data:
        return None
    owner = db.session.get(User, form.owner.data)
    if owner is None:
        abort(404)
    return owner


def _filters(form: StatementFilterForm) -> ledger.StatementFilter:
    return ledger.StatementFilter(
        kind=form.kind.data or None, account=form.account.data or None,
        since=nairobi_day_start(form.date_from.data) if form.date_from.data else None,
        until=nairobi_day_start(form.date_to.data) + timedelta(days=1) if form.date_to.data else None,
    )


@bp.get("/balance", endpoint="balance")
def balance_page():  # type: ignore[no-untyped-def]
    form = StatementFilterForm(formdata=request.args)
    if request.args and not form.validate():
        return render_template("dashboard/ledger/balance.html", form=form, owner=None, overview=None), 400
    owner = _whose_balance(form)
    if owner is None:
        return render_template("dashboard/ledger/balance.html", form=form, owner=None, overview=_overview())
    entries = ledger.statement(owner.id, _filters(form), before_id=form.before.data, limit=ledger.STATEMENT_PAGE + 1)
    more = len(entries) > ledger.STATEMENT_PAGE
    entries = entries[: ledger.STATEMENT_PAGE]
    phone, confirmed = payouts.payout_phone(owner.id)
    recent = db.session.scalars(sa.select(Payout).where(Payout.owner_id == owner.id)
                                .order_by(Payout.created_at.desc(), Payout.id.desc()).limit(PAYOUTS_SHOWN)).all()
    args = {k: v for k, v in request.args.items() if k != "before"}
    totals = ledger.totals(owner.id)
    return render_template(
        "dashboard/ledger/balance.html", form=form, owner=owner, overview=None, totals=totals,
        available=payouts.available(owner.id, totals.balance), entries=entries, describe=ledger.describe,
        next_before=entries[-1].id if more and entries else None, args=args,
        payout_phone=phone, phone_confirmed=confirmed, payouts=recent,
        phone_form=PayoutPhoneForm(formdata=None), payout_form=RequestPayoutForm(formdata=None),
        adjust_form=AdjustmentForm(formdata=None, owner_id=owner.id),
        commission_bp=ledger.commission_bp_for(owner.id),
    )


def _overview() -> list[tuple[User, int]]:
    sums = sa.select(LedgerEntry.owner_id, sa.func.sum(LedgerEntry.amount).label("balance")).where(
        LedgerEntry.account == "balance").group_by(LedgerEntry.owner_id).subquery()
    return list(db.session.execute(
        sa.select(User, sums.c.balance).join(sums, sums.c.owner_id == User.id)
        .order_by(sums.c.balance.desc()).limit(QUEUE_LIMIT)).tuples())


@bp.get("/balance.csv", endpoint="balance_csv")
def balance_csv():  # type: ignore[no-untyped-def]
    form = StatementFilterForm(formdata=request.args)
    if request.args and not form.validate():
        abort(400)
    owner = _whose_balance(form)
    if owner is None:
        abort(404)
    filters = _filters(form)

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["id", "when (Nairobi)", "account", "kind", "amount_kes", "what", "source", "receipt"])
        before = None
        while True:
            page = ledger.statement(owner.id, filters, before_id=before, limit=1000)
            for e in page:
                writer.writerow([e.id, e.created_at.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S"), e.account,
                                 e.kind, e.amount, ledger.describe(e), f"{e.source_type} {e.source_id}", e.receipt or ""])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(page) < 1000:
                return
            before = page[-1].id

    filename = f"statement-{owner.id}-{utcnow().astimezone(NAIROBI):%Y%m%d-%H%M}.csv"
    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


def _back_to_balance(owner_id: int):  # type: ignore[no-untyped-def]
    user = signed_in_user()
    return redirect(url_for("dashboard.balance", owner=owner_id) if user.is_admin else url_for("dashboard.balance"),
                    code=303)


@bp.post("/balance/payout-phone", endpoint="balance_payout_phone")
def balance_payout_phone():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    form = PayoutPhoneForm()
    if not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "error")
        return _back_to_balance(user.id)
    try:
        check = payouts.set_payout_phone(user, form.phone.data, actor=user)
    except payouts.PayoutError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Payout phone saved. A KES {check.amount} test payment confirms it: it is {check.state}.", "ok")
    return _back_to_balance(user.id)


@bp.post("/balance/payout", endpoint="balance_request_payout")
def balance_request_payout():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    form = RequestPayoutForm()
    if not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "error")
        return _back_to_balance(user.id)
    try:
        payout = payouts.request_payout(user, amount=form.amount.data, actor=user)
    except payouts.PayoutError as exc:
        flash(str(exc), "error")
        return _back_to_balance(user.id)
    if payout.state == "approved":
        outcome = b2c_transfers.send_transfer(Payout, payout.id)
        flash(f"Payout of KES {payout.amount} {outcome}.", "ok")
    else:
        flash(f"Payout of KES {payout.amount} requested; an admin approves it before it is sent.", "ok")
    return _back_to_balance(user.id)


@bp.post("/balance/adjust", endpoint="balance_adjust")
def balance_adjust():  # type: ignore[no-untyped-def]
    admin = require_admin()
    form = AdjustmentForm()
    if not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "error")
        return redirect(url_for("dashboard.balance"), code=303)
    owner = db.session.get(User, form.owner_id.data)
    if owner is None:
        abort(404)
    try:
        ledger.adjust(owner, form.amount.data, form.reason.data, actor=admin, source_ip=client_ip())
    except ledger.LedgerError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Adjustment of KES {form.amount.data:+,} posted.", "ok")
    return _back_to_balance(owner.id)


# --- admins: the payouts queue ------------------------------------------------------------------


@bp.get("/payouts", endpoint="payouts")
def payouts_page():  # type: ignore[no-untyped-def]
    require_admin()
    state = request.args.get("state") or None
    query = sa.select(Payout, User.email).join(User, User.id == Payout.owner_id)
    if state in ("requested", "approved", "sent", "completed", "failed"):
        query = query.where(Payout.state == state)
    rows = db.session.execute(query.order_by(Payout.created_at.desc(), Payout.id.desc()).limit(QUEUE_LIMIT)).all()
    refunds_open = db.session.scalars(sa.select(Refund).where(Refund.state.in_(("approved", "sent", "failed")))
                                      .order_by(Refund.created_at.desc()).limit(QUEUE_LIMIT)).all()
    counts = dict(db.session.execute(sa.select(Payout.state, sa.func.count()).group_by(Payout.state)).all())
    return render_template("dashboard/ledger/payouts.html", rows=rows, state=state, counts=counts,
                           refunds_open=refunds_open, action=ActionForm(formdata=None),
                           not_declarable=b2c_transfers.not_sent_declarable)


def _payout_action(payout_id: int, do, done: str):  # type: ignore[no-untyped-def]
    admin = require_admin()
    get_owned_or_404(Payout, payout_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        outcome = do(admin)
    except (DarajaError, b2c_transfers.B2CNotConfigured) as exc:
        flash(f"M-Pesa could not be asked: {exc}", "error")
    else:
        flash(f"Payout {payout_id}: {outcome or done}.", "ok")
    return redirect(url_for("dashboard.payouts"), code=303)


@bp.post("/payouts/<int:payout_id>/approve", endpoint="payout_approve")
def payout_approve(payout_id: int):  # type: ignore[no-untyped-def]
    return _payout_action(payout_id, lambda admin: payouts.approve_and_send(payout_id, admin=admin,
                                                                            source_ip=client_ip()), "approved")


@bp.post("/payouts/<int:payout_id>/retry", endpoint="payout_retry")
def payout_retry(payout_id: int):  # type: ignore[no-untyped-def]
    return _payout_action(payout_id, lambda admin: payouts.retry(payout_id, admin=admin), "retried")


@bp.post("/payouts/<int:payout_id>/query", endpoint="payout_query")
def payout_query(payout_id: int):  # type: ignore[no-untyped-def]
    return _payout_action(
        payout_id,
        lambda admin: "asked M-Pesa; the answer comes in a moment" if b2c_transfers.query_now(Payout, payout_id)
        else "not waiting for M-Pesa", "asked")


@bp.post("/payouts/<int:payout_id>/declare-not-sent", endpoint="payout_declare_not_sent")
def payout_declare_not_sent(payout_id: int):  # type: ignore[no-untyped-def]
    return _payout_action(payout_id, lambda admin: _declared(Payout, payout_id, admin), "declared not sent")


@bp.post("/refunds/<int:refund_id>/declare-not-sent", endpoint="refund_declare_not_sent")
def refund_declare_not_sent(refund_id: int):  # type: ignore[no-untyped-def]
    admin = require_admin()
    get_owned_or_404(Refund, refund_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    flash(f"Refund {refund_id}: {_declared(Refund, refund_id, admin)}.", "ok")
    return redirect(url_for("dashboard.payouts"), code=303)


def _declared(model: type, transfer_id: int, admin) -> str:  # type: ignore[no-untyped-def]
    refusal = b2c_transfers.declare_not_sent(model, transfer_id, actor=admin, note=request.form.get("note", "")[:200])
    return f"not declared: {refusal}" if refusal else "declared not sent; it can be retried under a new ID"


# --- a payment's page and its refund -------------------------------------------------------------


@bp.get("/payments/<int:payment_id>", endpoint="payment_detail")
def payment_detail(payment_id: int):  # type: ignore[no-untyped-def]
    payment = get_owned_or_404(Payment, payment_id)
    refund = refunds.refund_for(payment.id)
    entries = db.session.scalars(sa.select(LedgerEntry).where(
        sa.or_(sa.and_(LedgerEntry.source_type == "payment", LedgerEntry.source_id == payment.id),
               sa.and_(LedgerEntry.source_type == "refund", LedgerEntry.source_id == (refund.id if refund else -1))))
        .order_by(LedgerEntry.id)).all()
    return render_template("dashboard/ledger/payment.html", payment=payment, refund=refund, entries=entries,
                           describe=ledger.describe, refundable=refunds.is_refundable(payment),
                           refund_form=RefundForm(formdata=None), action=ActionForm(formdata=None),
                           known_phone=refunds.customer_phone(payment),
                           can_b2c=b2c_transfers.has_b2c(payment.paybill_id))


@bp.post("/payments/<int:payment_id>/refund", endpoint="payment_refund")
def payment_refund(payment_id: int):  # type: ignore[no-untyped-def]
    get_owned_or_404(Payment, payment_id)
    form = RefundForm()
    back = url_for("dashboard.problems") if request.form.get("from") == "problems" else url_for(
        "dashboard.payment_detail", payment_id=payment_id)
    if not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "error")
        return redirect(back, code=303)
    try:
        refund = refunds.refund_payment(signed_in_user(), payment_id, reason=form.reason.data, phone=form.phone.data,
                                        note=form.note.data, source_ip=client_ip())
    except refunds.RefundRefused as exc:
        flash(f"Not refunded: {exc}", "error")
    else:
        how = "recorded as refunded by hand" if refund.method == "by_hand" else f"sent by M-Pesa: {refund.state}"
        flash(f"Refund of KES {refund.amount} {how}" + (f" ({refund.failure_reason})" if refund.failure_reason else "")
              + ".", "ok")
    return redirect(back, code=303)


@bp.post("/refunds/<int:refund_id>/retry", endpoint="refund_retry")
def refund_retry(refund_id: int):  # type: ignore[no-untyped-def]
    refund = get_owned_or_404(Refund, refund_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    outcome = refunds.retry_refund(refund.id, actor=signed_in_user())
    flash(f"Refund {refund_id}: {outcome}.", "ok")
    return redirect(url_for("dashboard.payment_detail", payment_id=refund.payment_id), code=303)


# --- a paybill's B2C credentials ------------------------------------------------------------------


@bp.app_template_global("paybill_b2c_state")
def paybill_b2c_state(paybill_id: int) -> dict[str, object]:
    """For the paybill page: whether it can send B2C, and the form to give it credentials."""
    creds = db.session.get(PaybillB2C, paybill_id)
    return {"is_set": creds is not None, "updated_at": creds.updated_at if creds else None,
            "form": PaybillB2CForm(formdata=None)}


@bp.post("/paybills/<int:paybill_id>/b2c", endpoint="paybill_b2c")
def paybill_b2c(paybill_id: int):  # type: ignore[no-untyped-def]
    paybill = get_owned_or_404(Paybill, paybill_id)
    form = PaybillB2CForm()
    if not form.validate_on_submit():
        flash(" ".join(e for errors in form.errors.values() for e in errors), "error")
    else:
        try:
            b2c_transfers.set_b2c_credentials(paybill, initiator_name=form.initiator_name.data,
                                              initiator_password=form.initiator_password.data, actor=signed_in_user())
        except (ValueError, b2c_transfers.B2CNotConfigured) as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash("B2C credentials saved (encrypted): refunds from this paybill now go by M-Pesa.", "ok")
    return redirect(url_for("dashboard.paybill_detail", paybill_id=paybill_id), code=303)

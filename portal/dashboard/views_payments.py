"""Payments: filtered list in keyset pages, and the same filtered set as a streamed CSV."""

from __future__ import annotations

from flask import Response, abort, render_template, request, stream_with_context

from ..models import utcnow
from ..owners import payment_search
from ..owners.scope import NAIROBI
from . import bp
from .access import signed_in_user
from .forms_money import PaymentFilterForm


def _filter_form() -> PaymentFilterForm:
    form = PaymentFilterForm(formdata=request.args)
    form.router_id.choices = [(0, "any")] + [(r.id, r.name) for r in payment_search.routers_for(signed_in_user())]
    return form


def _filter_from(form: PaymentFilterForm) -> payment_search.PaymentFilter:
    return payment_search.PaymentFilter(
        status=form.status.data or None,
        router_id=form.router_id.data or None,
        phone=(form.phone.data or "").strip() or None,
        receipt=(form.receipt.data or "").strip() or None,
        date_from=form.date_from.data,
        date_to=form.date_to.data,
    )


@bp.get("/payments", endpoint="payments")
def payments_list():  # type: ignore[no-untyped-def]
    form = _filter_form()
    if request.args and not form.validate():
        return render_template("dashboard/payments/list.html", form=form, page=None), 400
    flt = _filter_from(form)
    try:
        page = payment_search.search_payments(signed_in_user(), flt, after=request.args.get("after"))
    except payment_search.BadCursor:
        abort(400)
    next_args = {k: v for k, v in request.args.items() if k != "after"}
    return render_template("dashboard/payments/list.html", form=form, page=page, next_args=next_args,
                           totals=payment_search.payment_totals(signed_in_user(), flt, inline_only=True))


@bp.get("/payments/totals", endpoint="payments_totals")
def payments_totals():  # type: ignore[no-untyped-def]
    """The filtered total on its own (the list fetches it when it was too big to add up inline)."""
    form = _filter_form()
    if request.args and not form.validate():
        abort(400)
    totals = payment_search.payment_totals(signed_in_user(), _filter_from(form))
    fragment = request.headers.get("X-Fragment") == "1"  # dashboard.js filling the list page in
    return render_template("dashboard/payments/_totals.html" if fragment else "dashboard/payments/totals.html",
                           totals=totals, filtered=bool(request.args), back_args=request.args.to_dict())


@bp.get("/payments.csv", endpoint="payments_csv")
def payments_csv():  # type: ignore[no-untyped-def]
    form = _filter_form()
    if request.args and not form.validate():
        abort(400)
    rows = payment_search.stream_payments_csv(signed_in_user(), _filter_from(form))
    filename = f"payments-{utcnow().astimezone(NAIROBI):%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )

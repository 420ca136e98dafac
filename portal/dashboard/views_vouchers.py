"""Vouchers: search, batches for cash sales (print sheet, CSV), disable."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for

from ..core.extensions import db
from ..hotspot import voucher_batches
from ..models import Plan, Router, Voucher
from ..owners.scope import owned
from . import bp
from .access import client_ip, get_owned_or_404, signed_in_user
from .forms_money import BatchForm, DisableVoucherForm, VoucherSearchForm


def _batch_form(*, submitted: bool = False) -> BatchForm:
    user = signed_in_user()
    form = BatchForm() if submitted else BatchForm(formdata=None)
    form.plan_id.choices = [
        (p.id, f"{p.name} · KES {p.price}")
        for p in db.session.scalars(sa.select(Plan).where(owned(Plan.owner_id, user), Plan.is_active.is_(True))
                                    .order_by(Plan.sort_order, Plan.price))
    ]
    form.router_id.choices = [
        (r.id, r.name) for r in db.session.scalars(sa.select(Router).where(owned(Router.owner_id, user)).order_by(Router.name))
    ]
    return form


def _page(*, batch_form: BatchForm | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    user = signed_in_user()
    search = VoucherSearchForm(formdata=request.args)
    valid = search.validate()
    query, view = (search.q.data, search.status.data or "") if valid else (None, "")
    return render_template(
        "dashboard/vouchers/list.html",
        search=search,
        vouchers=voucher_batches.search_vouchers(user, query, view=view),
        state_of=voucher_batches.voucher_state,
        batch_form=batch_form or _batch_form(),
        batches=voucher_batches.recent_batches(user),
        disable_form=DisableVoucherForm(formdata=None),
    ), status


@bp.get("/vouchers", endpoint="vouchers")
def vouchers_page():  # type: ignore[no-untyped-def]
    return _page()


@bp.post("/vouchers/batches", endpoint="voucher_batch_new")
def voucher_batch_new():  # type: ignore[no-untyped-def]
    form = _batch_form(submitted=True)
    if not form.validate_on_submit():
        return _page(batch_form=form, status=400)
    try:
        batch_ref = voucher_batches.generate_batch(
            signed_in_user(), plan_id=form.plan_id.data, router_id=form.router_id.data, count=form.count.data,
            note=form.note.data or "", source_ip=client_ip(),
        )
    except voucher_batches.VoucherActionError as exc:
        getattr(form, exc.field or "count").errors = [str(exc)]
        return _page(batch_form=form, status=400)
    flash(f"{form.count.data} vouchers made; they are being put on the router.", "ok")
    first = voucher_batches.batch_vouchers(signed_in_user(), batch_ref)[0]
    return redirect(url_for("dashboard.voucher_batch", voucher_id=first.id), code=303)


def _batch_of(voucher_id: int) -> str:
    """A batch is addressed by any of its vouchers, so the owner check is the voucher's."""
    voucher = get_owned_or_404(Voucher, voucher_id)
    if not voucher.batch_ref:
        abort(404)
    return voucher.batch_ref


@bp.get("/vouchers/<int:voucher_id>/batch", endpoint="voucher_batch")
def voucher_batch(voucher_id: int):  # type: ignore[no-untyped-def]
    batch_ref = _batch_of(voucher_id)
    vouchers = voucher_batches.batch_vouchers(signed_in_user(), batch_ref)
    return render_template("dashboard/vouchers/batch.html", batch_ref=batch_ref, vouchers=vouchers,
                           first_id=vouchers[0].id, note=voucher_batches.batch_note(batch_ref),
                           state_of=voucher_batches.voucher_state, layouts=voucher_batches.PRINT_LAYOUTS)


@bp.get("/vouchers/<int:voucher_id>/batch/print", endpoint="voucher_batch_print")
def voucher_batch_print(voucher_id: int):  # type: ignore[no-untyped-def]
    batch_ref = _batch_of(voucher_id)
    entries = voucher_batches.sheet_entries(signed_in_user(), batch_ref, base_url=current_app.config["PORTAL_BASE_URL"])
    layout = request.args.get("layout", voucher_batches.DEFAULT_LAYOUT)
    if layout not in voucher_batches.PRINT_LAYOUTS:
        layout = voucher_batches.DEFAULT_LAYOUT
    return render_template("prints/voucher_sheet.html", entries=entries, batch_ref=batch_ref, layout=layout,
                           layouts=voucher_batches.PRINT_LAYOUTS, voucher_id=voucher_id)


@bp.get("/vouchers/<int:voucher_id>/batch.csv", endpoint="voucher_batch_csv")
def voucher_batch_csv(voucher_id: int):  # type: ignore[no-untyped-def]
    batch_ref = _batch_of(voucher_id)
    body = "".join(voucher_batches.batch_csv(signed_in_user(), batch_ref, base_url=current_app.config["PORTAL_BASE_URL"]))
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="vouchers-{batch_ref}.csv"'})


@bp.get("/vouchers/<int:voucher_id>", endpoint="voucher_detail")
def voucher_detail(voucher_id: int):  # type: ignore[no-untyped-def]
    voucher = get_owned_or_404(Voucher, voucher_id)
    return render_template("dashboard/vouchers/detail.html", voucher=voucher, form=DisableVoucherForm(formdata=None),
                           state=voucher_batches.voucher_state(voucher))


@bp.post("/vouchers/<int:voucher_id>/disable", endpoint="voucher_disable")
def voucher_disable(voucher_id: int):  # type: ignore[no-untyped-def]
    voucher = get_owned_or_404(Voucher, voucher_id)
    form = DisableVoucherForm()
    if form.validate_on_submit():
        try:
            voucher_batches.disable_voucher(signed_in_user(), voucher_id, reason=form.reason.data, source_ip=client_ip())
        except voucher_batches.VoucherActionError as exc:
            flash(str(exc), "warning")
        else:
            flash(f"Voucher {voucher.code} disabled; it is being removed from the router.", "ok")
        return redirect(url_for("dashboard.voucher_detail", voucher_id=voucher_id), code=303)
    return render_template("dashboard/vouchers/detail.html", voucher=voucher, form=form,
                           state=voucher_batches.voucher_state(voucher)), 400

"""Plans (Wi-Fi packages): list, create, edit, retire."""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from sqlalchemy.orm import selectinload

from ..core.extensions import db
from ..hotspot import plans
from ..hotspot.catalogue import describe_bytes, describe_duration
from ..models import Plan, Router
from ..owners import audit
from ..routeros.hotspot import format_routeros_duration
from . import bp
from .access import client_ip, get_owned_or_404, owner_scope, signed_in_user
from .forms import ActionForm, PlanForm


def _router_choices(owner_id: int) -> list[tuple[int, str]]:
    rows = db.session.execute(
        sa.select(Router.id, Router.name, Router.slug).where(Router.owner_id == owner_id).order_by(Router.name)
    ).all()
    return [(r.id, f"{r.name} ({r.slug})") for r in rows]


def _save(form: PlanForm, plan: Plan | None, owner_id: int) -> Plan:
    saved = plans.save_plan(
        plan,
        owner_id=owner_id,
        name=form.name.data,
        price=form.price.data,
        duration_s=form.duration_s,
        validity_mode=form.validity_mode.data,
        data_limit_bytes=form.data_limit_bytes,
        rate_limit=form.rate_limit.data,
        router_ids=form.router_ids.data or [],
        sort_order=form.sort_order.data or 0,
        devices=form.devices.data or 1,
        lock_to_device=bool(form.lock_to_device.data),
    )
    db.session.flush()
    audit.record(
        "plan_added" if plan is None else "plan_changed",
        actor=signed_in_user(),
        owner_id=saved.owner_id,
        object_type="plan",
        object_id=saved.id,
        detail=f"{saved.name}: KES {saved.price}, {format_routeros_duration(saved.duration_s)}",
        source_ip=client_ip(),
    )
    db.session.commit()
    return saved


@bp.get("/plans", endpoint="plans")
def plans_list():  # type: ignore[no-untyped-def]
    rows = db.session.scalars(
        owner_scope(sa.select(Plan), Plan)
        .options(selectinload(Plan.routers))
        .order_by(Plan.is_active.desc(), Plan.owner_id, Plan.sort_order, Plan.price, Plan.id)
    ).all()
    return render_template(
        "dashboard/plans/list.html",
        plans=rows,
        action=ActionForm(),
        describe_duration=describe_duration,
        describe_bytes=describe_bytes,
    )


@bp.route("/plans/new", methods=["GET", "POST"])
def plan_new():  # type: ignore[no-untyped-def]
    user = signed_in_user()
    form = PlanForm()
    form.router_ids.choices = _router_choices(user.id)
    if request.method == "GET":
        form.sold_on.data = "all"
    if form.validate_on_submit():
        try:
            plan = _save(form, None, user.id)
        except plans.PlanError as exc:
            form.router_ids.errors = [str(exc)]
        else:
            flash(f"Plan {plan.name} added.", "ok")
            return redirect(url_for("dashboard.plans"))
    return render_template("dashboard/plans/form.html", form=form, plan=None), 400 if request.method == "POST" else 200


@bp.route("/plans/<int:plan_id>/edit", methods=["GET", "POST"])
def plan_edit(plan_id: int):  # type: ignore[no-untyped-def]
    plan = get_owned_or_404(Plan, plan_id)
    form = PlanForm(obj=plan)
    form.router_ids.choices = _router_choices(plan.owner_id)
    if request.method == "GET":
        form.duration.data = format_routeros_duration(plan.duration_s)
        form.data_limit.data = plans.data_limit_as_text(plan.data_limit_bytes)
        form.router_ids.data = [r.id for r in plan.routers]
        form.sold_on.data = "some" if plan.routers else "all"
    if form.validate_on_submit():
        try:
            _save(form, plan, plan.owner_id)
        except plans.PlanError as exc:
            form.router_ids.errors = [str(exc)]
        else:
            flash(f"Plan {plan.name} saved. Routers pick up new limits with the next voucher sold.", "ok")
            return redirect(url_for("dashboard.plans"))
    return render_template("dashboard/plans/form.html", form=form, plan=plan), 400 if request.method == "POST" else 200


@bp.post("/plans/<int:plan_id>/retire")
def plan_retire(plan_id: int):  # type: ignore[no-untyped-def]
    return _set_active(plan_id, False, "retired; vouchers already sold keep working")


@bp.post("/plans/<int:plan_id>/restore")
def plan_restore(plan_id: int):  # type: ignore[no-untyped-def]
    return _set_active(plan_id, True, "on sale again")


def _set_active(plan_id: int, is_active: bool, words: str):  # type: ignore[no-untyped-def]
    plan = get_owned_or_404(Plan, plan_id)
    plans.set_plan_active(plan, is_active)
    audit.record(
        "plan_restored" if is_active else "plan_retired",
        actor=signed_in_user(),
        owner_id=plan.owner_id,
        object_type="plan",
        object_id=plan.id,
        source_ip=client_ip(),
    )
    db.session.commit()
    flash(f"Plan {plan.name} {words}.", "ok")
    return redirect(url_for("dashboard.plans"))

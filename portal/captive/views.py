"""Customer pages: plans, buy, wait, status. Thin: each calls one service."""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import abort, current_app, g, jsonify, make_response, redirect, render_template, request, url_for

from .. import catalogue, payments
from ..extensions import db
from ..models import StkInitiation, utcnow
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import mask_phone
from . import bp
from .forms import BuyForm
from .hotspot_params import as_params, context_from, router_error
from .i18n import COOKIE, choose_language, texts
from .router_login import login_form_fields

PHONE_COOKIE = "phone"


@bp.before_request
def _language() -> None:
    g.lang = choose_language(request)
    g.t = texts(g.lang)


@bp.after_request
def _remember_language(response):  # type: ignore[no-untyped-def]
    if request.args.get("lang") == g.get("lang"):
        response.set_cookie(COOKIE, g.lang, max_age=365 * 86400, samesite="Lax", httponly=True)
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


@bp.get("/r/<slug>")
def plans(slug: str):  # type: ignore[no-untyped-def]
    router = catalogue.router_by_slug(slug) or abort(404)
    ctx = context_from(request.args)
    form = BuyForm(formdata=None, purchase_key=secrets.token_urlsafe(24), phone=request.cookies.get(PHONE_COOKIE, ""))
    _fill_hotspot_fields(form, as_params(ctx))
    return _render_plans(router, form, router_error(request.args))


@bp.post("/r/<slug>/buy")
def buy(slug: str):  # type: ignore[no-untyped-def]
    router = catalogue.router_by_slug(slug) or abort(404)
    form = BuyForm()
    plan = catalogue.plan_for_router(router, form.plan_id.data) if form.plan_id.data else None
    if not form.validate() or plan is None:
        if form.plan_id.data is not None and plan is None:
            form.plan_id.errors = [*form.plan_id.errors, "Choose a package."]
        return _render_plans(router, form, None, status=400)
    ctx = context_from(form.hotspot_params())
    try:
        payment = payments.start_purchase(
            router, plan, phone=form.phone.data, hotspot=ctx, idempotency_key=form.purchase_key.data or None
        )
    except InvalidPhoneNumber as exc:
        form.phone.errors = [exc.customer_message]
        return _render_plans(router, form, None, status=400)
    except payments.PurchaseError as exc:
        message = exc.customer_message_sw if g.lang == "sw" else exc.customer_message
        return _render_plans(router, form, message, status=503)
    response = redirect(url_for("captive.wait", purchase_id=payment.public_id), code=303)
    # The number is remembered on this device only (a cookie), never looked up on the server.
    response.set_cookie(PHONE_COOKIE, form.phone.data.strip()[:20], max_age=180 * 86400, samesite="Lax", httponly=True)
    return response


@bp.get("/p/<purchase_id>")
def wait(purchase_id: str):  # type: ignore[no-untyped-def]
    payment = payments.find_purchase(purchase_id) or abort(404)
    status = payments.purchase_status(payment)
    ctx = payments.HotspotContext.from_json(payment.hotspot_json)
    initiation = db.session.query(StkInitiation).filter_by(payment_id=payment.id).order_by(StkInitiation.id.desc()).first()
    seconds_left = _seconds_left(initiation) if status.status == "pending" else 0
    login_fields = login_form_fields(ctx, status.voucher) if status.status == "active" and status.voucher else None
    router = payment.router
    back_url = url_for("captive.plans", slug=router.slug, **as_params(ctx)) if router else None
    return render_template(
        "captive/wait.html",
        payment=payment,
        status=status,
        message=status.message_sw if g.lang == "sw" else status.message_en,
        masked_phone=mask_phone(payment.phone) if payment.phone else "",
        seconds_left=seconds_left,
        login_url=ctx.link_login_only,
        login_fields=login_fields,
        back_url=back_url,
        refresh=status.status in ("pending", "paid"),
    )


@bp.get("/p/<purchase_id>/status")
def status(purchase_id: str):  # type: ignore[no-untyped-def]
    payment = payments.find_purchase(purchase_id)
    if payment is None:
        return jsonify({"error": "not found"}), 404
    response = make_response(jsonify(payments.purchase_status(payment).as_json(g.lang)))
    response.headers["Cache-Control"] = "no-store"
    return response


def _seconds_left(initiation: StkInitiation | None) -> int:
    if initiation is None:
        return 0
    deadline = initiation.created_at + timedelta(seconds=current_app.config["PORTAL_STK_EXPIRY_S"])
    return max(0, int((deadline - utcnow()).total_seconds()))


def _fill_hotspot_fields(form: BuyForm, params: dict[str, str]) -> None:
    for name, value in params.items():
        getattr(form, name.replace("-", "_")).data = value


def _render_plans(router, form: BuyForm, notice: str | None, status: int = 200):  # type: ignore[no-untyped-def]
    return (
        render_template(
            "captive/plans.html",
            router=router,
            plans=catalogue.plans_for_router(router),
            form=form,
            notice=notice,
            describe_duration=catalogue.describe_duration,
            describe_bytes=catalogue.describe_bytes,
        ),
        status,
    )


@bp.app_template_filter("merge_lang")
def merge_lang(args, current: str) -> str:  # type: ignore[no-untyped-def]
    """The current query string with the other language chosen, for the language switch link."""
    from urllib.parse import urlencode

    merged = {k: v for k, v in args.items() if k != "lang"}
    merged["lang"] = "en" if current == "sw" else "sw"
    return urlencode(merged)

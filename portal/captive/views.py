"""Customer pages: plans, buy, wait, status, "send again", voucher login, receipt recovery.

Thin: each view parses the request, counts it against the rate limits, calls one service and
renders the result. Every page works without JavaScript (forms post, the wait page refreshes itself).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import (
    abort,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_wtf.csrf import CSRFError, generate_csrf

from ..core.client_address import client_address
from ..core.rate_limits import (
    SMS_RESEND_PER_VOUCHER,
    SMS_RESEND_PER_VOUCHER_HOUR,
    RateLimited,
    record_attempt,
    seconds_until_allowed,
)
from ..hotspot import brands, catalogue
from ..hotspot.login_context import HotspotContext
from ..models import Payment, Router, Voucher
from ..money import customer_status, purchase, recovery
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import mask_phone, normalise_phone
from ..notify import outbox
from . import bp
from .forms import (
    BuyForm,
    ReceiptForm,
    ResendForm,
    RetryForm,
    ShownForm,
    VoucherForm,
    blank_buy_form,
    blank_receipt_form,
    blank_voucher_form,
)
from .guards import code_checks, push_checks
from .hotspot_params import PARAM_NAMES, as_params, context_from, from_form, hidden_inputs_html, router_error
from .language import COOKIE, NAMES, choose_language, other_language
from .router_login import RouterLogin, router_error_key, router_login
from .wording import describe_duration, describe_wait, limited_message, say, status_message

PHONE_COOKIE = "phone"
NAIROBI = timezone(timedelta(hours=3), "EAT")  # the customer's clock; Kenya keeps no daylight saving
# What a code that cannot log in says (recovery.check_code outcomes).
CODE_ERRORS = {
    "unknown": "err_bad_code",
    "used_up": "err_code_used_up",
    "disabled": "err_code_disabled",
    "unpaid": "err_code_unpaid",
}


@bp.before_request
def _language() -> None:
    g.lang = choose_language(request)


@bp.after_request
def _remember_language(response):  # type: ignore[no-untyped-def]
    lang = g.get("lang")  # unset when the request was refused before this blueprint's own hooks ran
    if lang and request.args.get("lang") == lang:
        response.set_cookie(COOKIE, lang, max_age=365 * 86400, samesite="Lax", httponly=True)
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


# ---------------------------------------------------------------------------------------------
# Plans, and the three things a customer can do there


@bp.get("/r/<slug>")
def plans(slug: str):  # type: ignore[no-untyped-def]
    router = catalogue.storefront(slug) or abort(404)
    ctx = context_from(request.args)
    voucher = blank_voucher_form((request.args.get("voucher") or "")[:32])
    notice = _router_refusal(request.args)
    show = request.args.get("show")
    if notice is not None and show is None:
        show = "voucher"  # the router refused a login: the customer most likely has a code to try again
    buy = None
    if request.args.get("number") == "other":  # "use another number" from an unanswered prompt
        buy = blank_buy_form(purchase_key=secrets.token_urlsafe(24), phone="")
    return _render_plans(
        router, ctx, buy=buy, voucher=voucher, notice=notice, open_=show if show in ("voucher", "receipt") else None
    )


@bp.post("/r/<slug>/buy")
def buy(slug: str):  # type: ignore[no-untyped-def]
    router = _router(slug)
    form = BuyForm()
    ctx = context_from(from_form(request.form))
    plan = catalogue.plan_for_router(router, form.plan_id.data) if form.plan_id.data else None
    if not form.validate() or plan is None:
        if form.plan_id.data is not None and plan is None:
            form.plan_id.errors = [*form.plan_id.errors, "err_choose_plan"]
        return _render_plans(router, ctx, buy=form, status=400)
    try:
        msisdn = normalise_phone(form.phone.data)
        record_attempt(push_checks(msisdn, ctx, client_address()), token=form.purchase_key.data or None)
        payment = purchase.start_purchase(
            router, plan, phone=form.phone.data, hotspot=ctx, idempotency_key=form.purchase_key.data or None,
            language=g.lang, sms_opt_out=bool(form.no_sms.data),
        )
    except InvalidPhoneNumber:
        form.phone.errors = ["err_phone_invalid"]
        return _render_plans(router, ctx, buy=form, status=400)
    except RateLimited as exc:
        return _render_plans(router, ctx, buy=form, notice=limited_message(exc), status=429)
    except purchase.PurchaseError as exc:
        return _render_plans(router, ctx, buy=form, notice=say(exc.reason), status=503)
    response = redirect(url_for("captive.wait", purchase_id=payment.public_id), code=303)
    # The number is remembered on this device only (a cookie), never looked up on the server.
    response.set_cookie(PHONE_COOKIE, form.phone.data.strip()[:20], max_age=180 * 86400, samesite="Lax", httponly=True)
    return response


@bp.post("/r/<slug>/voucher")
def voucher_login(slug: str):  # type: ignore[no-untyped-def]
    router = _router(slug)
    form = VoucherForm()
    ctx = context_from(from_form(request.form))
    if not form.validate():
        return _render_plans(router, ctx, voucher=form, open_="voucher", status=400)
    try:
        record_attempt(code_checks("voucher", ctx, client_address()))
    except RateLimited as exc:
        form.code.errors = [limited_message(exc)]
        return _render_plans(router, ctx, voucher=form, open_="voucher", status=429)
    checked = recovery.check_code(router, form.code.data)
    voucher = checked.voucher
    if voucher is None:
        form.code.errors = [CODE_ERRORS.get(checked.outcome, "err_bad_code")]
        return _render_plans(router, ctx, voucher=form, open_="voucher", status=400)
    login = _login_at_router(ctx, voucher.code, router)
    if login is None:
        form.code.errors = ["err_no_login_link"]
        return _render_plans(router, ctx, voucher=form, open_="voucher", status=200)
    return _private(
        render_template(
            "captive/connect.html",
            code=voucher.code,
            login=login,
            ready=_ready_facts(voucher),
            brand=brands.brand_for(router.id),
            lang_url=_plans_url(router, ctx, other=True),
        )
    )


@bp.post("/r/<slug>/receipt")
def receipt(slug: str):  # type: ignore[no-untyped-def]
    router = _router(slug)
    form = ReceiptForm()
    ctx = context_from(from_form(request.form))
    if not form.validate():
        return _render_plans(router, ctx, receipt=form, open_="receipt", status=400)
    try:
        record_attempt(code_checks("receipt", ctx, client_address()))
    except RateLimited as exc:
        form.receipt.errors = [limited_message(exc)]
        return _render_plans(router, ctx, receipt=form, open_="receipt", status=429)
    found = recovery.recover_by_receipt(router, form.receipt.data, ctx)
    if found.outcome in ("found", "claimed") and found.payment is not None:
        return redirect(url_for("captive.wait", purchase_id=found.payment.public_id), code=303)
    error = {"underpaid": "err_underpaid", "too_little": "err_too_little", "used_up": "err_used_up"}
    form.receipt.errors = [say(error.get(found.outcome, "err_receipt_not_found"), amount=found.amount)]
    return _render_plans(
        router, ctx, receipt=form, open_="receipt", status=404 if found.outcome == "not_found" else 200
    )


# ---------------------------------------------------------------------------------------------
# Waiting, and what comes after


@bp.get("/p/<purchase_id>")
def wait(purchase_id: str):  # type: ignore[no-untyped-def]
    payment = customer_status.find_purchase(purchase_id) or abort(404)
    return _render_wait(payment)


@bp.post("/p/<purchase_id>/retry")
def retry(purchase_id: str):  # type: ignore[no-untyped-def]
    payment = customer_status.find_purchase(purchase_id) or abort(404)
    status = customer_status.purchase_status(payment)
    form = RetryForm()
    if not form.validate():
        return redirect(url_for("captive.wait", purchase_id=payment.public_id), code=303)
    if not _may_send_again(payment, status):
        return redirect(url_for("captive.wait", purchase_id=payment.public_id), code=303)
    ctx = HotspotContext.from_json(payment.hotspot_json)
    try:
        record_attempt(push_checks(payment.phone, ctx, client_address()), token=form.purchase_key.data or None)
        again = recovery.purchase_again(payment)
    except RateLimited as exc:
        return _render_wait(payment, notice=limited_message(exc), status_code=429)
    except purchase.PromptStillOpen as exc:
        return _render_wait(payment, notice=say(exc.reason, wait=describe_wait(exc.seconds_left)), status_code=409)
    except purchase.PurchaseError as exc:
        return _render_wait(payment, notice=say(exc.reason), status_code=503)
    return redirect(url_for("captive.wait", purchase_id=again.public_id), code=303)


@bp.post("/p/<purchase_id>/sms")
def resend_sms(purchase_id: str):  # type: ignore[no-untyped-def]
    """ "Send my code again": one more SMS with the code, to the number that paid (issue 17)."""
    payment = customer_status.find_purchase(purchase_id) or abort(404)
    form = ResendForm()
    if not form.validate() or payment.voucher is None:
        return redirect(url_for("captive.wait", purchase_id=payment.public_id), code=303)
    voucher = payment.voucher
    try:
        record_attempt([(f"sms:voucher:{voucher.id}", SMS_RESEND_PER_VOUCHER),
                        (f"sms:voucher:{voucher.id}", SMS_RESEND_PER_VOUCHER_HOUR)])
        outbox.queue_resend(voucher)
    except RateLimited as exc:
        return _render_wait(payment, notice=limited_message(exc), status_code=429)
    except outbox.ResendRefused as exc:
        return _render_wait(payment, notice=say(f"sms_resend_{exc.reason}"), status_code=409)
    return _render_wait(payment, good_news=say("sms_resent", phone=mask_phone(voucher.phone or "")))


@bp.get("/p/<purchase_id>/status")
def status(purchase_id: str):  # type: ignore[no-untyped-def]
    payment = customer_status.find_purchase(purchase_id)
    if payment is None:
        return jsonify({"error": "not found"}), 404
    found = customer_status.purchase_status(payment)
    brand = brands.brand_for(payment.router_id)
    response = make_response(
        jsonify({"status": found.status, "voucher": found.voucher, "message": status_message(found, brand)})
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/b/<int:brand_id>/logo")
def brand_logo(brand_id: int):  # type: ignore[no-untyped-def]
    """The owner's logo, from our host (the customer has no internet yet); the URL carries its hash."""
    data, media_type = brands.logo(brand_id) or abort(404)
    response = make_response(data)
    response.headers["Content-Type"] = media_type
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/accent/<colour>.css")
def accent_css(colour: str):  # type: ignore[no-untyped-def]
    """The owner's accent colour as a one-rule stylesheet: pages allow no inline style (CSP), and
    the file depends only on its URL, so a phone fetches it once."""
    if len(colour) != 6 or any(ch not in "0123456789abcdef" for ch in colour):
        abort(404)
    response = make_response(f":root{{--a:#{colour}}}")
    response.headers["Content-Type"] = "text/css; charset=utf-8"
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@bp.get("/favicon.ico")
def favicon():  # type: ignore[no-untyped-def]
    # Browsers ask for it on every site; answering (and letting them cache it) saves a 2G round trip.
    return send_from_directory(current_app.static_folder or "", "favicon.ico", max_age=7 * 86400)


# ---------------------------------------------------------------------------------------------
# Rendering


def _router(slug: str) -> Router:
    return catalogue.router_by_slug(slug) or abort(404)


def _render_wait(payment: Payment, *, notice: str | None = None, status_code: int = 200,
                 good_news: str | None = None):  # type: ignore[no-untyped-def]
    status = customer_status.purchase_status(payment)
    ctx = HotspotContext.from_json(payment.hotspot_json)
    brand = brands.brand_for(payment.router_id)
    prompt = (
        customer_status.prompt_facts(payment, current_app.config["PORTAL_STK_EXPIRY_S"])
        if status.status == "pending"
        else None
    )
    router = payment.router
    login = (
        _login_at_router(ctx, status.voucher, router)
        if status.status == "active" and status.voucher
        else None
    )
    if login is None and status.status == "active" and ctx.link_login_only and notice is None:
        notice = say("err_no_login_link")  # a login link that is not the router's own: enter the code there
    retry_form = retry_wait = None
    if _may_send_again(payment, status, prompt):
        retry_form = RetryForm(formdata=None, purchase_key=secrets.token_urlsafe(24))
        retry_wait = max(
            seconds_until_allowed(push_checks(payment.phone or "", ctx, client_address())),
            purchase.prompt_open_s(purchase.latest_prompt_to(payment.phone or "")),
        )
    page = render_template(
        "captive/wait.html",
        payment=payment,
        status=status,
        message=status_message(status, brand),
        notice=notice,
        good_news=good_news,
        brand=brand,
        masked_phone=mask_phone(payment.phone) if payment.phone else "",
        prompt=prompt,
        way_out_in=max(0, customer_status.WAY_OUT_AFTER_S - prompt.waiting_s) if prompt else 0,
        ready=_ready_facts(payment.voucher) if status.status == "active" and payment.voucher else None,
        login=login,
        retry_form=retry_form,
        retry_wait=describe_wait(retry_wait) if retry_wait else None,
        retry_wait_s=retry_wait or 0,
        back_url=_plans_url(router, ctx) if router else None,
        other_number_url=_plans_url(router, ctx, other_number=True) if router else None,
        receipt_url=_plans_url(router, ctx, show="receipt") if router else None,
        refresh=status.status in ("pending", "paid"),
        can_resend_sms=status.status == "active" and bool(payment.phone) and _sms_configured(),
        lang_url=url_for("captive.wait", purchase_id=payment.public_id, lang=_other_lang()),
    )
    return _private(page, status_code)


def _login_at_router(ctx: HotspotContext, code: str, router: Router | None) -> RouterLogin | None:
    """This request's browser login at the router (loopback login links only in development)."""
    return router_login(
        ctx, code, page_is_https=request.is_secure, hotspot_dns_name=router.hotspot_dns_name if router else None,
        router_label=router.slug if router else "", allow_loopback=not current_app.config["IS_PRODUCTION"],
    )


def _sms_configured() -> bool:
    return bool(current_app.config["PORTAL_SMS_USERNAME"])


def _may_send_again(
    payment: Payment,
    status: customer_status.PurchaseStatus,
    prompt: customer_status.PromptFacts | None = None,
) -> bool:
    """A failed or expired prompt may be sent again; so may one left unanswered for WAY_OUT_AFTER_S
    (unless its outcome is unknown: that push may be on the phone, and is never re-sent)."""
    if not payment.phone:
        return False
    if status.status in ("failed", "expired"):
        return status.can_retry
    if status.status != "pending" or status.reason == "slow":
        return False
    if prompt is None:
        prompt = customer_status.prompt_facts(payment, current_app.config["PORTAL_STK_EXPIRY_S"])
    return prompt.waiting_s >= customer_status.WAY_OUT_AFTER_S


def _ready_facts(voucher: Voucher) -> dict[str, Any]:
    """The plan and when it ends, for the "your code is ready" page."""
    plan = voucher.plan
    ends = voucher.expires_at.astimezone(NAIROBI).strftime("%H:%M, %d %b") if voucher.expires_at else None
    return {"plan": plan.name if plan else "", "duration": describe_duration(plan.duration_s) if plan else "", "ends": ends}


def _render_plans(
    router: Router | catalogue.Storefront,
    ctx: HotspotContext,
    *,
    buy: BuyForm | ShownForm | None = None,
    voucher: VoucherForm | ShownForm | None = None,
    receipt: ReceiptForm | ShownForm | None = None,
    notice: str | None = None,
    open_: str | None = None,
    status: int = 200,
):  # type: ignore[no-untyped-def]
    if buy is None:
        buy = blank_buy_form(purchase_key=secrets.token_urlsafe(24), phone=request.cookies.get(PHONE_COOKIE, ""))
    elif isinstance(buy, BuyForm):
        buy.purchase_key.data = secrets.token_urlsafe(24)  # a corrected form is a new attempt
    voucher = voucher or blank_voucher_form()
    receipt = receipt or blank_receipt_form()
    return (
        render_template(
            "captive/plans.html",
            router=router,
            plans=_plans_on_sale(router),
            form=buy,
            voucher_form=voucher,
            receipt_form=receipt,
            notice=notice,
            open_=open_,
            describe_duration=describe_duration,
            describe_bytes=catalogue.describe_bytes,
            lang_url=_plans_url(router, ctx, other=True),
            hidden_inputs=hidden_inputs_html(ctx, generate_csrf()),
            brand=brands.brand_for(router.router_id if isinstance(router, catalogue.Storefront) else router.id),
            focus_phone=request.args.get("number") == "other",
            sms_offered=_sms_configured(),  # no query: the page stays fast
        ),
        status,
    )


def _plans_on_sale(router: Router | catalogue.Storefront) -> tuple[catalogue.PlanView, ...]:
    shop = router if isinstance(router, catalogue.Storefront) else catalogue.storefront(router.slug)
    return shop.plans if shop else ()


def _router_refusal(args: Any) -> dict[str, str] | None:
    raw = router_error(args)
    key = router_error_key(raw)
    return {"heading": say("router_refused"), "text": say(key), "raw": raw or ""} if key else None


@bp.errorhandler(CSRFError)
def _expired_form(_exc: CSRFError):  # type: ignore[no-untyped-def]
    """A form kept open past its token's life (or from before a restart): show the page again, in words."""
    _language()  # the CSRF check runs before this blueprint's own before_request
    args = request.view_args or {}
    if "purchase_id" in args:
        payment = customer_status.find_purchase(args["purchase_id"]) or abort(404)
        return _render_wait(payment, notice=say("err_expired_form"), status_code=400)
    router = _router(args.get("slug", ""))
    ctx = context_from({name: request.form.get(name.replace("-", "_"), "") for name in PARAM_NAMES})
    return _render_plans(router, ctx, notice=say("err_expired_form"), status=400)


def _plans_url(
    router: Router | catalogue.Storefront,
    ctx: HotspotContext,
    *,
    other: bool = False,
    show: str | None = None,
    other_number: bool = False,
) -> str:
    params = as_params(ctx)
    if show:
        params["show"] = show
    if other_number:
        params["number"] = "other"
    if other:
        params["lang"] = _other_lang()
    base = url_for("captive.plans", slug=router.slug)
    return f"{base}?{urlencode(params)}" if params else base


def _other_lang() -> str:
    return other_language(g.lang)


def _private(page: Any, status_code: int = 200):  # type: ignore[no-untyped-def]
    # These pages show a voucher code: keep them out of shared caches and the back-button cache.
    response = make_response(page, status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


_asset_urls: dict[tuple[str, float, str], str] = {}


@bp.app_template_global()
def asset_url(filename: str) -> str:
    """A static URL with a content hash, so a changed file is fetched again despite long caching.
    Kept per (file, mtime): a page asks for three of these, and url_for is not cheap."""
    path = os.path.join(current_app.static_folder or "", filename)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:  # a missing icon must not take the page down with it
        return url_for("static", filename=filename)
    stamp = (path, mtime, request.script_root)
    url = _asset_urls.get(stamp)
    if url is None:
        version = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10]
        url = _asset_urls[stamp] = url_for("static", filename=filename, v=version)
    return url


@bp.app_template_global()
def describe_speed(rate_limit: str | None) -> str | None:
    """RouterOS "rx/tx" as the customer's download speed: "2M/5M" → "5 Mbps"."""
    if not rate_limit:
        return None
    tx = rate_limit.split()[0].split("/")[-1].strip()
    units = {"k": "kbps", "K": "kbps", "M": "Mbps", "G": "Gbps"}
    if tx and tx[-1] in units and tx[:-1].replace(".", "", 1).isdigit():
        return f"{tx[:-1]} {units[tx[-1]]}"
    return tx or None


@bp.app_template_filter("merge_lang")
def merge_lang(args, current: str) -> str:  # type: ignore[no-untyped-def]
    """The current query string with the other language chosen (pages without their own switch URL)."""
    merged = {k: v for k, v in args.items() if k != "lang"}
    merged["lang"] = other_language(current)
    return urlencode(merged)


bp.add_app_template_global(say)  # for the forms' error keys (captive/_errors.html)
# Pages drawn without a router (error pages) show no brand; a page with one passes its own.
bp.add_app_template_global(brands.NO_BRAND, "brand")


@bp.app_template_global()
def brand_logo_url(brand: brands.BrandView) -> str | None:
    if brand.logo_id is None:
        return None
    return url_for("captive.brand_logo", brand_id=brand.logo_id, v=brand.logo_hash)


@bp.app_template_global()
def language_name(lang: str) -> str:
    return NAMES[lang]

"""Problems: everything that needs the owner on one page, and the manual actions that fix it."""

from __future__ import annotations

from collections.abc import Callable

from flask import abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm

from ..models import Activation, Payment, StkInitiation
from ..money import problems
from ..owners.scope import NotFound
from . import bp
from .access import client_ip, get_owned_or_404, signed_in_user
from .forms_money import (
    AcceptUnderpaidForm,
    AssignPaymentForm,
    IssueVoucherForm,
    QueryInitiationForm,
    ResolvePaymentForm,
    RetryActivationForm,
)

QUERY_OUTCOME_WORDS = {
    "settled": "M-Pesa gave a final answer; it is recorded.",
    "pending": "M-Pesa is still processing it; look again in a minute.",
    "errors": "M-Pesa could not be asked just now; try again shortly.",
}


def _issue_form(payment: Payment, *, submitted: bool = False) -> IssueVoucherForm:
    user = signed_in_user()
    form = IssueVoucherForm() if submitted else IssueVoucherForm(formdata=None)
    form.plan_id.choices = [(p.id, f"{p.name} · KES {p.price}") for p in problems.plans_for_payment(user, payment)]
    form.router_id.choices = [(r.id, r.name) for r in problems.routers_for_payment(user, payment)]
    if payment.router_id and not submitted:
        form.router_id.data = payment.router_id
    return form


def _page(bound: dict[tuple[str, int], FlaskForm] | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    """The page, with the form that failed (if any) shown with its errors in its row."""
    found = problems.list_problems(signed_in_user())
    bound = bound or {}

    def form_for(action: str, row_id: int, factory: Callable[..., FlaskForm]) -> FlaskForm:
        # Unbound forms ignore the request body, so a failed POST's text stays in its own row.
        return bound.get((action, row_id)) or factory(formdata=None)

    def issue_form_for(payment: Payment) -> FlaskForm:
        return bound.get(("issue", payment.id)) or _issue_form(payment)

    return render_template(
        "dashboard/problems/problems.html", found=found, form_for=form_for, issue_form_for=issue_form_for,
        forms={"retry": RetryActivationForm, "query": QueryInitiationForm, "assign": AssignPaymentForm,
               "resolve": ResolvePaymentForm, "accept": AcceptUnderpaidForm},
    ), status


def _run(action: str, row_id: int, form: FlaskForm, do: Callable[[], str]):  # type: ignore[no-untyped-def]
    if not form.validate_on_submit():
        return _page({(action, row_id): form}, 400)
    try:
        message = do()
    except NotFound:
        abort(404)
    except problems.AlreadyHandled as exc:
        flash(str(exc), "warning")
    except problems.ProblemActionError as exc:
        target = getattr(form, exc.field, None) if exc.field else None
        if target is not None:
            target.errors = [*target.errors, str(exc)]
        else:
            form.form_errors.append(str(exc))
        return _page({(action, row_id): form}, 400)
    else:
        flash(message, "ok")
    return redirect(url_for("dashboard.problems"), code=303)


@bp.get("/problems", endpoint="problems")
def problems_page():  # type: ignore[no-untyped-def]
    return _page()


@bp.post("/problems/activations/<int:activation_id>/retry", endpoint="problem_retry_activation")
def problem_retry_activation(activation_id: int):  # type: ignore[no-untyped-def]
    get_owned_or_404(Activation, activation_id)
    form = RetryActivationForm()

    def do() -> str:
        problems.retry_activation(signed_in_user(), activation_id, reason=form.reason.data, source_ip=client_ip())
        return "Retrying now."

    return _run("retry", activation_id, form, do)


@bp.post("/problems/initiations/<int:initiation_id>/query", endpoint="problem_query_initiation")
def problem_query_initiation(initiation_id: int):  # type: ignore[no-untyped-def]
    get_owned_or_404(StkInitiation, initiation_id)
    form = QueryInitiationForm()

    def do() -> str:
        outcome = problems.query_initiation_now(signed_in_user(), initiation_id, reason=form.reason.data,
                                                source_ip=client_ip())
        return QUERY_OUTCOME_WORDS[outcome]

    return _run("query", initiation_id, form, do)


@bp.post("/problems/payments/<int:payment_id>/assign", endpoint="problem_assign_payment")
def problem_assign_payment(payment_id: int):  # type: ignore[no-untyped-def]
    get_owned_or_404(Payment, payment_id)
    form = AssignPaymentForm()

    def do() -> str:
        voucher = problems.assign_payment_to_voucher(signed_in_user(), payment_id, form.voucher_code.data,
                                                     reason=form.reason.data, source_ip=client_ip())
        return f"Payment assigned; voucher {voucher.code} is being switched on."

    return _run("assign", payment_id, form, do)


@bp.post("/problems/payments/<int:payment_id>/issue", endpoint="problem_issue_voucher")
def problem_issue_voucher(payment_id: int):  # type: ignore[no-untyped-def]
    payment = get_owned_or_404(Payment, payment_id)
    form = _issue_form(payment, submitted=True)

    def do() -> str:
        voucher = problems.issue_voucher_for_payment(signed_in_user(), payment_id, form.plan_id.data,
                                                     form.router_id.data, reason=form.reason.data,
                                                     source_ip=client_ip())
        return f"New voucher {voucher.code} issued; give this code to the customer."

    return _run("issue", payment_id, form, do)


@bp.post("/problems/payments/<int:payment_id>/accept", endpoint="problem_accept_underpaid")
def problem_accept_underpaid(payment_id: int):  # type: ignore[no-untyped-def]
    get_owned_or_404(Payment, payment_id)
    form = AcceptUnderpaidForm()

    def do() -> str:
        voucher = problems.accept_underpaid(signed_in_user(), payment_id, reason=form.reason.data,
                                            source_ip=client_ip())
        return f"Accepted; voucher {voucher.code} is being switched on."

    return _run("accept", payment_id, form, do)


@bp.post("/problems/payments/<int:payment_id>/resolve", endpoint="problem_resolve_payment")
def problem_resolve_payment(payment_id: int):  # type: ignore[no-untyped-def]
    get_owned_or_404(Payment, payment_id)
    form = ResolvePaymentForm()

    def do() -> str:
        problems.mark_payment_resolved(signed_in_user(), payment_id, reason=form.reason.data, source_ip=client_ip())
        return "Marked resolved."

    return _run("resolve", payment_id, form, do)

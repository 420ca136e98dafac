"""Problems: everything that needs the owner on one page, and the manual actions that fix it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    plans = problems.plans_for_payment(user, payment)
    paid = payment.amount or 0
    form.plan_id.choices = [
        (p.id, f"{p.name} · KES {p.price:,}" + (" (more than was paid)" if p.price > paid else "")) for p in plans
    ]
    form.router_id.choices = [(r.id, r.name) for r in problems.routers_for_payment(user, payment)]
    if not submitted:
        covered = problems.plan_covered_by(plans, payment.amount)
        form.plan_id.data = covered.id if covered else None
        if payment.router_id:
            form.router_id.data = payment.router_id
    return form


@dataclass
class RowForms:
    """One "why" per row: every action button of a row posts the same form (formaction), so the
    owner types the reason once; each action's own form still validates what it needs."""

    forms: dict[str, FlaskForm]
    failed: FlaskForm | None

    def __getattr__(self, action: str) -> FlaskForm:
        try:
            return self.forms[action]
        except KeyError as exc:
            raise AttributeError(action) from exc

    @property
    def reason(self) -> object:
        return (self.failed or next(iter(self.forms.values()))).reason

    @property
    def form_errors(self) -> list[str]:
        return list(self.failed.form_errors) if self.failed else []


def _page(bound: dict[tuple[str, int], FlaskForm] | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    """The page, with the form that failed (if any) shown with its errors in its row."""
    found = problems.list_problems(signed_in_user())
    bound = bound or {}

    def form_for(action: str, row_id: int, factory: Callable[..., FlaskForm]) -> FlaskForm:
        # Unbound forms ignore the request body, so a failed POST's text stays in its own row.
        return bound.get((action, row_id)) or factory(formdata=None)

    def row_forms(row_id: int, factories: dict[str, Callable[..., FlaskForm]]) -> RowForms:
        forms = {action: bound.get((action, row_id)) or factory(formdata=None) for action, factory in factories.items()}
        failed = next((bound[(a, row_id)] for a in factories if (a, row_id) in bound), None)
        return RowForms(forms, failed)

    def unmatched_forms(payment: Payment) -> RowForms:
        return row_forms(payment.id, {"assign": AssignPaymentForm,
                                      "issue": lambda formdata=None: bound.get(("issue", payment.id)) or _issue_form(payment),
                                      "resolve": ResolvePaymentForm})

    def underpaid_forms(payment: Payment) -> RowForms:
        return row_forms(payment.id, {"accept": AcceptUnderpaidForm, "resolve": ResolvePaymentForm})

    return render_template(
        "dashboard/problems/problems.html", found=found, form_for=form_for, unmatched_forms=unmatched_forms,
        underpaid_forms=underpaid_forms,
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
                                                     source_ip=client_ip(),
                                                     allow_over_price=form.allow_over_price.data)
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

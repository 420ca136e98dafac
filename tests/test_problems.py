"""The Problems page's manual actions end in an active voucher on the router, an audit entry,
and never a second voucher when the button is pressed twice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import Activation, AuditLog, Payment, StkInitiation, Voucher, utcnow
from portal.money import problems

from .conftest import wait_until
from .dashboard_support import field_errors, flashes
from .test_money_safety import SILENT_PHONE, _age_initiation
from .test_purchase_flow import _buy, _count, _initiation, _payment


def _unmatched(daraja, receipt: str = "UNMATCH001", amount: int = 10) -> Payment:  # type: ignore[no-untyped-def]
    daraja.simulate_c2b("174379", amount, "NOSUCHCODE", trans_id=receipt)
    db.session.expire_all()
    return db.session.scalars(sa.select(Payment).where(Payment.receipt == receipt)).one()


def _audit(action: str) -> list[AuditLog]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(AuditLog).where(AuditLog.action == action)))


def _active_on_router(router_box, code: str) -> bool:  # type: ignore[no-untyped-def]
    db.session.expire_all()
    voucher = db.session.scalars(sa.select(Voucher).where(Voucher.code == code)).one()
    return code in router_box.users and voucher.status == "active"


def test_issue_a_new_voucher_for_an_unmatched_payment(app, shop, daraja, router_box, worker, signed_in):
    payment = _unmatched(daraja)
    _, b = signed_in(shop.owner)
    page = b.get("/dashboard/problems")
    assert "UNMATCH001" in page.text

    done = b.post(f"/dashboard/problems/payments/{payment.id}/issue",
                  {"plan_id": shop.plan.id, "router_id": shop.router.id, "reason": "customer called, showed SMS"})

    assert done.status_code == 303, done.text[:800]
    voucher = db.session.scalars(sa.select(Voucher)).one()
    assert wait_until(lambda: _active_on_router(router_box, voucher.code))
    assert f"New voucher {voucher.code} issued" in b.follow(done).text
    db.session.expire_all()
    paid = db.session.get(Payment, payment.id)
    assert (paid.status, paid.voucher_id, paid.amount) == ("paid", voucher.id, 10) and paid.resolved_at
    [entry] = _audit("problem.issue_voucher")
    assert entry.actor == shop.owner.email and "customer called" in entry.detail and entry.owner_id == shop.owner.id
    assert problems.problems_count(shop.owner) == 0


def test_a_double_submitted_issue_makes_one_voucher(app, shop, daraja, router_box, worker, signed_in):
    payment = _unmatched(daraja)
    _, b = signed_in(shop.owner)
    b.get("/dashboard/problems")
    form = {"plan_id": shop.plan.id, "router_id": shop.router.id, "reason": "double click"}

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: b.post(f"/dashboard/problems/payments/{payment.id}/issue", form), range(4)))

    assert [a.status_code for a in answers] == [303] * 4
    assert _count(Voucher) == 1 and _count(Activation) == 1 and len(_audit("problem.issue_voucher")) == 1
    code = db.session.scalars(sa.select(Voucher.code)).one()
    assert wait_until(lambda: _active_on_router(router_box, code))
    assert list(router_box.users) == [code]
    again = b.follow(b.post(f"/dashboard/problems/payments/{payment.id}/issue", form))
    assert ("warning", "This payment was already resolved; nothing was changed.") in flashes(again.text)


def test_assign_an_unmatched_payment_to_the_voucher_the_customer_was_buying(
    app, shop, customer, daraja, router_box, worker, signed_in
):
    # The customer's STK push never completed, so they paid by paybill with a typo in the account.
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    code = _payment(purchase).voucher.code
    payment = _unmatched(daraja, receipt="TYPO000001")
    _, b = signed_in(shop.owner)
    b.get("/dashboard/problems")
    url = f"/dashboard/problems/payments/{payment.id}/assign"

    wrong = b.post(url, {"voucher_code": "NOPE", "reason": "typo"})
    assert wrong.status_code == 400 and "No voucher of yours has that code." in field_errors(wrong.text)
    no_reason = b.post(url, {"voucher_code": code, "reason": ""})
    assert no_reason.status_code == 400 and field_errors(no_reason.text)

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: b.post(url, {"voucher_code": code.lower(), "reason": "typo in account"}), range(3)))

    assert [a.status_code for a in answers] == [303] * 3
    body = customer.wait_for(purchase, ("active",))
    assert body["status"] == "active" and body["voucher"] == code and code in router_box.users
    db.session.expire_all()
    purchase_payment = _payment(purchase)
    assert purchase_payment.status == "paid" and purchase_payment.amount == 10 and purchase_payment.source == "manual"
    assert _initiation(purchase).status == "completed"
    unmatched = db.session.get(Payment, payment.id)
    assert unmatched.status == "unmatched" and unmatched.resolved_at  # kept as history, no longer a problem
    assert _count(Payment, Payment.status == "paid") == 1 and _count(Activation) == 1
    assert len(_audit("problem.assign_payment")) == 1


def test_assign_to_a_voucher_without_a_purchase_marks_it_paid(app, shop, daraja, router_box, worker):
    voucher = Voucher(code="HANDWRITTEN", owner_id=shop.owner.id, plan_id=shop.plan.id, router_id=shop.router.id)
    db.session.add(voucher)
    db.session.commit()
    payment = _unmatched(daraja)

    problems.assign_payment_to_voucher(shop.owner, payment.id, "handwritten", reason="paper voucher")

    assert wait_until(lambda: _active_on_router(router_box, "HANDWRITTEN"))
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "paid"
    assert db.session.get(Payment, payment.id).voucher_id == voucher.id


def test_retry_a_failed_activation_once_the_router_is_back(app, shop, customer, daraja, router_box, worker, signed_in):
    router_box.refuse_connections(True)
    purchase = _buy(customer, shop)
    activation = wait_until(lambda: db.session.scalars(
        sa.select(Activation).where(Activation.status == "failed")).first() if not db.session.expire_all() else None)
    assert activation is not None
    db.session.execute(sa.update(Activation).values(next_attempt_at=utcnow() + timedelta(hours=1)))
    db.session.commit()
    router_box.refuse_connections(False)
    _, b = signed_in(shop.owner)
    assert "Retry now" in b.get("/dashboard/problems").text

    first = b.post(f"/dashboard/problems/activations/{activation.id}/retry", {"reason": "router rebooted"})
    second = b.post(f"/dashboard/problems/activations/{activation.id}/retry", {"reason": "router rebooted"})

    assert first.status_code == second.status_code == 303
    body = customer.wait_for(purchase, ("active",))
    assert body["status"] == "active" and body["voucher"] in router_box.users
    assert len(_audit("problem.retry_activation")) == 1


def test_query_a_stuck_initiation_now(app, shop, customer, daraja, router_box, worker, signed_in):
    purchase = _buy(customer, shop, phone=SILENT_PHONE)
    checkout_id = _initiation(purchase).checkout_request_id
    daraja.set_outcome(checkout_id, 0, send_callback=False)
    wait_until(lambda: daraja.push_status(checkout_id)["is_completed"], timeout=5)
    _age_initiation(purchase, 40)
    initiation = _initiation(purchase)
    _, b = signed_in(shop.owner)
    assert checkout_id in b.get("/dashboard/problems").text

    done = b.follow(b.post(f"/dashboard/problems/initiations/{initiation.id}/query", {"reason": "customer waiting"}))
    assert ("ok", "M-Pesa gave a final answer; it is recorded.") in flashes(done.text)
    assert customer.wait_for(purchase, ("active",))["status"] == "active"
    again = b.follow(b.post(f"/dashboard/problems/initiations/{initiation.id}/query", {"reason": "again"}))
    assert flashes(again.text)[0][0] == "warning"
    assert daraja.query_calls[checkout_id] == 1 and len(_audit("problem.query_initiation")) == 1


def test_underpaid_can_be_accepted_or_marked_resolved(app, shop, customer, daraja, router_box, worker, signed_in):
    phones = ("0712 000 001", "0712 000 002")
    for phone in phones:
        daraja.set_outcome(phone, 0, amount=5)  # the customer pays KES 5 for a KES 10 plan
    purchases = [_buy(customer, shop, phone=phone) for phone in phones]
    for purchase in purchases:
        assert customer.wait_for(purchase, ("failed",))["status"] == "failed"
    accepted, resolved = (_payment(p) for p in purchases)
    assert problems.problems_count(shop.owner) == 2
    _, b = signed_in(shop.owner)
    b.get("/dashboard/problems")

    b.post(f"/dashboard/problems/payments/{accepted.id}/accept", {"reason": "regular customer"})
    b.post(f"/dashboard/problems/payments/{accepted.id}/accept", {"reason": "regular customer"})
    b.post(f"/dashboard/problems/payments/{resolved.id}/resolve", {"reason": "refunded KES 5"})

    assert customer.wait_for(purchases[0], ("active",))["status"] == "active"
    assert customer.status(purchases[1])["status"] == "failed"
    assert len(router_box.users) == 1 and _count(Activation) == 1
    assert problems.problems_count(shop.owner) == 0
    assert len(_audit("problem.accept_underpaid")) == 1 and len(_audit("problem.resolve_payment")) == 1


def test_problem_actions_need_csrf_and_stay_within_the_owner(app, shop, daraja, signed_in):
    payment = _unmatched(daraja)
    _, b = signed_in(shop.owner)
    refused = b.post(f"/dashboard/problems/payments/{payment.id}/resolve", {"reason": "no token"}, csrf=False)
    assert refused.status_code == 400
    _, stranger = signed_in()
    assert stranger.post(f"/dashboard/problems/payments/{payment.id}/resolve", {"reason": "not mine"}).status_code == 404
    assert "UNMATCH001" not in stranger.get("/dashboard/problems").text
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).resolved_at is None
    assert _count(StkInitiation) == 0

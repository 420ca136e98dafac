"""One sandbox router switched between the API and pull sync keeps every paid voucher active, once."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import activations, pull_sync
from portal.models import Activation, Router, Voucher

from .conftest import wait_until

HOTSPOT = {"mac": "AA:BB:CC:DD:EE:01", "ip": "10.5.50.23", "link-login-only": "http://10.5.50.1/login"}


def _buy(customer, shop) -> str:  # type: ignore[no-untyped-def]
    phone = f"0712{secrets.randbelow(10**6):06d}"  # a new phone each time: one prompt per phone per minute
    response = customer.buy(shop.router.slug, shop.plan.id, phone, **HOTSPOT)
    assert response.status_code == 303
    purchase = response.headers["Location"].replace(customer.base, "")
    body = customer.wait_for(purchase, ("paid", "active"))
    assert body["voucher"], body
    return body["voucher"]


def _switch(router_id: int, transport: str) -> None:
    router = db.session.get(Router, router_id)
    if pull_sync.set_transport(router, transport):
        db.session.commit()
        activations.wake_worker()
    db.session.commit()


def _vouchers() -> dict[str, Voucher]:
    db.session.expire_all()
    return {v.code: v for v in db.session.scalars(sa.select(Voucher))}


def test_switching_between_api_and_pull_keeps_every_paid_voucher_active_exactly_once(
    shop, customer, router_box, worker, pulling_router
):
    router_id = shop.router.id
    token = pull_sync.issue_sync_token(db.session.get(Router, router_id))
    db.session.commit()
    puller = pulling_router(shop.router, token)

    by_api = _buy(customer, shop)
    assert wait_until(lambda: _vouchers()[by_api].status == "active")

    _switch(router_id, "pull")
    by_pull = _buy(customer, shop)
    assert activations.claim_due_activations() == []  # the worker leaves pull rows alone
    puller.sync_once()
    assert _vouchers()[by_pull].status == "active"

    half_done = _buy(customer, shop)
    puller._apply(puller._exchange())  # on the router, never acknowledged
    assert half_done in router_box.users and _vouchers()[half_done].status == "paid"

    _switch(router_id, "api")  # the offered row goes back to the worker, which finds the user there
    assert wait_until(lambda: _vouchers()[half_done].status == "active")
    by_api_again = _buy(customer, shop)
    assert wait_until(lambda: _vouchers()[by_api_again].status == "active")

    first_activation = {code: v.activated_at for code, v in _vouchers().items()}
    _switch(router_id, "pull")
    puller.sync_once()
    assert puller.last_answer["add"] == [] and puller.last_answer["remove"] == []  # nothing delivered twice

    codes = [by_api, by_pull, half_done, by_api_again]
    vouchers = _vouchers()
    assert sorted(router_box.users) == sorted(codes)
    assert all(vouchers[c].status == "active" for c in codes)
    assert {c: vouchers[c].activated_at for c in codes} == {c: first_activation[c] for c in codes}
    rows = db.session.execute(sa.select(Activation.kind, Activation.status)).all()
    assert sorted(rows) == [("activate", "done")] * 4

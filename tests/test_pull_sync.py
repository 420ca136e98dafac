"""Pull sync over real HTTP: a sandbox pulling router fetches its work from /routers/<slug>/sync and
applies it to the sandbox router's state (portal/sandbox/pulling_router.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import activations, pull_sync
from portal.hotspot.voucher_batches import disable_voucher
from portal.models import Activation, Payment, Router, Voucher, utcnow
from portal.money import problems, reconciliation
from portal.owners import online

HOTSPOT = {"mac": "AA:BB:CC:DD:EE:01", "ip": "10.5.50.23", "link-login-only": "http://10.5.50.1/login"}


@pytest.fixture
def pull_shop(shop, make_pull_router):  # type: ignore[no-untyped-def]
    """The shop's owner, paybill and plan, sold on a router that syncs by pull."""
    shop.router, shop.token = make_pull_router(shop.owner, interval_s=15)
    return shop


def _buy_and_get_paid(customer, shop) -> tuple[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    response = customer.buy(shop.router.slug, shop.plan.id, "0712 345 678", **HOTSPOT)
    assert response.status_code == 303, response.text[:300]
    purchase = response.headers["Location"].replace(customer.base, "")
    body = customer.wait_for(purchase, ("paid", "active", "failed"))
    assert body["status"] == "paid", body
    return purchase, body


def _voucher(code: str) -> Voucher:
    db.session.expire_all()
    return db.session.scalars(sa.select(Voucher).where(Voucher.code == code)).one()


def _activation(code: str, kind: str = "activate") -> Activation:
    voucher = _voucher(code)
    return db.session.scalars(sa.select(Activation).where(Activation.voucher_id == voucher.id, Activation.kind == kind)).one()


def _post(app, slug: str, token: str | None, body: Any, **params: str) -> requests.Response:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{app.live_url}/routers/{slug}/sync", data=data, headers=headers, params=params, timeout=5)


EMPTY = {"version": "7.16", "acks": [], "usage": []}


# ---------------------------------------------------------------------------------------------
# End to end


def test_purchase_callback_sync_puts_the_user_on_the_router_and_the_voucher_is_active_once_acked(
    pull_shop, customer, router_box, pulling_router
):
    purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    assert "Connecting… this can take up to 20 seconds" in paid["message"]
    puller = pulling_router(pull_shop.router, pull_shop.token)

    assert puller.sync_once() == 1
    # The first round added the user; the follow-up round acknowledged it at once.
    user = router_box.users[code]
    assert user["profile"] == f"portal-plan-{pull_shop.plan.id}"
    assert user["limit-uptime"] == "1h" and user["limit-bytes-total"] == str(500 * 1024 * 1024)
    assert user["password"] == code and user["comment"] == f"portal voucher {code}"
    assert router_box.profiles[f"portal-plan-{pull_shop.plan.id}"]["rate-limit"] == "2M/5M"
    assert _activation(code).status == "done"
    assert _voucher(code).status == "active" and _voucher(code).expires_at is not None
    assert customer.status(purchase)["status"] == "active"


def test_the_voucher_stays_paid_while_offered_and_turns_active_on_the_ack(pull_shop, customer, router_box, pulling_router):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token)

    puller._apply(puller._exchange())  # one round: applied, not yet acknowledged

    assert code in router_box.users
    assert _activation(code).status == "offered"
    assert _voucher(code).status == "paid"
    assert puller.acks == [f"w{_activation(code).id}"]

    puller._exchange()  # the next sync carries the ack

    assert _activation(code).status == "done"
    assert _voucher(code).status == "active"


def test_swahili_wait_page_gives_the_same_bound(pull_shop, customer):
    purchase, _paid = _buy_and_get_paid(customer, pull_shop)
    body = customer.http.get(f"{customer.base}{purchase}/status", params={"lang": "sw"}, timeout=5).json()
    assert "hadi sekunde 20" in body["message"]


# ---------------------------------------------------------------------------------------------
# Lost answers, lost acks, a disable in between


def test_a_lost_answer_still_ends_in_exactly_one_user(pull_shop, customer, router_box, pulling_router):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token)
    puller.lose_next_answers(1)

    assert puller.sync_once() == 0
    assert code not in router_box.users and _activation(code).status == "offered"

    assert puller.sync_once() == 1  # offered again, applied, acknowledged
    assert puller.sync_once() == 0  # nothing left to do

    assert [name for name in router_box.users if name == code] == [code]
    assert _activation(code).status == "done" and _activation(code).attempts == 2
    assert _voucher(code).status == "active"


def test_a_lost_ack_still_ends_in_exactly_one_user(pull_shop, customer, router_box, pulling_router):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token)
    puller._apply(puller._exchange())
    first_user_id = router_box.users[code][".id"]
    assert puller.forget_acks() == [f"w{_activation(code).id}"]  # e.g. a reboot clears the globals

    again = puller._exchange()
    assert [a["name"] for a in again["add"]] == [code]  # never acknowledged, so offered again
    puller._apply(again)  # "add if missing": the user is there, nothing changes, and it is acknowledged
    puller._exchange()

    assert router_box.users[code][".id"] == first_user_id
    assert list(router_box.users) == [code]
    assert _activation(code).status == "done" and _voucher(code).status == "active"


def test_a_disable_after_the_router_applied_the_add_ends_in_no_user(pull_shop, customer, router_box, pulling_router):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token)
    puller._apply(puller._exchange())  # the user is on the router, the ack not sent yet
    assert code in router_box.users

    disable_voucher(pull_shop.owner, _voucher(code).id, reason="customer asked for a refund")
    puller.sync_once()  # the ack lands; the removal goes out only now, after its activation is done

    assert code not in router_box.users
    assert _voucher(code).status == "cancelled"
    assert _activation(code).status == "done" and _activation(code, "remove").status == "done"


def test_a_disable_after_a_lost_answer_ends_in_no_user_and_the_add_is_not_offered_again(
    pull_shop, customer, router_box, pulling_router
):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token)
    puller.lose_next_answers(1)
    puller.sync_once()
    assert _activation(code).status == "offered"

    disable_voucher(pull_shop.owner, _voucher(code).id, reason="paid twice by mistake")
    puller._apply(puller._exchange())

    assert puller.last_answer["add"] == []
    assert [item["name"] for item in puller.last_answer["remove"]] == [code]
    puller.sync_once()
    assert code not in router_box.users
    assert "cancelled" in _activation(code).last_error
    assert _activation(code, "remove").status == "done"


def test_a_removal_is_never_offered_before_its_activation(pull_shop, customer, router_box, pulling_router):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    voucher = _voucher(code)
    activations.queue_removal(voucher)  # e.g. an expiry racing the first delivery
    db.session.commit()
    puller = pulling_router(pull_shop.router, pull_shop.token)

    puller._apply(puller._exchange())
    assert [a["name"] for a in puller.last_answer["add"]] == [code] and puller.last_answer["remove"] == []

    puller.sync_once()  # ack → the removal is offered, applied and acknowledged
    assert code not in router_box.users
    assert _activation(code, "remove").status == "done"


# ---------------------------------------------------------------------------------------------
# The rsc form (RouterOS 6)


def test_the_rsc_form_puts_the_user_on_the_router_and_acks_through_the_answer_file(
    pull_shop, customer, router_box, pulling_router
):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token, form="rsc")

    assert puller.sync_once() == 1

    assert router_box.users[code]["limit-uptime"] == "1h"
    assert router_box.profiles[f"portal-plan-{pull_shop.plan.id}"]["rate-limit"] == "2M/5M"
    assert _activation(code).status == "done" and _voucher(code).status == "active"
    assert puller.scheduler["portal-sync"]["interval"] == "15s"
    db.session.expire_all()
    assert db.session.get(Router, pull_shop.router.id).last_sync_version == "6.49.10 (long-term)"


# ---------------------------------------------------------------------------------------------
# The endpoint refuses without changing anything


def test_wrong_token_unknown_slug_and_api_routers_get_401_and_change_nothing(
    app, pull_shop, customer, make_router, pulling_router
):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token)
    puller._apply(puller._exchange())
    ack = {"version": "7.16", "acks": [f"w{_activation(code).id}"],
           "usage": [{"name": code, "uptime": "9h", "bytes-in": 1, "bytes-out": 2}]}
    db.session.expire_all()
    before = db.session.get(Router, pull_shop.router.id).last_sync_at
    api_router = make_router(pull_shop.owner)

    for slug, token in ((pull_shop.router.slug, "wrong-token"), (pull_shop.router.slug, None),
                        ("no-such-router", pull_shop.token), (api_router.slug, pull_shop.token)):
        response = _post(app, slug, token, ack)
        assert response.status_code == 401, (slug, response.text)
        assert response.json() == {"error": "unknown router or wrong token"}

    db.session.expire_all()
    assert db.session.get(Router, pull_shop.router.id).last_sync_at == before
    assert _activation(code).status == "offered" and _voucher(code).status == "paid"


def test_a_body_that_is_not_the_protocol_gets_400_and_changes_nothing(app, pull_shop):
    db.session.expire_all()
    for body in (b"not json", b"[1, 2]", b"[" * 100_00 + b"]" * 100_00, json.dumps({"acks": 5}).encode()):
        response = _post(app, pull_shop.router.slug, pull_shop.token, body)
        assert response.status_code == 400, body[:20]
        assert "error" in response.json()
    assert db.session.get(Router, pull_shop.router.id).last_sync_at is None


def test_a_body_over_64_kb_gets_413(app, pull_shop):
    body = {"version": "7.16", "acks": [], "usage": [], "padding": "x" * 70_000}
    assert _post(app, pull_shop.router.slug, pull_shop.token, body).status_code == 413


def test_syncs_over_the_per_minute_limit_get_429_and_change_nothing(app, pull_shop):
    now = utcnow()
    for n in range(pull_sync.SYNCS_PER_MINUTE):
        pull_sync.sync(pull_shop.router.slug, pull_shop.token, EMPTY, now=now + timedelta(milliseconds=n))
    with pytest.raises(pull_sync.SyncRateLimited):
        pull_sync.sync(pull_shop.router.slug, pull_shop.token, EMPTY, now=now + timedelta(seconds=30))
    db.session.expire_all()
    assert db.session.get(Router, pull_shop.router.id).last_sync_at < now + timedelta(seconds=1)
    # A minute later the window is fresh again.
    pull_sync.sync(pull_shop.router.slug, pull_shop.token, EMPTY, now=now + timedelta(seconds=61))
    response = _post(app, pull_shop.router.slug, pull_shop.token, EMPTY)
    assert response.status_code == 200


def test_a_new_token_retires_the_old_one(app, pull_shop):
    assert _post(app, pull_shop.router.slug, pull_shop.token, EMPTY).status_code == 200
    router = db.session.get(Router, pull_shop.router.id)
    fresh = pull_sync.issue_sync_token(router)
    db.session.commit()
    assert router.sync_token_hash == pull_sync.token_hash(fresh) and fresh not in (router.sync_token_hash or "")
    assert _post(app, pull_shop.router.slug, pull_shop.token, EMPTY).status_code == 401
    assert _post(app, pull_shop.router.slug, fresh, EMPTY).status_code == 200


def test_the_answer_has_the_protocol_shape(app, pull_shop, customer):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    answer = _post(app, pull_shop.router.slug, pull_shop.token, EMPTY).json()
    activation = _activation(paid["voucher"])
    assert answer == {
        "interval": 15,
        "profiles": [{"name": f"portal-plan-{pull_shop.plan.id}", "rate-limit": "2M/5M", "shared-users": 1}],
        "add": [{"id": f"w{activation.id}", "name": paid["voucher"], "password": paid["voucher"],
                 "profile": f"portal-plan-{pull_shop.plan.id}", "limit-uptime": "1h",
                 "limit-bytes-total": 500 * 1024 * 1024}],
        "remove": [],
    }


# ---------------------------------------------------------------------------------------------
# The outbox, usage, last seen


def test_the_activation_worker_never_claims_a_pull_routers_rows(pull_shop, customer):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    assert activations.claim_due_activations() == []
    assert _activation(paid["voucher"]).status == "pending"


def test_reported_usage_expires_used_up_vouchers_and_the_removal_goes_out_by_sync(
    pull_shop, customer, router_box, pulling_router, make_plan
):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token)
    puller.sync_once()
    assert _voucher(code).status == "active"
    reconciliation.expire_used_up_vouchers()
    assert _voucher(code).status == "active"  # not used up yet


    router_box.users[code].update({"bytes-in": str(300 << 20), "bytes-out": str(201 << 20)})  # over 500 MB
    puller.sync_once()  # reports the usage
    counts = reconciliation.expire_used_up_vouchers()

    assert counts["expired"] == 1 and counts["unreachable"] == 0
    assert _voucher(code).status == "expired"
    puller.sync_once()
    assert code not in router_box.users


def test_online_now_for_a_pull_router_is_what_its_last_sync_reported(pull_shop, customer, router_box, pulling_router):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    code = paid["voucher"]
    puller = pulling_router(pull_shop.router, pull_shop.token)
    puller.sync_once()
    router_box.log_in_host(user=code, password_matches=lambda _: True, ip=HOTSPOT["ip"], mac=HOTSPOT["mac"],
                           login_by="http-chap")

    def kiosk() -> online.RouterOnline:  # the shop's API router shares the sandbox box; only the kiosk counts here
        online.forget_answers()
        return next(r for r in online.online_now(pull_shop.owner).routers if r.router_id == pull_shop.router.id)

    assert kiosk().sessions == 0  # not reported yet: the portal never asks a pull router
    puller.sync_once()
    assert kiosk().sessions == 1
    router_box.log_out_mac(HOTSPOT["mac"])
    puller.sync_once()
    assert kiosk().sessions == 0

    db.session.get(Router, pull_shop.router.id).last_sync_at = utcnow() - timedelta(minutes=3)
    db.session.commit()
    assert kiosk().sessions is None and "2 minutes" in kiosk().error


def test_last_seen_is_the_last_sync_and_a_silent_router_goes_offline_then_onto_problems(app, pull_shop):
    assert _post(app, pull_shop.router.slug, pull_shop.token, EMPTY).status_code == 200
    db.session.expire_all()
    router = db.session.get(Router, pull_shop.router.id)
    assert router.last_seen_at == router.last_sync_at and router.last_sync_version == "7.16"
    now = router.last_sync_at

    assert not pull_sync.is_offline(router, now + timedelta(seconds=119))
    assert pull_sync.is_offline(router, now + timedelta(seconds=121))
    assert problems.list_problems(pull_shop.owner, now=now + timedelta(minutes=9)).silent_pull_routers == []
    listed = problems.list_problems(pull_shop.owner, now=now + timedelta(minutes=11)).silent_pull_routers
    assert [r.id for r in listed] == [router.id]
    assert problems.problems_count(pull_shop.owner, now=now + timedelta(minutes=11)) >= 1


def test_payments_on_pull_routers_are_recorded_once(pull_shop, customer, pulling_router):
    _purchase, paid = _buy_and_get_paid(customer, pull_shop)
    puller = pulling_router(pull_shop.router, pull_shop.token)
    puller.sync_once()
    puller.sync_once()
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment).where(Payment.status == "paid")) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Activation)) == 1

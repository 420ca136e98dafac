"""Paybill and till pages: add, edit, secrets never shown, test credentials, C2B, webhook token rotation."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import AuditLog, Paybill, User, utcnow
from portal.owners.paybills import find_paybill_by_webhook_token

from .conftest import CONSUMER_KEY, CONSUMER_SECRET, SANDBOX_PASSKEY
from .dashboard_support import field_errors, flashes


def _paybill(paybill_id: int) -> Paybill:
    db.session.expire_all()
    return db.session.get(Paybill, paybill_id)


def _form(**overrides: object) -> dict[str, object]:
    data = {
        "name": "Shop paybill",
        "type": "paybill",
        "number": "174379",
        "store_number": "",
        "environment": "sandbox",
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "passkey": SANDBOX_PASSKEY,
        "status": "active",
    }
    data.update(overrides)
    return data


def test_paybill_list_renders_empty_and_with_paybills(app, signed_in, make_paybill):
    owner, b = signed_in()
    assert "No paybill or till yet" in b.get("/dashboard/paybills").text
    paybill = make_paybill(owner)
    page = b.get("/dashboard/paybills").text
    assert paybill.number in page and "not registered" in page


def test_adding_a_paybill_encrypts_secrets_and_shows_only_their_last_characters(app, signed_in):
    owner, b = signed_in()
    assert b.get("/dashboard/paybills/new").status_code == 200

    response = b.post("/dashboard/paybills/new", _form())

    assert response.status_code == 302, field_errors(response.text)
    paybill = db.session.scalars(sa.select(Paybill).where(Paybill.owner_id == owner.id)).one()
    assert paybill.consumer_secret == CONSUMER_SECRET and CONSUMER_SECRET not in paybill.consumer_secret_encrypted
    db.session.expire_all()
    assert db.session.get(User, owner.id).default_paybill_id == paybill.id
    for path in (f"/dashboard/paybills/{paybill.id}", f"/dashboard/paybills/{paybill.id}/edit", "/dashboard/paybills"):
        page = b.get(path).text
        for secret in (CONSUMER_KEY, CONSUMER_SECRET, SANDBOX_PASSKEY, paybill.webhook_token):
            assert secret not in page, (path, secret)
    detail = b.get(f"/dashboard/paybills/{paybill.id}").text
    assert "••••" + CONSUMER_SECRET[-4:] in detail and "••••" + SANDBOX_PASSKEY[-4:] in detail


def test_paybill_form_rejects_bad_input_next_to_each_field(app, signed_in):
    _, b = signed_in()
    response = b.post(
        "/dashboard/paybills/new", _form(number="12ab", type="till", store_number="", consumer_secret="", passkey="")
    )
    assert response.status_code == 400
    errors = field_errors(response.text)
    assert "A shortcode is 5 to 7 digits." in errors
    assert "A till needs its store number." in errors
    assert "Enter the consumer secret." in errors and "Enter the passkey." in errors
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Paybill)) == 0


def test_a_till_keeps_its_store_number(app, signed_in):
    owner, b = signed_in()
    b.post(
        "/dashboard/paybills/new",
        _form(type="till", number="5123456", store_number="600100", passkey="till-store-passkey"),
    )
    till = db.session.scalars(sa.select(Paybill).where(Paybill.owner_id == owner.id)).one()
    assert till.type == "till" and till.business_shortcode == "600100"


def test_editing_with_empty_secrets_keeps_them(app, signed_in, make_paybill):
    owner, b = signed_in()
    paybill = make_paybill(owner)
    response = b.post(
        f"/dashboard/paybills/{paybill.id}/edit", _form(name="Renamed", consumer_key="", consumer_secret="", passkey="")
    )
    assert response.status_code == 302, field_errors(response.text)
    saved = _paybill(paybill.id)
    assert saved.name == "Renamed" and saved.consumer_secret == CONSUMER_SECRET and saved.passkey == SANDBOX_PASSKEY

    b.post(
        f"/dashboard/paybills/{paybill.id}/edit", _form(consumer_key="", consumer_secret="new-secret-value", passkey="")
    )
    assert _paybill(paybill.id).consumer_secret == "new-secret-value"
    assert _paybill(paybill.id).consumer_key == CONSUMER_KEY


def test_test_credentials_fetches_a_token_and_shows_its_expiry(app, signed_in, make_paybill):
    owner, b = signed_in()
    paybill = make_paybill(owner)

    page = b.follow(b.post(f"/dashboard/paybills/{paybill.id}/test"))

    kind, message = flashes(page.text)[0]
    assert kind == "ok" and "Credentials work" in message
    saved = _paybill(paybill.id)
    assert saved.access_token and saved.token_expires_at > utcnow() and saved.last_token_refresh is not None
    assert "no token yet" not in page.text


def test_test_credentials_shows_darajas_exact_refusal(app, signed_in, make_paybill, daraja):
    owner, b = signed_in()
    paybill = make_paybill(owner)
    paybill.consumer_secret = "not-the-secret"
    db.session.commit()

    page = b.follow(b.post(f"/dashboard/paybills/{paybill.id}/test"))

    kind, message = flashes(page.text)[0]
    assert kind == "error" and message.startswith("Daraja refused the credentials: ")
    saved = _paybill(paybill.id)
    assert saved.last_token_error and saved.last_token_error in message
    assert saved.last_token_error in page.text  # token status shows the last error too


def test_register_c2b_urls_records_when(app, signed_in, make_paybill, daraja):
    owner, b = signed_in()
    paybill = make_paybill(owner)
    page = b.follow(b.post(f"/dashboard/paybills/{paybill.id}/register-c2b"))
    assert flashes(page.text)[0][0] == "ok"
    assert _paybill(paybill.id).c2b_registered_at is not None


def test_rotating_the_webhook_token_keeps_the_old_one_for_a_day(app, signed_in, make_paybill):
    owner, b = signed_in()
    paybill = make_paybill(owner)
    old_token = paybill.webhook_token

    response = b.post(f"/dashboard/paybills/{paybill.id}/rotate-webhook-token")

    assert response.status_code == 302
    saved = _paybill(paybill.id)
    assert saved.webhook_token != old_token
    assert find_paybill_by_webhook_token(saved.webhook_token).id == paybill.id
    assert find_paybill_by_webhook_token(old_token).id == paybill.id
    assert timedelta(hours=23, minutes=59) < saved.previous_webhook_token_valid_until - utcnow() <= timedelta(hours=24)
    assert saved.c2b_registered_at is None  # registered URLs carry the old token
    entry = db.session.scalars(sa.select(AuditLog).where(AuditLog.action == "webhook_token_rotated")).one()
    assert entry.owner_id == owner.id and entry.object_id == str(paybill.id) and old_token not in (entry.detail or "")
    # After the grace period the old path stops working.
    saved.previous_webhook_token_valid_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert find_paybill_by_webhook_token(old_token) is None


def test_admin_manages_the_platform_paybill_and_owners_cannot_see_it(app, signed_in, make_owner):
    admin, admin_browser = signed_in(admin=True)
    response = admin_browser.post("/dashboard/paybills/new", _form(owner_id=0, name="Platform"))
    assert response.status_code == 302, field_errors(response.text)
    platform = db.session.scalars(sa.select(Paybill).where(Paybill.name == "Platform")).one()
    assert platform.owner_id is None
    assert "platform (fallback)" in admin_browser.get("/dashboard/paybills").text

    _, owner_browser = signed_in()
    assert "Platform" not in owner_browser.get("/dashboard/paybills").text
    assert owner_browser.get(f"/dashboard/paybills/{platform.id}").status_code == 404
    # An owner cannot smuggle in an owner choice: the field is not on their form.
    owner_browser.post("/dashboard/paybills/new", _form(owner_id=admin.id, name="Mine"))
    mine = db.session.scalars(sa.select(Paybill).where(Paybill.name == "Mine")).one()
    assert mine.owner_id not in (None, admin.id)

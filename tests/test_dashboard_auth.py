"""Signing in and out, lockout after repeated failures, password change ending other sessions."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import AuditLog, User, utcnow
from portal.owners.scope import NAIROBI

from .dashboard_support import PASSWORD, field_errors, flashes


def _audit_actions(user_id: int) -> list[str]:
    db.session.expire_all()
    return list(
        db.session.scalars(sa.select(AuditLog.action).where(AuditLog.owner_id == user_id).order_by(AuditLog.id))
    )


def test_sign_in_page_renders_and_good_credentials_sign_in(app, browser, make_owner):
    owner = make_owner()
    b = browser()
    page = b.get("/dashboard/sign-in")
    assert page.status_code == 200 and 'name="password"' in page.text

    response = b.sign_in(owner.email)

    assert response.status_code == 302
    assert b.get("/dashboard/account").status_code == 200
    assert "sign_in" in _audit_actions(owner.id)


def test_wrong_password_is_refused_next_to_the_field(app, browser, make_owner):
    owner = make_owner()
    b = browser()

    response = b.sign_in(owner.email, "wrong password!")

    assert response.status_code == 401
    assert field_errors(response.text) == ["Wrong email or password."]
    assert b.get("/dashboard/account").status_code == 302


def test_empty_sign_in_form_says_what_is_missing(app, browser):
    b = browser()
    b.get("/dashboard/sign-in")
    response = b.post("/dashboard/sign-in", {"email": "", "password": ""})
    assert response.status_code == 400
    assert "Enter your email." in field_errors(response.text)
    assert "Enter your password." in field_errors(response.text)


def test_unknown_email_gets_the_same_answer_as_a_wrong_password(app, browser):
    response = browser().sign_in("nobody@example.com", "whatever password")
    assert response.status_code == 401
    assert field_errors(response.text) == ["Wrong email or password."]


def test_five_failures_lock_the_account_with_a_clear_unlock_time(app, browser, make_owner):
    owner = make_owner()
    b = browser()
    for _ in range(4):
        assert b.sign_in(owner.email, "wrong password!").status_code == 401

    fifth = b.sign_in(owner.email, "wrong password!")

    assert fifth.status_code == 429
    db.session.expire_all()
    locked_until = db.session.get(User, owner.id).locked_until
    assert locked_until is not None
    assert timedelta(minutes=14) < locked_until - utcnow() <= timedelta(minutes=15)
    clock = locked_until.astimezone(NAIROBI).strftime("%H:%M")
    assert f"Try again at {clock}" in field_errors(fifth.text)[0]
    # The right password does not help while locked.
    locked = b.sign_in(owner.email, PASSWORD)
    assert locked.status_code == 429 and re.search(r"Try again at \d\d:\d\d", locked.text)
    assert b.get("/dashboard/account").status_code == 302
    actions = _audit_actions(owner.id)
    assert actions.count("sign_in_failed") == 5 and "sign_in_locked" in actions


def test_the_lock_ends_after_fifteen_minutes(app, browser, make_owner):
    owner = make_owner()
    owner.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert browser().sign_in(owner.email).status_code == 302


def test_sign_in_records_the_source_address(app, browser, make_owner):
    owner = make_owner()
    browser().sign_in(owner.email)
    entry = db.session.scalars(sa.select(AuditLog).where(AuditLog.action == "sign_in")).one()
    assert entry.actor == owner.email and entry.source_ip == "127.0.0.1" and entry.actor_id == owner.id


def test_sign_out_ends_the_session(app, signed_in):
    owner, b = signed_in()
    response = b.post("/dashboard/sign-out")
    assert response.status_code == 302
    assert b.get("/dashboard/routers").status_code == 302
    assert "sign_out" in _audit_actions(owner.id)


def test_sign_in_does_not_redirect_off_site(app, browser, make_owner):
    owner = make_owner()
    b = browser()
    b.get("/dashboard/sign-in?next=https://evil.example/")
    response = b.post(
        "/dashboard/sign-in", {"email": owner.email, "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response.status_code == 302 and "evil" not in response.headers["Location"]


def test_signed_out_visitor_returns_to_the_page_asked_for(app, browser, make_owner):
    owner = make_owner()
    b = browser()
    first = b.get("/dashboard/plans")
    sign_in_page = b.follow(first)
    assert 'value="/dashboard/plans"' in sign_in_page.text
    response = b.post("/dashboard/sign-in", {"email": owner.email, "password": PASSWORD, "next": "/dashboard/plans"})
    assert response.headers["Location"].endswith("/dashboard/plans")


def test_password_change_ends_every_other_session(app, signed_in):
    owner, laptop = signed_in()
    _, phone = signed_in(owner)
    assert phone.get("/dashboard/account").status_code == 200

    response = laptop.post(
        "/dashboard/account",
        {
            "current_password": PASSWORD,
            "new_password": "a brand new passphrase",
            "confirm_password": "a brand new passphrase",
        },
    )

    assert response.status_code == 302
    assert ("ok", "Password changed. Every other session of this account has been signed out.") in flashes(
        laptop.follow(response).text
    )
    assert laptop.get("/dashboard/account").status_code == 200  # this session lives on
    assert phone.get("/dashboard/account").status_code == 302  # the other one is gone
    assert phone.sign_in(owner.email, PASSWORD).status_code == 401
    assert phone.sign_in(owner.email, "a brand new passphrase").status_code == 302
    assert "password_changed" in _audit_actions(owner.id)


def test_password_change_rejects_bad_input_next_to_the_field(app, signed_in):
    _, b = signed_in()
    wrong = b.post(
        "/dashboard/account",
        {
            "current_password": "not it at all",
            "new_password": "another passphrase",
            "confirm_password": "another passphrase",
        },
    )
    assert wrong.status_code == 400 and "The current password is wrong." in field_errors(wrong.text)
    short = b.post(
        "/dashboard/account", {"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"}
    )
    assert short.status_code == 400 and "Use 10 to 200 characters." in field_errors(short.text)
    differ = b.post(
        "/dashboard/account",
        {"current_password": PASSWORD, "new_password": "another passphrase", "confirm_password": "another passphrase!"},
    )
    assert differ.status_code == 400 and "The two new passwords differ." in field_errors(differ.text)


def test_account_page_renders(app, signed_in):
    owner, b = signed_in()
    page = b.get("/dashboard/account")
    assert page.status_code == 200 and owner.email in page.text and "Change password" in page.text


def test_many_failures_from_one_address_lock_that_address_across_accounts(app, make_owner):
    from portal.models import RateLimitHit
    from portal.owners import accounts

    owner = make_owner()
    db.session.add_all(RateLimitHit(key="sign-in:10.9.9.9") for _ in range(accounts.MAX_FAILURES_PER_ADDRESS))
    db.session.commit()

    try:
        accounts.sign_in(owner.email, PASSWORD, source_ip="10.9.9.9")
    except accounts.SignInLocked as exc:
        assert "from this network" in str(exc) and "Try again at" in str(exc)
    else:
        raise AssertionError("an address with 30 recent failures was not slowed down")
    assert accounts.sign_in(owner.email, PASSWORD, source_ip="10.9.9.8").id == owner.id

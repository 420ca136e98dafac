"""Issue 14 point 10: owners sign themselves up (when PORTAL_OPEN_SIGNUP allows) with the phone
confirmed by a code, reset a forgotten password by e-mail through a real local SMTP server
(aiosmtpd), and the admin can lock or delete an owner."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.models import AuditLog, Plan, User, utcnow
from portal.sandbox.mail import SandboxMailbox

from .dashboard_support import Browser, field_errors, flashes

PASSWORD = "a long new password"


@pytest.fixture
def mailbox() -> Iterator[SandboxMailbox]:
    with SandboxMailbox() as box:
        yield box


@pytest.fixture
def app_overrides(mailbox: SandboxMailbox) -> dict[str, Any]:
    return {"PORTAL_OPEN_SIGNUP": True, "PORTAL_MAIL_SERVER": "127.0.0.1", "PORTAL_MAIL_PORT": mailbox.port,
            "PORTAL_MAIL_USE_TLS": False}


def _sign_up(b: Browser, email: str = "new@example.com", phone: str = "0712 345 678") -> Any:
    b.get("/dashboard/sign-up")
    return b.post("/dashboard/sign-up", {"email": email, "phone": phone, "business_name": "Njeri Cafe",
                                         "password": PASSWORD, "confirm_password": PASSWORD})


def _code(mailbox: SandboxMailbox, email: str, count: int = 1) -> str:
    return re.search(r"code is (\d{6})", mailbox.wait_for(email, count=count).body).group(1)


def test_sign_up_confirms_the_phone_with_the_code_sent(app, mailbox):
    b = Browser(app)
    assert "Make an owner account" in b.get("/dashboard/sign-in").text

    made = _sign_up(b)

    assert made.status_code == 302 and made.headers["Location"].endswith("/dashboard/confirm-phone")
    user = db.session.scalars(sa.select(User).where(User.email == "new@example.com")).one()
    assert (user.phone, user.business_name, user.phone_confirmed_at) == ("254712345678", "Njeri Cafe", None)
    mail = mailbox.wait_for("new@example.com")
    assert mail.subject.startswith("Your Wi-Fi portal code: ") and "254712345678" in mail.body
    # Until the code is in, every page leads to the confirmation page.
    assert b.get("/dashboard/payments").headers["Location"].endswith("/dashboard/confirm-phone")
    b.get("/dashboard/confirm-phone")
    wrong = b.post("/dashboard/confirm-phone", {"code": "000000" if _code(mailbox, user.email) != "000000" else "111111"})
    assert wrong.status_code == 400 and "That is not the code we sent." in field_errors(wrong.text)

    right = b.post("/dashboard/confirm-phone", {"code": _code(mailbox, user.email)})

    assert right.status_code == 302
    assert b.get("/dashboard/payments").status_code == 200
    db.session.expire_all()
    assert db.session.get(User, user.id).phone_confirmed_at is not None
    assert "owner.phone_confirmed" in {a.action for a in db.session.scalars(sa.select(AuditLog))}


def test_five_wrong_codes_need_a_new_code_and_the_old_one_stops_working(app, mailbox):
    b = Browser(app)
    _sign_up(b)
    first = _code(mailbox, "new@example.com")
    b.get("/dashboard/confirm-phone")
    wrong = "000000" if first != "000000" else "111111"
    for _ in range(5):
        b.post("/dashboard/confirm-phone", {"code": wrong})
    locked = b.post("/dashboard/confirm-phone", {"code": first})
    assert "Too many wrong codes; ask for a new one." in field_errors(locked.text)
    user = db.session.scalars(sa.select(User)).one()
    db.session.execute(sa.update(User).values(confirm_code_sent_at=utcnow() - timedelta(minutes=2)))  # asked a while ago
    db.session.commit()

    b.post("/dashboard/confirm-phone/resend")
    second = _code(mailbox, "new@example.com", count=2)
    if first != second:
        assert b.post("/dashboard/confirm-phone", {"code": first}).status_code == 400
    assert b.post("/dashboard/confirm-phone", {"code": second}).status_code == 302
    db.session.expire_all()
    assert db.session.get(User, user.id).is_confirmed


def test_sign_up_is_closed_unless_the_platform_opens_it(app, mailbox):
    app.config["PORTAL_OPEN_SIGNUP"] = False
    b = Browser(app)
    assert b.get("/dashboard/sign-up").status_code == 404
    assert "Make an owner account" not in b.get("/dashboard/sign-in").text


def test_a_bad_phone_or_a_taken_email_is_said_next_to_the_form(app, mailbox, make_owner):
    make_owner("taken@example.com")
    b = Browser(app)
    bad_phone = _sign_up(b, phone="12345")
    assert bad_phone.status_code == 400 and "Enter a Kenyan mobile number, e.g. 0712 345 678." in field_errors(bad_phone.text)
    taken = _sign_up(b, email="taken@example.com")
    assert taken.status_code == 400 and "An account for taken@example.com already exists." in field_errors(taken.text)
    assert mailbox.messages == []


def test_password_reset_by_email_works_once_and_ends_old_sessions(app, mailbox, make_owner, signed_in):
    owner = make_owner("forgetful@example.com")
    _, old_session = signed_in(owner)
    b = Browser(app)
    b.get("/dashboard/forgot-password")

    asked = b.post("/dashboard/forgot-password", {"email": "Forgetful@Example.com"})
    unknown = b.post("/dashboard/forgot-password", {"email": "nobody@example.com"})

    assert asked.status_code == 303 and unknown.status_code == 303  # the same answer: no account is revealed
    assert "a reset link is on its way" in b.get(asked.headers["Location"]).text
    mail = mailbox.wait_for("forgetful@example.com")
    assert mailbox.to("nobody@example.com") == []
    link = re.search(r"(http://\S+/dashboard/reset-password\?token=\S+)", mail.body).group(1)
    form_page = b.get(link)
    assert form_page.status_code == 200 and 'name="token"' in form_page.text
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', form_page.text).group(1)

    short = b.post("/dashboard/reset-password", {"token": token, "password": "short", "confirm_password": "short"})
    assert short.status_code == 400
    done = b.post("/dashboard/reset-password", {"token": token, "password": PASSWORD, "confirm_password": PASSWORD})

    assert done.status_code == 303
    assert b.sign_in(owner.email, PASSWORD).status_code == 302
    assert old_session.get("/dashboard/payments").status_code == 302  # signed out by the reset
    again = b.get(link)
    assert again.status_code == 400 and "already used" in again.text


def test_a_reset_link_that_was_tampered_with_is_refused(app, mailbox):
    page = Browser(app).get("/dashboard/reset-password", params={"token": "not-a-token"})
    assert page.status_code == 400 and "This link is not valid" in page.text


def test_mail_server_down_is_a_clear_error_not_a_500(app, mailbox, make_owner):
    make_owner("someone@example.com")
    mailbox.stop()
    b = Browser(app)
    b.get("/dashboard/forgot-password")
    answer = b.post("/dashboard/forgot-password", {"email": "someone@example.com"})
    assert answer.status_code == 400
    assert "The e-mail could not be sent just now; try again in a few minutes." in field_errors(answer.text)


def test_the_admin_locks_and_unlocks_an_owner(app, mailbox, make_owner, signed_in):
    owner = make_owner("shop@example.com")
    _, owner_browser = signed_in(owner)
    _, admin = signed_in(admin=True)
    page = admin.get("/dashboard/owners").text
    assert "shop@example.com" in page and ">Owners<" in page
    assert ">Owners<" not in owner_browser.get("/dashboard/payments").text  # not in an owner's menu
    assert owner_browser.get("/dashboard/owners").status_code == 404

    locked = admin.post(f"/dashboard/owners/{owner.id}/lock", {"reason": "unpaid platform fees"})

    assert locked.status_code == 303
    assert owner_browser.get("/dashboard/payments").status_code == 302  # their session ended
    refused = Browser(app).sign_in(owner.email)
    assert refused.status_code == 401 and "locked by the platform admin" in refused.text
    admin.post(f"/dashboard/owners/{owner.id}/unlock", {"reason": "paid up"})
    assert Browser(app).sign_in(owner.email).status_code == 302
    actions = [a.action for a in db.session.scalars(sa.select(AuditLog).where(AuditLog.owner_id == owner.id))]
    assert "owner.lock" in actions and "owner.unlock" in actions


def test_the_admin_deletes_an_empty_owner_but_never_money_history(app, mailbox, make_owner, make_plan, signed_in,
                                                                 make_everything):
    from portal.hotspot import brands

    empty = make_owner("mistake@example.com")
    make_plan(empty)
    brands.save_brand(empty, None, hotspot_name="Gone Soon")
    empty_id = empty.id
    busy = make_owner("busy@example.com")
    make_everything(busy)  # has a payment
    _, admin = signed_in(admin=True)
    admin.get("/dashboard/owners")

    wrong = admin.post(f"/dashboard/owners/{empty_id}/delete", {"confirm_email": "someone-else@example.com"})
    assert any("Type the owner's e-mail" in text for _, text in flashes(admin.follow(wrong).text))
    refused = admin.post(f"/dashboard/owners/{busy.id}/delete", {"confirm_email": "busy@example.com"})
    assert any("Lock the account instead" in text for _, text in flashes(admin.follow(refused).text))
    done = admin.post(f"/dashboard/owners/{empty_id}/delete", {"confirm_email": "mistake@example.com"})

    assert any("mistake@example.com deleted" in text for _, text in flashes(admin.follow(done).text))
    db.session.expire_all()
    assert db.session.get(User, empty_id) is None and db.session.get(User, busy.id) is not None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Plan).where(Plan.owner_id == empty_id)) == 0


def test_production_refuses_open_sign_up_without_a_mail_server(monkeypatch, tmp_path):
    from portal.core.config import ConfigError, load_settings

    for name, value in {"PORTAL_ENV": "production", "SECRET_KEY": "s" * 40, "PORTAL_BASE_URL": "https://portal.example",
                        "PORTAL_ENCRYPTION_KEYS": "hKGDXyRf0s3f0hP1mS0uV9f8yqQmG1GZ0m3vCq7bN3w=",
                        "DATABASE_URL": "postgresql://u@127.0.0.1/db", "PORTAL_OPEN_SIGNUP": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="PORTAL_OPEN_SIGNUP needs PORTAL_MAIL_SERVER"):
        load_settings(str(tmp_path))
    monkeypatch.setenv("PORTAL_MAIL_SERVER", "smtp.example.com")
    assert load_settings(str(tmp_path))["MAIL_SERVER"] == "smtp.example.com"

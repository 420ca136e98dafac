"""E-mail to owners (sign-up codes, password resets) through Flask-Mail over SMTP.

Flask-Mail opens its SMTP connection without a timeout, so the connection here passes one, and
every SMTP or socket error becomes ``MailNotSent``. A message is tried twice at most: a second
copy of a code or a reset link is harmless, a page that hangs on a dead mail server is not.
"""

from __future__ import annotations

import logging
import smtplib
import time

from flask import current_app
from flask_mail import Connection, Message

log = logging.getLogger(__name__)
ATTEMPTS = 2


class MailNotSent(Exception):
    """The SMTP server could not be reached or refused the message; the text is safe to show."""


class _TimedConnection(Connection):
    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        timeout = current_app.config["PORTAL_MAIL_TIMEOUT_S"]
        server, port = self.mail.server, self.mail.port
        host = smtplib.SMTP_SSL(server, port, timeout=timeout) if self.mail.use_ssl else smtplib.SMTP(
            server, port, timeout=timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


def mail_enabled() -> bool:
    return bool(current_app.config["PORTAL_MAIL_SERVER"])


def send_mail(to: str, subject: str, body: str) -> None:
    """Send one plain-text message. Raises ``MailNotSent``; logs the recipient, never the body
    (it holds a code or a reset link)."""
    if not mail_enabled():
        raise MailNotSent("E-mail is not set up on this portal (PORTAL_MAIL_SERVER).")
    message = Message(subject=subject, recipients=[to], body=body)
    state = current_app.extensions["mail"]  # Flask-Mail's state, bound by create_app (core.extensions.mail)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with _TimedConnection(state) as connection:
                connection.send(message)
            log.info("mail sent to %s: %s", _masked(to), subject)
            return
        except (smtplib.SMTPException, OSError) as exc:
            log.warning("mail to %s failed (attempt %d): %s", _masked(to), attempt, type(exc).__name__)
            if attempt == ATTEMPTS:
                raise MailNotSent("The e-mail could not be sent just now; try again in a few minutes.") from exc
            time.sleep(0.5)


def _masked(address: str) -> str:
    name, _, domain = address.partition("@")
    return f"{name[:2]}…@{domain}"

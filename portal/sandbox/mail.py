"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives: the tests' and the
demo's mailbox for sign-up codes and password-reset links.

    with SandboxMailbox() as box:   # box.port to give PORTAL_MAIL_PORT
        ...
        box.wait_for("owner@example.com").body
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMail:
    sender: str
    recipients: tuple[str, ...]
    subject: str
    body: str


class _Keep:
    def __init__(self, box: SandboxMailbox) -> None:
        self.box = box

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802 (aiosmtpd's hook name)
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        part = parsed.get_body(preferencelist=("plain",))
        mail = ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), str(parsed["subject"] or ""),
                            part.get_content() if part is not None else "")
        with self.box.lock:
            self.box.messages.append(mail)
        if self.box.on_message:
            self.box.on_message(mail)
        return "250 Message accepted for delivery"


class SandboxMailbox:
    def __init__(self, *, port: int = 0, on_message=None) -> None:  # type: ignore[no-untyped-def]
        self.messages: list[ReceivedMail] = []
        self.lock = threading.Lock()
        self.on_message = on_message  # the demo prints each mail
        self._controller = Controller(_Keep(self), hostname="127.0.0.1", port=port or _free_port())
        self.port = self._controller.port

    def start(self) -> SandboxMailbox:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop listening (a mail server that went away); stopping twice is harmless."""
        if getattr(self, "_running", False):
            self._controller.stop()
            self._running = False

    def __enter__(self) -> SandboxMailbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [m for m in self.messages if address in m.recipients]

    def wait_for(self, address: str, *, count: int = 1, timeout: float = 10.0) -> ReceivedMail:
        """The ``count``-th message to ``address``, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no mail #{count} to {address} within {timeout} s; got {self.messages}")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

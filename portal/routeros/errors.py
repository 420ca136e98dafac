"""Errors raised by the RouterOS client. Every librouteros or socket exception becomes one of these.

``str(error)`` is a reason a router owner can read. It names the router and never contains a
password, because these strings end up in logs, the outbox's ``last_error`` and the dashboard.
"""

from __future__ import annotations


class RouterError(Exception):
    """Something went wrong talking to a router."""

    def __init__(self, reason: str, *, router_label: str = "") -> None:
        self.reason = reason
        self.router_label = router_label
        super().__init__(f"router {router_label}: {reason}" if router_label else reason)


class RouterUnreachable(RouterError):
    """No usable connection: refused, DNS failure, timeout, reset, or closed by the router.

    Safe to retry later; the outbox does so. After a timeout the command may or may not have
    been applied on the router, which is why every hotspot operation is idempotent.
    """


class RouterLoginFailed(RouterError):
    """The router refused the API user or password (retrying will not help until they change)."""


class RouterCommandFailed(RouterError):
    """The router answered a command with ``!trap``; the connection stays usable."""

    def __init__(
        self,
        reason: str,
        *,
        router_label: str = "",
        trap_message: str,
        category: int | None = None,
    ) -> None:
        self.trap_message = trap_message
        self.category = category
        super().__init__(reason, router_label=router_label)

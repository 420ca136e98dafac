"""Daraja's webhooks have no browser session: none is opened or signed for them."""

from __future__ import annotations

from typing import Any

from flask.sessions import SecureCookieSessionInterface


class NoSessionForWebhooks(SecureCookieSessionInterface):
    """The cookie session everywhere but under /hooks/ and /routers/ (pull sync), where nothing
    reads or writes one: a read-only null session there spares every callback the cookie serializer."""

    def open_session(self, app: Any, request: Any) -> Any:
        if request.path.startswith(("/hooks/", "/routers/")):
            return self.make_null_session(app)
        return super().open_session(app, request)

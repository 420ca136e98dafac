"""The sandbox stand-ins, extended for measuring (portal/sandbox itself is left as it is).

``SlowDaraja`` answers every API call after ``response_delay_s`` (a WSGI middleware) and records
when each STK query arrived, for which shortcode and CheckoutRequestID. ``TimedRouter`` notes the
moment each hotspot user is added, in this process's monotonic clock.
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

from werkzeug.serving import make_server

from portal.sandbox.daraja import SandboxDaraja, _build_app, _QuietHandler
from portal.sandbox.router import SandboxRouter


class SlowDaraja(SandboxDaraja):
    def __init__(self, *, response_delay_s: float = 0.2, **kw: Any) -> None:
        super().__init__(**kw)
        self.response_delay_s = response_delay_s
        self.queries: list[tuple[float, str, str]] = []  # (arrival monotonic, BusinessShortCode, CheckoutRequestID)
        self.oauth_times: list[float] = []
        self._record_lock = threading.Lock()

    def start(self) -> SlowDaraja:
        self._stopping.clear()
        inner = _build_app(self)

        def delayed(environ: dict[str, Any], start_response: Any) -> Any:
            arrived = time.monotonic()
            path = environ.get("PATH_INFO", "")
            if path.startswith("/mpesa/stkpushquery"):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)
                try:
                    data = json.loads(body)
                    with self._record_lock:
                        self.queries.append((arrived, str(data.get("BusinessShortCode")), str(data.get("CheckoutRequestID"))))
                except ValueError:
                    pass
            elif path.startswith("/oauth"):
                with self._record_lock:
                    self.oauth_times.append(arrived)
            if not path.startswith("/sandbox"):
                time.sleep(self.response_delay_s)
            return inner(environ, start_response)

        self._server = make_server(self.host, self.port, delayed, threaded=True, request_handler=_QuietHandler)
        self._server.request_queue_size = 256
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="slow-daraja", daemon=True
        )
        self._thread.start()
        return self


class TimedRouter(SandboxRouter):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.added_at: dict[str, float] = {}

    def _add_user(self, request):  # type: ignore[no-untyped-def]
        result = super()._add_user(request)
        self.added_at[request.attributes.get("name", "")] = time.monotonic()
        return result

"""A local stand-in for a MikroTik hotspot's HTTP login servlet, in front of a SandboxRouter.

It plays one device (one MAC and IP) behind the hotspot. ``GET /login`` renders the router's
login.html as the portal's routers carry it: an instant hand-over to the portal with the hotspot
variables. ``/login`` with a username logs the device in by PAP or CHAP as RouterOS does (GET or
POST; every attempt is kept in ``logins``). ``/status`` and ``/logout`` render the portal's
router-side pages (scripts/hotspot/status.html, logout.html) with RouterOS's ``$(var)`` and
``$(if …)`` syntax when ``pages_dir`` is given (``ROUTER_PAGES``), so tests see what a customer would.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from .router import SandboxRouter, SandboxTrap

DEFAULT_LINK_ORIG = "http://example.com/"
INVALID_LOGIN = "invalid username or password"
CHAP_MISSING = "web browser did not send challenge response (try again, enable JavaScript)"
ROUTER_PAGES = Path(__file__).resolve().parents[2] / "scripts" / "hotspot"


def encode_octal_escapes(data: bytes) -> str:
    r"""Bytes as RouterOS writes $(chap-id) and $(chap-challenge): every byte as ``\ooo``."""
    return "".join(f"\\{byte:03o}" for byte in data)


def decode_octal_escapes(text: str) -> bytes:
    r"""``"\371\357\015"`` → ``b"\xf9\xef\x0d"``. Other characters stand for themselves (Latin-1)."""
    return bytes(
        int(escape, 8) if escape else ord(char)
        for escape, char in re.findall(r"\\([0-7]{1,3})|(.)", text, flags=re.DOTALL)
    )


def chap_response(chap_id_octal: str, password: str, challenge_octal: str) -> str:
    """What the stock login.html posts as ``password`` for http-chap: hex MD5(id + password + challenge)."""
    data = decode_octal_escapes(chap_id_octal) + password.encode() + decode_octal_escapes(challenge_octal)
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def meta_refresh_url(page: str) -> str | None:
    """The URL a login page forwards to with ``<meta http-equiv="refresh">`` (for tests)."""
    match = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]*)"', page)
    return html.unescape(match.group(1)) if match else None


class SandboxHotspot:
    """The hotspot's login servlet on 127.0.0.1, seen from one device (``device_mac``/``device_ip``).

    ``chap=True`` means login-by=http-chap only: the password must be the CHAP response to the
    last challenge this device was shown.
    """

    def __init__(
        self,
        router: SandboxRouter,
        *,
        portal_url: str | None = None,
        device_mac: str = "AA:BB:CC:DD:EE:01",
        device_ip: str = "10.5.50.23",
        chap: bool = False,
        port: int = 0,
        host: str = "127.0.0.1",
        pages_dir: Path | None = None,  # ROUTER_PAGES: serve the portal's status.html/logout.html
        default_link_orig: str | None = None,  # where a login with no dst goes ("/status" = this hotspot's)
    ) -> None:
        self.router = router
        self.portal_url = portal_url
        self.device_mac = device_mac.upper()
        self.device_ip = device_ip
        self.chap = chap
        self.host = host
        self.port = port
        self._challenge: tuple[bytes, bytes] | None = None  # (chap id, chap challenge)
        self._challenge_lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self.pages_dir = pages_dir
        self.default_link_orig = default_link_orig
        self.logins: list[dict[str, Any]] = []  # every login attempt: method, username, login_by, error
        # Demo only: a note added to the "You are online" page (the demo links its SMS gateway there).
        self.status_extra_html: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def login_url(self) -> str:
        """The hotspot's $(link-login-only)."""
        return f"{self.base_url}/login"

    def start(self) -> SandboxHotspot:
        self.router.add_host(self.device_mac, self.device_ip)
        self._server = make_server(self.host, self.port, self.wsgi_app, threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SandboxHotspot:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == "/login":
            response = self._login(request)
        elif request.path == "/status":
            response = self._status()
        elif request.path == "/logout":
            response = self._logout()
        elif self.router.session_for_mac(self.device_mac) is None:
            # Like the hotspot: any page before login sends the device to the login page.
            response = redirect(f"{self.login_url}?{urlencode({'dst': request.url})}")
        else:
            response = _page("Online", "<p>You are online.</p>")
        return response(environ, start_response)

    # --- pages

    def _login(self, request: Request) -> Response:
        username = request.values.get("username")
        dst = request.values.get("dst", "")
        if username is None:
            return self._login_page(dst=dst, error=None)
        password = request.values.get("password", "")
        attempt = {"method": request.method, "username": username, "login_by": "http-chap" if self.chap else "http-pap"}
        self.logins.append(attempt)
        try:
            self.router.log_in_host(
                user=username,
                password_matches=self._password_check(password),
                ip=self.device_ip,
                mac=self.device_mac,
                login_by=attempt["login_by"],
            )
        except SandboxTrap as trap:
            attempt["error"] = trap.message
            return self._login_page(dst=dst, error=trap.message)
        attempt["error"] = None
        return redirect(dst or f"{self.base_url}/status")

    def _password_check(self, password: str) -> Callable[[str], bool]:
        """How this login's password is checked against the stored one (PAP, or CHAP when enabled)."""
        if not self.chap:
            return lambda stored: hmac.compare_digest(stored, password)
        with self._challenge_lock:
            challenge = self._challenge
        if challenge is None:
            raise SandboxTrap(CHAP_MISSING)
        chap_id, chap_challenge = challenge

        def matches_chap(stored: str) -> bool:
            expected = hashlib.md5(chap_id + stored.encode() + chap_challenge, usedforsecurity=False).hexdigest()
            return hmac.compare_digest(expected, password.lower())

        return matches_chap

    def _login_page(self, *, dst: str, error: str | None) -> Response:
        """The router's login.html: hand the device to the portal with the hotspot variables."""
        params = {
            "mac": self.device_mac,
            "ip": self.device_ip,
            "link-login-only": self.login_url,
            "link-orig": dst or self._default_link_orig(),
        }
        if self.chap:
            chap_id, chap_challenge = self._new_challenge()
            params["chap-id"] = encode_octal_escapes(chap_id)
            params["chap-challenge"] = encode_octal_escapes(chap_challenge)
        if error:
            params["error"] = error
        if self.portal_url is None:
            return _page("Hotspot login", _definition_list(params))
        return _forwarding_page(self.portal_url, params)

    def _default_link_orig(self) -> str:
        # The demo has no internet page to go on to: its own status page says "You are online".
        if self.default_link_orig == "/status":
            return f"{self.base_url}/status"
        return self.default_link_orig or DEFAULT_LINK_ORIG

    def _new_challenge(self) -> tuple[bytes, bytes]:
        challenge = (secrets.token_bytes(1), secrets.token_bytes(16))
        with self._challenge_lock:
            self._challenge = challenge
        return challenge

    def _status(self) -> Response:
        session = self.router.session_for_mac(self.device_mac)
        template = self._router_page("status.html")
        if template is not None:
            page = render_router_page(template, self.page_variables(session))
            if self.status_extra_html and session is not None:
                page = page.replace("</body>", self.status_extra_html + "</body>", 1)
            return Response(page, mimetype="text/html")
        if session is None:
            return _page("Status", "<p>not logged in</p>")
        return _page("Status", f"<p>logged in as {html.escape(session['user'])}</p>")

    def _logout(self) -> Response:
        session = self.router.session_for_mac(self.device_mac)
        self.router.log_out_mac(self.device_mac)
        template = self._router_page("logout.html")
        if template is None:
            return _page("Logged out", "<p>You have been logged out.</p>")
        return Response(render_router_page(template, self.page_variables(session)), mimetype="text/html")

    def _router_page(self, name: str) -> str | None:
        path = self.pages_dir / name if self.pages_dir else None
        return path.read_text(encoding="utf-8") if path is not None and path.is_file() else None

    def page_variables(self, session: Mapping[str, str] | None) -> dict[str, str]:
        """The servlet variables a status/logout page sees for this device (a useful subset)."""
        variables = {
            "identity": self.router.identity,
            "mac": self.device_mac,
            "ip": self.device_ip,
            "link-login": f"{self.login_url}?dst={quote(DEFAULT_LINK_ORIG, safe='')}",
            "link-login-only": self.login_url,
            "link-logout": f"{self.base_url}/logout",
            "link-status": f"{self.base_url}/status",
            "logged-in": "yes" if session else "no",
            "refresh-timeout": "1m",
            "refresh-timeout-secs": "60",
        }
        if session:
            account = self.router.users.get(session["user"], {})
            limit_bytes = str(account.get("limit-bytes-total") or "")
            variables.update(
                {
                    "username": session["user"],
                    "login-by": session.get("login-by", ""),
                    "uptime": session.get("uptime", "0s"),
                    "session-time-left": str(account.get("limit-uptime") or ""),
                    "remain-bytes-total": limit_bytes,
                    "remain-bytes-total-nice": _nice_bytes(limit_bytes),
                    "bytes-in-nice": "0 B",
                    "bytes-out-nice": "0 B",
                }
            )
        return variables


_TOKEN = re.compile(r"\$\(([^)]*)\)")
_CONDITION = re.compile(r"^\s*([\w-]+)\s*(?:(==|!=)\s*'([^']*)')?\s*$")


def render_router_page(template: str, variables: Mapping[str, str]) -> str:
    """Render RouterOS hotspot page syntax: ``$(name)``, ``$(name-esc)``, and nested
    ``$(if name)``/``$(if name == 'v')``, ``$(elif …)``, ``$(else)``, ``$(endif)``.
    Values are inserted as they are, as the router does."""
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch shows, some branch of this if has shown)
    showing = True
    for index, part in enumerate(_TOKEN.split(template)):
        if index % 2 == 0:
            if showing:
                out.append(part)
            continue
        word, _, rest = part.strip().partition(" ")
        parent = all(shown for shown, _ in stack)
        if word == "if":
            hit = parent and _holds(rest, variables)
            stack.append((hit, hit))
        elif word == "elif" and stack:
            _, taken = stack[-1]
            hit = parent_of(stack) and not taken and _holds(rest, variables)
            stack[-1] = (hit, taken or hit)
        elif word == "else" and stack:
            _, taken = stack[-1]
            stack[-1] = (parent_of(stack) and not taken, True)
        elif word == "endif" and stack:
            stack.pop()
        elif parent:
            out.append(_variable(part.strip(), variables))
        showing = all(shown for shown, _ in stack)
    return "".join(out)


def parent_of(stack: list[tuple[bool, bool]]) -> bool:
    return all(shown for shown, _ in stack[:-1])


def _holds(condition: str, variables: Mapping[str, str]) -> bool:
    match = _CONDITION.match(condition)
    if match is None:
        return False
    name, operator, wanted = match.groups()
    value = variables.get(name, "")
    if operator == "==":
        return value == wanted
    if operator == "!=":
        return value != wanted
    return bool(value)


def _variable(name: str, variables: Mapping[str, str]) -> str:
    if name.endswith("-esc") and name not in variables:
        return quote(variables.get(name[:-4], ""), safe="")
    return variables.get(name, "")


def _nice_bytes(raw: str) -> str:
    if not raw.isdigit():
        return ""
    value = int(raw)
    for size, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def _forwarding_page(portal_url: str, params: dict[str, str]) -> Response:
    # Both a meta refresh and an auto-submitted form, so the hand-over works without JavaScript.
    separator = "&" if "?" in portal_url else "?"
    target = html.escape(f"{portal_url}{separator}{urlencode(params)}")
    fields = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in params.items()
    )
    body = (
        f'<form name="redirect" action="{html.escape(portal_url)}" method="get">{fields}'
        '<noscript><button type="submit">Continue</button></noscript></form>'
        "<script>document.redirect.submit();</script>"
    )
    head = f'<meta http-equiv="refresh" content="0; url={target}">'
    return _page("Redirecting", body, head=head)


def _definition_list(params: dict[str, str]) -> str:
    items = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in params.items())
    return f"<dl>{items}</dl>"


def _page(title: str, body: str, *, head: str = "") -> Response:
    document = (
        f'<!doctype html><html><head><meta charset="utf-8">{head}<title>{html.escape(title)}</title>'
        f"</head><body>{body}</body></html>"
    )
    return Response(document, mimetype="text/html")

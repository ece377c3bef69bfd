"""Who is asking: staff sessions from signed cookies, CSRF checks, the chat's rate limit, and
what an anonymous post may be (its content type, its size)."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from itsdangerous import BadSignature, TimestampSigner

from privbot.app import App
from privbot.config import IPNetwork
from privbot.staff import auth

SESSION_COOKIE = "privbot_session"
LOGIN_COOKIE = "privbot_login"  # the login form's CSRF value, before there is a session


class LoginRequired(Exception):
    """No valid staff session: pages redirect to the login form, the API answers 401."""


class CsrfError(Exception):
    """A form came without the token of the session that showed it."""


@dataclass(frozen=True)
class StaffUser:
    email: str
    csrf: str
    token: str


@dataclass
class RateLimiter:
    """At most `limit` calls per `window` seconds per client (a sliding window, in memory).

    Per process: several processes each allow as much; the limit is against one client
    hammering the chat, not an accounting.
    """

    limit: int = 20
    window: float = 60.0
    _calls: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, client: str) -> float:
        """0 if allowed now, else the seconds until the next call is allowed."""
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(client, deque())
            while calls and calls[0] <= now - self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                return calls[0] + self.window - now
            calls.append(now)
            if len(self._calls) > 10_000:  # forget idle clients rather than grow forever
                for key in [k for k, v in self._calls.items() if not v]:
                    del self._calls[key]
            return 0.0


@dataclass(frozen=True)
class WebState:
    """Everything a request handler needs; built once by `create_app`, never global."""

    app: App
    secret: str
    signer: TimestampSigner
    chat_limit: RateLimiter
    public_url: str | None
    secure_cookies: bool


def state(request: Request) -> WebState:
    return request.app.state.web  # type: ignore[no-any-return]


def client_of(request: Request) -> str:
    """The client's address, as the chat limit, the sign-in slow-down and the audit count it."""
    peer = request.client.host if request.client else "unknown"
    trusted = state(request).app.settings.trusted_proxies
    return forwarded_client(peer, request.headers.getlist("x-forwarded-for"), trusted)


def forwarded_client(peer: str, forwarded: list[str], trusted: tuple[IPNetwork, ...]) -> str:
    """The direct peer, unless it is a trusted proxy: then the right-most address of
    X-Forwarded-For that is not a trusted proxy.

    Each proxy appends the address it was reached from, so only the entries our own proxies
    added are true; anything to their left is whatever the client chose to send. An entry
    that is no address (a proxy that writes something else) stops the walk at the last
    address known: every client behind it then shares one limit, rather than choosing its own.
    """
    if not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded for h in value.split(",")]
    client = peer
    for hop in reversed([h for h in hops if h]):
        address = _address(hop)
        if address is None:
            return client
        client = address
        if not _is_trusted(address, trusted):
            return address
    return client  # every hop is a trusted proxy: the left-most is as far as we can see


def _address(hop: str) -> str | None:
    """An X-Forwarded-For entry as a plain address (some proxies add `:port` or brackets)."""
    host = hop
    if hop.startswith("["):
        host = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        host = hop.partition(":")[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _is_trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports an IPv4 proxy as ::ffff:a.b.c.d
    return any(ip in network for network in trusted)


def session_user(request: Request) -> StaffUser | None:
    web = state(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        token = web.signer.unsign(cookie, max_age=auth.SESSION_HOURS * 3600).decode()
    except BadSignature:  # forged, or older than a session may live
        return None
    with web.app.sessions.begin() as session:
        found = auth.session_staff(session, token)
        if found is None:
            return None
        staff, row = found
        return StaffUser(staff.email, row.csrf, token)


def require_staff(request: Request) -> StaffUser:
    """Dependency of every staff page and action."""
    user = session_user(request)
    if user is None:
        raise LoginRequired()
    return user


async def require_staff_form(request: Request) -> StaffUser:
    """Dependency of every staff form: a session AND that session's CSRF token."""
    user = await run_in_threadpool(require_staff, request)
    form = await request.form()
    given = form.get("csrf")
    if not isinstance(given, str) or not hmac.compare_digest(given, user.csrf):
        raise CsrfError()
    return user


def is_json(content_type: str) -> bool:
    """Exactly `application/json`, with at most a charset parameter.

    Any other type a page on another site can post without asking the browser first
    (`text/plain; application/json` passes a substring test), so it must not pass.
    """
    media, *params = content_type.split(";")
    if media.strip().lower() != "application/json":
        return False
    names = [p.partition("=")[0].strip().lower() for p in params if p.strip()]
    return names in ([], ["charset"])


class TooLarge(Exception):
    """The request body is longer than allowed; the rest of it was not read."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read as it arrives and given up on at `limit` bytes (TooLarge).

    Reading it whole first would let one anonymous post of any size fill the memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge()
    return bytes(body)


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


# Route parameters: a staff page (session), a staff form (session and CSRF token).
StaffPage = Annotated[StaffUser, Depends(require_staff)]
StaffForm = Annotated[StaffUser, Depends(require_staff_form)]

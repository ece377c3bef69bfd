"""A provider's OAuth 2.0 endpoints on loopback, for tests: a token endpoint (refresh-token and
client-credentials grants) and an introspection endpoint that Dovecot's `oauth2` passdb and
the capture relay ask whether a bearer token is good.

A real HTTP server (http.server in a thread), so privbot's token client, Dovecot's HTTP
client and the relay all talk HTTP to it as they would to Google or Microsoft. Tokens are
random, short-lived if the test wants, and can be revoked; the endpoint can be told to
refuse (as a provider does a withdrawn grant) or to fail.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Issued:
    """One access token the endpoint handed out."""

    access_token: str
    grant_type: str
    scope: str
    at: float  # time.monotonic()


@dataclass
class _Token:
    user: str
    expires: float  # time.monotonic()
    revoked: bool = False


class OAuthServer:
    """Token endpoint `token_url` and introspection endpoint `introspection_url` on a free
    loopback port, for one client (`client_id`, `client_secret`) and one mailbox (`user`).

    `lifetime` is every new token's expires_in (whole seconds); `rotate=True` hands out a new
    refresh token with each access token, as Microsoft does (the old one stays good).
    Records: `issued` (tokens handed out), `token_requests` (every request's form, secrets
    included, for assertions), `introspections` ((token, active) per question asked).
    """

    def __init__(
        self,
        user: str = "support@junocloud.me",
        client_id: str = "privbot-test",
        client_secret: str = "client-secret-1",
        refresh_token: str = "refresh-token-1",
        lifetime: int = 3600,
        rotate: bool = False,
    ) -> None:
        self.user = user
        self.client_id = client_id
        self.client_secret = client_secret
        self.lifetime = lifetime
        self.rotate = rotate
        self.refresh_tokens: set[str] = {refresh_token}
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._refusal: tuple[int, dict[str, str]] | None = None
        self.issued: list[Issued] = []
        self.token_requests: list[dict[str, str]] = []
        self.request_times: list[float] = []  # time.monotonic() of each token request
        self.introspections: list[tuple[str, bool]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> OAuthServer:
        server = ThreadingHTTPServer((LOCALHOST, 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def token_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}/token"

    @property
    def introspection_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}/introspect"

    def settings(self, **extra: str) -> dict[str, str]:
        """PRIVBOT_OAUTH_* for this provider, as `testing.apps.make_app` keywords (no prefix,
        lower case): the client-credentials grant, unless `extra` names a refresh token."""
        values = {
            "oauth_token_endpoint": self.token_url,
            "oauth_client_id": self.client_id,
            "oauth_client_secret": self.client_secret,
            "oauth_scopes": "https://mail.google.com/",
        }
        values.update(extra)
        return values

    # -- what a test does to it ---------------------------------------------------------

    def revoke(self, access_token: str) -> None:
        """The token is dead from now on (a user or admin withdrew it)."""
        with self._lock:
            self._tokens[access_token].revoked = True

    def revoke_all(self) -> None:
        with self._lock:
            for token in self._tokens.values():
                token.revoked = True

    def refuse(
        self, status: int = 400, error: str = "invalid_grant",
        description: str = "Token has been expired or revoked.",
    ) -> None:  # fmt: skip
        """Answer every token request with `status` and this OAuth error until `accept()`."""
        with self._lock:
            self._refusal = (status, {"error": error, "error_description": description})

    def accept(self) -> None:
        with self._lock:
            self._refusal = None

    def active(self, access_token: str) -> bool:
        with self._lock:
            token = self._tokens.get(access_token)
            return token is not None and not token.revoked and time.monotonic() < token.expires

    def tokens_issued(self) -> list[str]:
        with self._lock:
            return [i.access_token for i in self.issued]

    def introspected(self) -> list[tuple[str, bool]]:
        with self._lock:
            return list(self.introspections)

    # -- the endpoints ------------------------------------------------------------------

    def _token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, Any]:
        with self._lock:
            self.token_requests.append(dict(form))
            self.request_times.append(time.monotonic())
            if self._refusal is not None:
                return self._refusal
            client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
            if client_id != self.client_id:
                return 401, {"error": "invalid_client", "error_description": "unknown client"}
            grant = form.get("grant_type", "")
            if grant == "client_credentials":
                if secret != self.client_secret:
                    return 401, {"error": "invalid_client", "error_description": "bad secret"}
            elif grant == "refresh_token":
                # A public client (no secret) may refresh; a wrong secret is still refused.
                if secret is not None and secret != self.client_secret:
                    return 401, {"error": "invalid_client", "error_description": "bad secret"}
                if form.get("refresh_token") not in self.refresh_tokens:
                    return 400, {"error": "invalid_grant", "error_description": "bad token"}
            else:
                return 400, {"error": "unsupported_grant_type"}
            access = "at-" + secrets.token_urlsafe(24)
            now = time.monotonic()
            self._tokens[access] = _Token(self.user, now + self.lifetime)
            self.issued.append(Issued(access, grant, form.get("scope", ""), now))
            answer: dict[str, Any] = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.lifetime,
                "scope": form.get("scope", ""),
            }
            if grant == "refresh_token" and self.rotate:
                new = "refresh-token-" + secrets.token_urlsafe(8)
                self.refresh_tokens.add(new)
                answer["refresh_token"] = new
            return 200, answer

    def _introspect(self, access_token: str) -> tuple[int, Any]:
        active = self.active(access_token)
        with self._lock:
            self.introspections.append((access_token, active))
            user = self._tokens[access_token].user if active else None
        if not active:
            return 401, {"active": False}
        return 200, {"active": True, "username": user, "scope": "mail"}


def _handler(provider: OAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Dovecot's HTTP client expects
        disable_nagle_algorithm = True  # headers and body in separate writes: no 40 ms stall

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/token":
                self._answer(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
            self._answer(*provider._token(form, _basic(self.headers.get("Authorization"))))

        def do_GET(self) -> None:
            # Dovecot's introspection_mode = auth: GET with `Authorization: Bearer TOKEN`.
            if self.path.split("?")[0] != "/introspect":
                self._answer(404, {"error": "not found"})
                return
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                self._answer(401, {"active": False})
                return
            self._answer(*provider._introspect(token.strip()))

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the records above say what happened; stderr stays quiet

    return Handler


def _basic(header: str | None) -> tuple[str, str] | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    user, _, password = base64.b64decode(value).decode().partition(":")
    return unquote(user), unquote(password)


def introspect(url: str, access_token: str, timeout: float = 5.0) -> str | None:
    """Ask an introspection endpoint as Dovecot does: the token's user if active, else None."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {access_token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError:
        return None
    if isinstance(data, dict) and data.get("active") is True:
        return str(data.get("username") or "") or None
    return None

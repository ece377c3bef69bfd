"""OAuth 2.0 for IMAP and SMTP: access tokens from the provider, XOAUTH2 and OAUTHBEARER logins.

Google Workspace and Microsoft 365 no longer take passwords over IMAP and SMTP. privbot asks
the provider's token endpoint for an access token (through Authlib), with a refresh token
the mailbox's owner granted once or with the client-credentials grant of an app an admin
consented to, and logs in with it. Access tokens live only in this process's memory: they
are asked for again shortly before they expire, and at once when a server refuses one (it
may have been revoked), after which the login is tried once more.

A provider may hand out a new refresh token with each access token (Microsoft does, and its
refresh tokens die 90 days after they were issued): the newest is kept in memory and written
back to PRIVBOT_OAUTH_REFRESH_TOKEN_FILE, so a restart months later still has a live one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import smtplib
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from privbot.config import Settings

log = logging.getLogger(__name__)

MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
# A token is renewed this long before it expires (at most a quarter of its life), so a
# login never carries one that dies on the way.
RENEW_MARGIN_SECONDS = 60.0


class TokenError(Exception):
    """No access token. The message names the token endpoint and, where it answered, its HTTP
    status and OAuth error; never a secret or a token."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refused(self) -> bool:
        """The endpoint said no (4xx): the credentials are wrong or withdrawn, and asking
        again in a few seconds will not help (a 5xx or a network fault may)."""
        return self.status is not None and 400 <= self.status < 500


class LoginRefused(Exception):
    """The mail server refused a token fresh from the endpoint too: the grant lacks the
    scope, or the mailbox is not open to this client. Not fixed by asking again soon."""


@dataclass
class _State:
    """What a TokenSource learns as it runs; only ever touched under `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    access_token: str | None = None
    renew_at: float = 0.0  # time.monotonic(): wall-clock jumps must not keep a dead token
    refresh_token: str | None = None  # the newest, when the provider rotated it
    client: OAuth2Session | None = None
    obtained: int = 0  # access tokens obtained so far (logs, tests)
    save_failed: bool = False  # the rotated refresh token could not be written: said once


@dataclass(frozen=True)
class TokenSource:
    """Access tokens for one OAuth client and grant, shared by the IMAP watcher and the
    outbox sender (one request serves both). Built from settings by `from_settings`."""

    endpoint: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    # Where the refresh token came from: a rotated one is written back there.
    refresh_token_file: Path | None = None
    scopes: tuple[str, ...] = ()
    mechanism: str = "XOAUTH2"
    timeout: float = 30.0
    _state: _State = field(default_factory=_State, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenSource | None:
        """The token source PRIVBOT_OAUTH_* describe; None where OAuth is not configured."""
        if settings.oauth_token_endpoint is None:
            return None
        file = settings.oauth_refresh_token_file
        return cls(
            endpoint=settings.oauth_token_endpoint,
            client_id=settings.oauth_client_id or "",
            client_secret=settings.oauth_client_secret,
            refresh_token=settings.oauth_refresh_token,
            refresh_token_file=Path(file) if file else None,
            scopes=settings.oauth_scopes,
            mechanism=settings.oauth_mechanism,
        )

    @property
    def grant(self) -> str:
        return "refresh_token" if self.refresh_token else "client_credentials"

    @property
    def obtained(self) -> int:
        """How many access tokens this source has obtained."""
        return self._state.obtained

    def token(self) -> str:
        """A live access token: the one in memory, or a new one shortly before it expires."""
        state = self._state
        with state.lock:
            if state.access_token is None or time.monotonic() >= state.renew_at:
                self._obtain(state)
            assert state.access_token is not None
            return state.access_token

    def renew(self, rejected: str) -> str:
        """A new access token after a server refused `rejected` (revoked, or expired early);
        the current one if another login already renewed it meanwhile."""
        state = self._state
        with state.lock:
            if state.access_token in (None, rejected):
                self._obtain(state)
            assert state.access_token is not None
            return state.access_token

    def close(self) -> None:
        state = self._state
        with state.lock:
            client, state.client = state.client, None
            state.access_token = None
        if client is not None:
            client.close()

    # -- the token endpoint -------------------------------------------------------------

    def _client(self, state: _State) -> OAuth2Session:
        if state.client is None:
            # Both Google and Microsoft document the secret in the form body.
            client = OAuth2Session(
                client_id=self.client_id,
                client_secret=self.client_secret,
                token_endpoint_auth_method="client_secret_post" if self.client_secret else "none",
                scope=" ".join(self.scopes) or None,
                default_timeout=self.timeout,
            )
            # Authlib turns a 4xx into an OAuthError without its status; staff need both.
            client.register_compliance_hook("access_token_response", self._check_response)
            client.register_compliance_hook("refresh_token_response", self._check_response)
            state.client = client
        return state.client

    def _obtain(self, state: _State) -> None:
        client = self._client(state)
        started = time.monotonic()
        try:
            if self.refresh_token:
                token = client.refresh_token(
                    self.endpoint, refresh_token=state.refresh_token or self.refresh_token
                )
            else:
                token = client.fetch_token(self.endpoint, grant_type="client_credentials")
        except TokenError as exc:
            log.error("%s", exc)
            raise
        except requests.RequestException as exc:
            error = TokenError(f"{self._what()} unreachable: {type(exc).__name__}: {exc}"[:300])
            log.error("%s", error)
            raise error from None
        except (OAuthError, ValueError, TypeError) as exc:
            error = TokenError(f"{self._what()} gave no usable answer: {exc}"[:300])
            log.error("%s", error)
            raise error from None
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            error = TokenError(f"{self._what()} answered without an access_token")
            log.error("%s", error)
            raise error
        state.access_token = access
        state.renew_at = started + _lifetime_left(token.get("expires_in"))
        state.obtained += 1
        self._keep_refresh_token(state, token.get("refresh_token"))
        life = token.get("expires_in")
        log.info("oauth: new access token from %s (%s)", self.endpoint,
                 f"valid {life} s" if life else "no expiry given")  # fmt: skip

    def _what(self) -> str:
        return f"OAuth token endpoint {self.endpoint} ({self.grant.replace('_', ' ')} grant)"

    def _check_response(self, response: requests.Response) -> requests.Response:
        if response.status_code < 400:
            return response
        detail = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = str(body.get("error") or "")
            description = str(body.get("error_description") or "")
            detail = f" {error}" if error else ""
            detail += f" ({description})" if description else ""
        verb = "refused the request" if response.status_code < 500 else "failed"
        raise TokenError(
            f"{self._what()} {verb}: HTTP {response.status_code}{detail}"[:400],
            status=response.status_code,
        )

    def _keep_refresh_token(self, state: _State, new: object) -> None:
        if not self.refresh_token or not isinstance(new, str) or not new:
            return
        if new == (state.refresh_token or self.refresh_token):
            return
        state.refresh_token = new
        if self.refresh_token_file is None:
            return
        try:
            _replace_file(self.refresh_token_file, new)
        except OSError as exc:
            if not state.save_failed:
                state.save_failed = True
                log.warning(
                    "oauth: the provider sent a new refresh token but %s cannot be written "
                    "(%s): it is kept in memory only, and a restart uses the file's older one",
                    self.refresh_token_file, exc.strerror or exc,
                )  # fmt: skip


def _lifetime_left(expires_in: object) -> float:
    """Seconds from the request until the token should be renewed."""
    try:
        life = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.inf  # no expiry given: used until a server refuses it
    if life <= 0:
        return 0.0
    return life - min(RENEW_MARGIN_SECONDS, life / 4)


def _replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all, keeping its mode (0600 if new)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- SASL ---------------------------------------------------------------------------------


def xoauth2(user: str, token: str) -> str:
    """Google's and Microsoft's XOAUTH2 initial response (before base64)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def oauthbearer(user: str, token: str) -> str:
    """RFC 7628 OAUTHBEARER initial response, with the user as authorization identity."""
    saslname = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={saslname},\x01auth=Bearer {token}\x01\x01"


def imap_login(client: IMAPClient, user: str, tokens: TokenSource) -> None:
    """Log in with an access token (imapclient's oauth2_login / oauthbearer_login); once
    more with a new token if the server refuses it. LoginRefused if it refuses that too."""
    token = tokens.token()
    try:
        _imap_authenticate(client, user, token, tokens.mechanism)
        return
    except LoginError as exc:
        log.info("imap: %s login as %s refused (%s); trying a new token", tokens.mechanism,
                 user, _short(exc))  # fmt: skip
    token = tokens.renew(token)
    try:
        _imap_authenticate(client, user, token, tokens.mechanism)
    except LoginError as exc:
        raise LoginRefused(
            f"IMAP server refused the {tokens.mechanism} login as {user}, with a new access "
            f"token too: {_short(exc)}"
        ) from exc


def _imap_authenticate(client: IMAPClient, user: str, token: str, mechanism: str) -> None:
    if mechanism == "OAUTHBEARER":
        client.oauthbearer_login(user, token)
    else:
        client.oauth2_login(user, token)


def smtp_login(conn: smtplib.SMTP, user: str, tokens: TokenSource) -> None:
    """`AUTH XOAUTH2` (or OAUTHBEARER) with an access token; once more with a new token if
    the relay refuses it. LoginRefused if it refuses that too, or offers no such AUTH."""
    conn.ehlo_or_helo_if_needed()
    offered = (conn.esmtp_features.get("auth") or "").upper().split()
    if tokens.mechanism not in offered:
        raise LoginRefused(
            f"the relay does not offer AUTH {tokens.mechanism} (it offers: "
            f"{' '.join(offered) or 'no AUTH'}); STARTTLS first? (?starttls=1)"
        )
    token = tokens.token()
    try:
        conn.auth(tokens.mechanism, _SmtpResponder(tokens.mechanism, user, token))
        return
    except smtplib.SMTPAuthenticationError as exc:
        log.info("smtp: %s login as %s refused (%s); trying a new token", tokens.mechanism,
                 user, _smtp_reply(exc))  # fmt: skip
    token = tokens.renew(token)
    responder = _SmtpResponder(tokens.mechanism, user, token)
    try:
        conn.auth(tokens.mechanism, responder)
    except smtplib.SMTPAuthenticationError as exc:
        why = f" ({responder.error})" if responder.error else ""
        raise LoginRefused(
            f"relay refused the {tokens.mechanism} login as {user}, with a new access token "
            f"too: {_smtp_reply(exc)}{why}"
        ) from exc


class _SmtpResponder:
    """smtplib's `authobject`: the initial response, then, to the server's error challenge
    (a JSON status, RFC 7628 3.2.2), the empty (XOAUTH2) or %x01 (OAUTHBEARER) answer that
    lets it reply 535."""

    def __init__(self, mechanism: str, user: str, token: str) -> None:
        self.mechanism = mechanism
        self.initial = (
            oauthbearer(user, token) if mechanism == "OAUTHBEARER" else xoauth2(user, token)
        )
        self.error: str | None = None

    def __call__(self, challenge: bytes | None = None) -> str:
        if challenge is None:
            return self.initial
        self.error = _json_status(challenge)
        return "\x01" if self.mechanism == "OAUTHBEARER" else ""


def _json_status(challenge: bytes) -> str:
    try:
        data: Any = json.loads(challenge)
    except ValueError:
        return challenge.decode("utf-8", "replace")[:200]
    if isinstance(data, dict):
        return ", ".join(f"{k} {v}" for k, v in data.items())[:200]
    return str(data)[:200]


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    text = (
        exc.smtp_error.decode("utf-8", "replace")
        if isinstance(exc.smtp_error, bytes)
        else str(exc.smtp_error)
    )
    return f"{exc.smtp_code} {text}".strip()


def _short(exc: BaseException) -> str:
    return str(exc)[:300]

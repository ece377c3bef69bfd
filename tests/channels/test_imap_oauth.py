"""OAuth 2.0 against a real Dovecot (its oauth2 passdb asks our loopback provider about each
token): XOAUTH2 and OAUTHBEARER logins for IMAP and SMTP, expiry, revocation, a refusing
token endpoint, a server that refuses fresh tokens too."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from privbot.app import App
from privbot.channels.imap import ImapWatcher
from privbot.models import Message
from privbot.serve import Service
from testing.apps import mail, make_app, wait_until
from testing.oauth import OAuthServer
from testing.servers import CaptureRelay, Dovecot

USER = "support@junocloud.me"


@pytest.fixture
def oauth_relay(oauth_server: OAuthServer) -> Iterator[CaptureRelay]:
    """A relay that takes only AUTH XOAUTH2/OAUTHBEARER, checked with `oauth_server`."""
    with CaptureRelay(oauth=(USER, oauth_server.introspection_url)) as relay:
        yield relay


def oauth_app(sqlite_url: str, dovecot: Dovecot, server: OAuthServer, **env: str) -> App:
    return make_app(sqlite_url, imap_url=dovecot.oauth_imap_url(), **server.settings(**env))


class Watching:
    """An ImapWatcher on its own thread, stopped at the end."""

    def __init__(self, app: App, auth_backoff: float | None = None) -> None:
        self.watcher = ImapWatcher(app)
        if auth_backoff is not None:
            self.watcher.auth_backoff = auth_backoff
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.thread.join(timeout=30)


def handled(app: App) -> int:
    with app.sessions() as s:
        return len(s.query(Message).filter(Message.status == "handled").all())


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_mail_in_by_imap_and_reply_out_by_smtp_with_one_token(
    sqlite_url: str,
    oauth_dovecot: Dovecot,
    oauth_server: OAuthServer,
    oauth_relay: CaptureRelay,
    mechanism: str,
) -> None:
    app = oauth_app(
        sqlite_url, oauth_dovecot, oauth_server, smtp_url=oauth_relay.url,
        oauth_refresh_token="refresh-token-1", oauth_mechanism=mechanism,
    )  # fmt: skip
    service = Service(app).start()
    try:
        oauth_dovecot.deliver(mail(sender="olga@example.org", message_id="olga1@x"))
        [reply] = oauth_relay.wait_for(1, timeout=30)
        assert reply["To"] == "olga@example.org" and reply["In-Reply-To"] == "<olga1@x>"
    finally:
        service.stop()
        app.close()
    log = oauth_dovecot.log_path.read_text()
    assert f"user=<{USER}>, method={mechanism}" in log  # Dovecot's own word
    assert oauth_relay.auth_attempts == [(USER, True)]
    # The watcher and the sender shared one access token, from the refresh-token grant.
    [issued] = oauth_server.issued
    assert issued.grant_type == "refresh_token" and issued.scope == "https://mail.google.com/"
    assert set(oauth_server.introspected()) == {(issued.access_token, True)}


def test_an_expired_token_is_never_presented(
    sqlite_url: str, oauth_dovecot: Dovecot, oauth_server: OAuthServer
) -> None:
    oauth_server.lifetime = 3
    app = oauth_app(sqlite_url, oauth_dovecot, oauth_server)
    watching = Watching(app)
    try:
        oauth_dovecot.deliver(mail(sender="pia@example.org"))
        wait_until(lambda: handled(app) == 1, timeout=30, what="first message")
        first = oauth_server.tokens_issued()[0]
        wait_until(lambda: not oauth_server.active(first), what="the first token expired")
        oauth_dovecot.restart()  # the watcher must log in again, long after its token died
        oauth_dovecot.deliver(mail(sender="quinn@example.org"))
        wait_until(lambda: handled(app) == 2, timeout=30, what="second message")
    finally:
        watching.stop()
        app.close()
    issued = oauth_server.tokens_issued()
    assert len(issued) >= 2
    # Every token Dovecot was shown was alive: renewed before expiry, not after a refusal.
    assert all(active for _, active in oauth_server.introspected())
    assert {token for token, _ in oauth_server.introspected()} - {first} <= set(issued[1:])


def test_a_revoked_token_is_replaced_and_the_login_tried_once_more(
    sqlite_url: str,
    oauth_dovecot: Dovecot,
    oauth_server: OAuthServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = oauth_app(sqlite_url, oauth_dovecot, oauth_server)
    watching = Watching(app)
    try:
        wait_until(watching.watcher.connected.is_set, timeout=30, what="first login")
        [first] = oauth_server.tokens_issued()
        oauth_server.revoke(first)  # an admin withdrew it; privbot still holds it
        with caplog.at_level(logging.INFO, "privbot"):
            oauth_dovecot.restart()
            oauth_dovecot.deliver(mail(sender="rosa@example.org"))
            wait_until(lambda: handled(app) == 1, timeout=40, what="the message after revoke")
    finally:
        watching.stop()
        app.close()
    issued = oauth_server.tokens_issued()
    assert len(issued) == 2
    seen = oauth_server.introspected()
    assert (first, False) in seen
    assert seen.index((first, False)) < seen.index((issued[1], True))
    assert any("refused" in r.getMessage() and "trying a new token" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_refusing_token_endpoint_is_reported_and_waited_out(
    sqlite_url: str,
    oauth_dovecot: Dovecot,
    oauth_server: OAuthServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    oauth_server.refuse(400, "invalid_grant", "Token has been expired or revoked.")
    app = oauth_app(sqlite_url, oauth_dovecot, oauth_server, oauth_refresh_token="refresh-token-1")
    oauth_dovecot.deliver(mail(sender="sven@example.org"))
    with caplog.at_level(logging.INFO, "privbot"):
        watching = Watching(app, auth_backoff=1.0)
        try:
            wait_until(lambda: len(oauth_server.request_times) >= 2, what="two token requests")
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert errors[0] == (
                f"OAuth token endpoint {oauth_server.token_url} (refresh token grant) "
                "refused the request: HTTP 400 invalid_grant (Token has been expired or revoked.)"
            )
            # A refusal is not hammered: the next request waits the auth backoff.
            first, second = oauth_server.request_times[:2]
            assert second - first >= 0.9
            assert not watching.watcher.connected.is_set()
            assert "method=XOAUTH2" not in oauth_dovecot.log_path.read_text()  # never tried
            oauth_server.accept()  # the grant is back (e.g. consent given again)
            wait_until(lambda: handled(app) == 1, timeout=30, what="mail once it works")
        finally:
            watching.stop()
            app.close()
    assert any("imap: no access token; trying again in 1.0s" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_a_server_that_refuses_fresh_tokens_too_is_an_error_not_a_loop(
    sqlite_url: str,
    oauth_dovecot: Dovecot,
    oauth_server: OAuthServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The tokens are for another mailbox (the grant was made by the wrong user): Dovecot's
    # oauth2 passdb refuses them, however fresh.
    oauth_server.user = "someone.else@junocloud.me"
    app = oauth_app(sqlite_url, oauth_dovecot, oauth_server)
    with caplog.at_level(logging.INFO, "privbot"):
        watching = Watching(app, auth_backoff=60.0)
        try:
            wait_until(
                lambda: any(r.levelno == logging.ERROR for r in caplog.records),
                timeout=40, what="an error",
            )  # fmt: skip
            time.sleep(1.0)
            assert len(oauth_server.tokens_issued()) == 2  # the first, one fresh; then waits
        finally:
            watching.stop()
            app.close()
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error.startswith(
        f"imap: IMAP server refused the XOAUTH2 login as {USER}, with a new access token too: "
    )
    assert "AUTHENTICATIONFAILED" in error and error.endswith("; trying again in 60s")

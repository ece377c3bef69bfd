"""The outbox's `AUTH XOAUTH2` / OAUTHBEARER against a relay that checks each token with a real
introspection endpoint: login, revocation, a refusing token endpoint, a relay without it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from privbot import pipeline
from privbot.app import App
from privbot.models import Outgoing
from privbot.outbox import sender
from testing.apps import mail, make_app, send_one
from testing.oauth import OAuthServer
from testing.servers import CaptureRelay

USER = "support@junocloud.me"


@pytest.fixture
def oauth_relay(oauth_server: OAuthServer) -> Iterator[CaptureRelay]:
    with CaptureRelay(oauth=(USER, oauth_server.introspection_url)) as relay:
        yield relay


def _app(sqlite_url: str, relay: CaptureRelay, server: OAuthServer, **env: str) -> App:
    return make_app(sqlite_url, smtp_url=relay.url, retry_seconds="0.05", **server.settings(**env))


def _mailer(app: App) -> sender.Mailer:
    assert app.settings.smtp is not None
    return sender.Mailer(app.settings.smtp, timeout=5, tokens=app.tokens)


def _queue(app: App, who: str) -> int:
    out = pipeline.receive(app, mail(sender=who), source="file")
    assert out.reply is not None
    return out.reply


def _row(app: App, outbox_id: int) -> Outgoing:
    with app.sessions() as s:
        row = s.get(Outgoing, outbox_id)
        assert row is not None
        return row


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_replies_go_out_with_an_access_token(
    sqlite_url: str, oauth_relay: CaptureRelay, oauth_server: OAuthServer, mechanism: str
) -> None:
    app = _app(sqlite_url, oauth_relay, oauth_server, oauth_mechanism=mechanism)
    first, second = _queue(app, "tara@example.org"), _queue(app, "uma@example.org")
    mailer = _mailer(app)
    assert send_one(app, mailer) and send_one(app, mailer)
    mailer.close()
    assert {_row(app, first).status, _row(app, second).status} == {"sent"}
    assert sorted(m["To"] for m in oauth_relay.wait_for(2)) == [
        "tara@example.org", "uma@example.org",
    ]  # fmt: skip
    assert oauth_relay.auth_attempts == [(USER, True)]  # one connection, one login
    assert len(oauth_server.tokens_issued()) == 1
    app.close()


def test_a_revoked_token_is_replaced_within_the_same_send(
    sqlite_url: str, oauth_relay: CaptureRelay, oauth_server: OAuthServer
) -> None:
    app = _app(sqlite_url, oauth_relay, oauth_server)
    mailer = _mailer(app)
    _queue(app, "vera@example.org")
    assert send_one(app, mailer)
    mailer.close()
    oauth_server.revoke_all()
    reply = _queue(app, "wim@example.org")
    assert send_one(app, mailer)
    mailer.close()
    row = _row(app, reply)
    assert row.status == "sent" and row.attempts == 1  # no deferral: renewed and retried once
    assert oauth_relay.auth_attempts == [(USER, True), (USER, False), (USER, True)]
    assert len(oauth_server.tokens_issued()) == 2
    app.close()


def test_a_refusing_token_endpoint_defers_the_reply_with_a_clear_error(
    sqlite_url: str, oauth_relay: CaptureRelay, oauth_server: OAuthServer
) -> None:
    oauth_server.refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
    app = _app(sqlite_url, oauth_relay, oauth_server)
    reply = _queue(app, "xena@example.org")
    mailer = _mailer(app)
    send_one(app, mailer)
    row = _row(app, reply)
    assert row.status == "pending" and row.attempts == 1  # retried later, not failed
    assert row.last_error == (
        f"OAuth token endpoint {oauth_server.token_url} (client credentials grant) refused the "
        "request: HTTP 401 invalid_client (AADSTS7000215: Invalid client secret provided.)"
    )
    assert oauth_relay.auth_attempts == [] and not oauth_relay.messages
    oauth_server.accept()
    time.sleep(0.1)  # past the 0.05 s retry
    assert send_one(app, mailer)
    mailer.close()
    assert _row(app, reply).status == "sent"
    app.close()


def test_a_relay_refusing_fresh_tokens_too_defers_with_its_answer(
    sqlite_url: str, oauth_relay: CaptureRelay, oauth_server: OAuthServer
) -> None:
    oauth_server.user = "someone.else@junocloud.me"  # tokens for another mailbox
    app = _app(sqlite_url, oauth_relay, oauth_server)
    reply = _queue(app, "yann@example.org")
    mailer = _mailer(app)
    send_one(app, mailer)
    row = _row(app, reply)
    assert row.status == "pending"
    assert row.last_error is not None and row.last_error.startswith(
        f"relay refused the XOAUTH2 login as {USER}, with a new access token too: 535 5.7.8 "
    )
    assert "status invalid_token" in row.last_error  # the relay's JSON error challenge
    assert len(oauth_server.tokens_issued()) == 2
    app.close()


def test_a_relay_without_the_mechanism_is_named(
    sqlite_url: str, relay: CaptureRelay, oauth_server: OAuthServer
) -> None:
    # An ordinary relay (no AUTH offered at all over plain text) given an OAuth URL.
    url = relay.url.replace("smtp://", f"smtp://{USER.replace('@', '%40')}@")
    app = make_app(sqlite_url, smtp_url=url, **oauth_server.settings())
    reply = _queue(app, "zoe@example.org")
    mailer = _mailer(app)
    send_one(app, mailer)
    error = _row(app, reply).last_error
    assert error is not None and error.startswith("the relay does not offer AUTH XOAUTH2")
    assert oauth_server.tokens_issued() == []  # no token asked for in vain
    app.close()

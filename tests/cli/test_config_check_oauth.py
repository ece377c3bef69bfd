"""`privbot config check` with OAuth 2.0: the IMAP login and the relay's AUTH tried with a real
access token against Dovecot's oauth2 passdb; a refusing token endpoint named, with its
HTTP status, as the failure; the endpoint shown, the secrets masked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.apps import make_app
from testing.oauth import OAuthServer
from testing.servers import CaptureRelay, Dovecot
from tests.cli.test_config_check import _checks, _settings
from tests.cli.test_main import privbot

USER = "support@junocloud.me"


@pytest.fixture
def oauth_relay(oauth_server: OAuthServer) -> Iterator[CaptureRelay]:
    with CaptureRelay(oauth=(USER, oauth_server.introspection_url)) as relay:
        yield relay


def _env(sqlite_url: str, dovecot: Dovecot, relay: CaptureRelay, server: OAuthServer,
         secret_file: Path) -> dict[str, str]:  # fmt: skip
    secret_file.write_text(server.client_secret + "\n")
    secret_file.chmod(0o600)
    return {
        "PRIVBOT_DATABASE_URL": sqlite_url,
        "PRIVBOT_IMAP_URL": dovecot.oauth_imap_url(),
        "PRIVBOT_SMTP_URL": relay.url,
        "PRIVBOT_OAUTH_TOKEN_ENDPOINT": server.token_url,
        "PRIVBOT_OAUTH_CLIENT_ID": server.client_id,
        "PRIVBOT_OAUTH_CLIENT_SECRET_FILE": str(secret_file),
        "PRIVBOT_OAUTH_REFRESH_TOKEN": "refresh-token-1",
        "PRIVBOT_OAUTH_SCOPES": "https://mail.google.com/",
    }


def test_oauth_logins_are_tried(
    sqlite_url: str,
    oauth_dovecot: Dovecot,
    oauth_relay: CaptureRelay,
    oauth_server: OAuthServer,
    tmp_path: Path,
) -> None:
    make_app(sqlite_url).close()
    env = _env(sqlite_url, oauth_dovecot, oauth_relay, oauth_server, tmp_path / "secret")
    result = privbot("config", "check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    for secret in (oauth_server.client_secret, "refresh-token-1", *oauth_server.tokens_issued()):
        assert secret not in out
    settings = _settings(result.stdout)
    assert settings["PRIVBOT_OAUTH_TOKEN_ENDPOINT"] == ("environment", oauth_server.token_url)
    assert settings["PRIVBOT_OAUTH_CLIENT_SECRET_FILE"] == ("environment", str(tmp_path / "secret"))
    assert settings["PRIVBOT_OAUTH_REFRESH_TOKEN"] == ("environment", "***")
    checks = _checks(result.stdout)
    assert checks["imap"][0] == "ok" and f"logged in as {USER}" in checks["imap"][1]
    assert checks["smtp"] == (
        "ok",
        f"relay 127.0.0.1:{oauth_relay.port}: EHLO, no TLS, AUTH XOAUTH2 as {USER} with an "
        "access token, SMTPUTF8 offered; no mail sent",
    )
    assert f"user=<{USER}>, method=XOAUTH2" in oauth_dovecot.log_path.read_text()
    assert oauth_relay.auth_attempts == [(USER, True)] and oauth_relay.messages == []


def test_a_refusing_token_endpoint_fails_both_checks_by_name(
    sqlite_url: str,
    oauth_dovecot: Dovecot,
    oauth_relay: CaptureRelay,
    oauth_server: OAuthServer,
    tmp_path: Path,
) -> None:
    make_app(sqlite_url).close()
    oauth_server.refuse(400, "invalid_grant", "Token has been expired or revoked.")
    env = _env(sqlite_url, oauth_dovecot, oauth_relay, oauth_server, tmp_path / "secret")
    result = privbot("config", "check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    why = (
        f"OAuth token endpoint {oauth_server.token_url} (refresh token grant) refused the "
        "request: HTTP 400 invalid_grant (Token has been expired or revoked.)"
    )
    checks = _checks(result.stdout)
    assert checks["imap"] == ("FAIL", why)
    assert checks["smtp"] == ("FAIL", why)
    assert checks["database"][0] == "ok"
    assert "imap, smtp failed" in result.stderr

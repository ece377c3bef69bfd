"""`privbot serve` as a real process with OAuth 2.0 from its environment and secret files:
mail in from Dovecot by XOAUTH2, the reply out by AUTH XOAUTH2, the provider's rotated refresh
token saved; and a refusing token endpoint named in the log while the process keeps running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.apps import mail, serve_env, wait_until
from testing.oauth import OAuthServer
from testing.servers import CaptureRelay, Dovecot, free_port

USER = "support@junocloud.me"


@pytest.fixture
def oauth_relay(oauth_server: OAuthServer) -> Iterator[CaptureRelay]:
    with CaptureRelay(oauth=(USER, oauth_server.introspection_url)) as relay:
        yield relay


def _secret(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "privbot", "serve"],
            env={**os.environ, **env}, stdout=out, stderr=out,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_serve_with_oauth_from_files(
    sqlite_url: str,
    oauth_dovecot: Dovecot,
    oauth_server: OAuthServer,
    oauth_relay: CaptureRelay,
    tmp_path: Path,
) -> None:
    oauth_server.rotate = True
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    refresh_file = _secret(secrets, "refresh-token", "refresh-token-1")
    env = serve_env(
        sqlite_url,
        imap_url=oauth_dovecot.oauth_imap_url(),
        smtp_url=oauth_relay.url,
        web=f"127.0.0.1:{free_port()}",
        oauth_token_endpoint=oauth_server.token_url,
        oauth_client_id=oauth_server.client_id,
        oauth_client_secret_file=_secret(secrets, "client-secret", oauth_server.client_secret),
        oauth_refresh_token_file=refresh_file,
        oauth_scopes="https://mail.google.com/",
    )
    log = tmp_path / "serve.log"
    proc = _serve(env, log)
    try:
        oauth_dovecot.deliver(mail(sender="ada@example.org", message_id="ada1@x"))
        [reply] = oauth_relay.wait_for(1, timeout=60)
    finally:
        code = _stop(proc)
    text = log.read_text()
    assert code == 0, text
    assert reply["In-Reply-To"] == "<ada1@x>"
    assert (
        f"OAuth XOAUTH2 (refresh_token) from {oauth_server.token_url}" in text
    )  # the start-up line
    assert f"user=<{USER}>, method=XOAUTH2" in oauth_dovecot.log_path.read_text()
    assert oauth_relay.auth_attempts == [(USER, True)]
    # The provider rotated the refresh token: the file now holds the new one.
    saved = Path(refresh_file).read_text().strip()
    assert saved != "refresh-token-1" and saved in oauth_server.refresh_tokens
    # No secret or token in the log.
    for secret in (oauth_server.client_secret, "refresh-token-1", saved,
                   *oauth_server.tokens_issued()):  # fmt: skip
        assert secret not in text
    assert "Traceback" not in text


def test_serve_names_a_refusing_token_endpoint_and_keeps_running(
    sqlite_url: str,
    oauth_dovecot: Dovecot,
    oauth_server: OAuthServer,
    oauth_relay: CaptureRelay,
    tmp_path: Path,
) -> None:
    oauth_server.refuse(400, "invalid_grant", "Token has been expired or revoked.")
    env = serve_env(
        sqlite_url,
        imap_url=oauth_dovecot.oauth_imap_url(),
        smtp_url=oauth_relay.url,
        web=f"127.0.0.1:{free_port()}",
        oauth_token_endpoint=oauth_server.token_url,
        oauth_client_id=oauth_server.client_id,
        oauth_refresh_token="refresh-token-1",
    )
    log = tmp_path / "serve.log"
    proc = _serve(env, log)
    expected = (
        f"OAuth token endpoint {oauth_server.token_url} (refresh token grant) refused the "
        "request: HTTP 400 invalid_grant (Token has been expired or revoked.)"
    )
    try:
        wait_until(lambda: expected in log.read_text(), timeout=60, what="the error in the log")
        time.sleep(1.0)
        assert proc.poll() is None  # still serving: the grant may be given back
        assert len(oauth_server.token_requests) == 1  # and waiting, not hammering
    finally:
        code = _stop(proc)
    text = log.read_text()
    assert code == 0, text
    assert "ERROR" in next(line for line in text.splitlines() if expected in line)
    assert "Traceback" not in text

"""The OAuth token source (privbot/mail/oauth.py) against a real token endpoint on loopback:
both grants, renewal before expiry and after a refusal, clear errors, refresh-token rotation."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from privbot.config import load_settings
from privbot.mail.oauth import TokenError, TokenSource, oauthbearer, xoauth2
from testing.oauth import OAuthServer
from testing.servers import free_port


def source(server: OAuthServer, **kwargs: object) -> TokenSource:
    values: dict[str, object] = {
        "endpoint": server.token_url,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "scopes": ("https://mail.google.com/",),
    }
    values.update(kwargs)
    return TokenSource(**values)  # type: ignore[arg-type]


def test_client_credentials_token_is_kept_in_memory_until_near_expiry(
    oauth_server: OAuthServer,
) -> None:
    tokens = source(oauth_server)
    first = tokens.token()
    assert oauth_server.active(first)
    assert tokens.token() == first  # no second request while it lives
    assert oauth_server.tokens_issued() == [first]
    [request] = oauth_server.token_requests
    assert request["grant_type"] == "client_credentials"
    assert request["scope"] == "https://mail.google.com/"
    # The secret travels in the form body (as Google and Microsoft document), never a URL.
    assert request["client_secret"] == oauth_server.client_secret
    assert tokens.grant == "client_credentials"


def test_refresh_token_grant(oauth_server: OAuthServer) -> None:
    tokens = source(oauth_server, refresh_token="refresh-token-1")
    assert oauth_server.active(tokens.token())
    [request] = oauth_server.token_requests
    assert request["grant_type"] == "refresh_token"
    assert request["refresh_token"] == "refresh-token-1"


def test_public_client_refreshes_without_a_secret(oauth_server: OAuthServer) -> None:
    tokens = source(oauth_server, client_secret=None, refresh_token="refresh-token-1")
    assert oauth_server.active(tokens.token())
    [request] = oauth_server.token_requests
    assert "client_secret" not in request and request["client_id"] == oauth_server.client_id


def test_a_token_is_renewed_before_it_expires(oauth_server: OAuthServer) -> None:
    oauth_server.lifetime = 4  # renewed after 3 s (a quarter of its life before the end)
    tokens = source(oauth_server)
    first = tokens.token()
    time.sleep(2.0)
    assert tokens.token() == first
    time.sleep(1.2)
    second = tokens.token()
    assert second != first
    # Renewed while the old one was still good: no login ever carries a dying token.
    assert oauth_server.active(first)
    assert oauth_server.active(second)


def test_renew_after_a_refusal_asks_once_for_all_callers(oauth_server: OAuthServer) -> None:
    tokens = source(oauth_server)
    first = tokens.token()
    oauth_server.revoke(first)
    second = tokens.renew(first)
    assert second != first and oauth_server.active(second)
    # A second login that was refused the same old token gets the new one, no new request.
    assert tokens.renew(first) == second
    assert len(oauth_server.tokens_issued()) == 2


def test_two_threads_starting_together_make_one_request(oauth_server: OAuthServer) -> None:
    tokens = source(oauth_server)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(tokens.token())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(got)) == 1 and len(oauth_server.tokens_issued()) == 1


def test_a_refusing_endpoint_gives_a_clear_error_without_secrets(
    oauth_server: OAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    oauth_server.refuse(400, "invalid_grant", "Token has been expired or revoked.")
    tokens = source(oauth_server, refresh_token="refresh-token-1")
    with caplog.at_level(logging.ERROR, "privbot.mail.oauth"), pytest.raises(TokenError) as caught:
        tokens.token()
    message = str(caught.value)
    assert message == (
        f"OAuth token endpoint {oauth_server.token_url} (refresh token grant) refused the "
        "request: HTTP 400 invalid_grant (Token has been expired or revoked.)"
    )
    assert caught.value.status == 400 and caught.value.refused
    assert oauth_server.client_secret not in message and "refresh-token-1" not in message
    # Staff see it in the log, at ERROR.
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [message]


def test_a_wrong_client_secret_is_named_as_such(oauth_server: OAuthServer) -> None:
    with pytest.raises(TokenError) as caught:
        source(oauth_server, client_secret="s3cr3t-but-wrong").token()
    assert "refused the request: HTTP 401 invalid_client" in str(caught.value)
    assert "s3cr3t-but-wrong" not in str(caught.value)


def test_a_failing_endpoint_is_not_a_refusal(oauth_server: OAuthServer) -> None:
    oauth_server.refuse(503, "temporarily_unavailable", "")
    with pytest.raises(TokenError) as caught:
        source(oauth_server).token()
    assert "failed: HTTP 503 temporarily_unavailable" in str(caught.value)
    assert not caught.value.refused  # may heal soon: the watcher retries at its usual pace
    oauth_server.accept()


def test_an_unreachable_endpoint_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}/token"
    with pytest.raises(TokenError) as caught:
        TokenSource(url, "client", "secret", timeout=5).token()
    assert str(caught.value).startswith(
        f"OAuth token endpoint {url} (client credentials grant) unreachable: "
    )
    assert caught.value.status is None and not caught.value.refused


def test_a_rotated_refresh_token_is_written_back_and_used_after_a_restart(
    oauth_server: OAuthServer, tmp_path: Path
) -> None:
    oauth_server.rotate = True  # as Microsoft: every refresh hands out a new refresh token
    file = tmp_path / "refresh-token"
    file.write_text("refresh-token-1\n")
    file.chmod(0o600)
    env = {f"PRIVBOT_{k.upper()}": v for k, v in oauth_server.settings().items()}
    env["PRIVBOT_OAUTH_REFRESH_TOKEN_FILE"] = str(file)
    tokens = TokenSource.from_settings(load_settings(env))
    assert tokens is not None and tokens.refresh_token_file == file
    tokens.token()
    newest = oauth_server.token_requests[-1]
    assert newest["refresh_token"] == "refresh-token-1"
    saved = file.read_text().strip()
    assert saved != "refresh-token-1" and saved in oauth_server.refresh_tokens
    assert file.stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [file]  # no temporary file left beside it
    # The old one dies (its 90 days are up); a restart reads the file and still gets in.
    oauth_server.refresh_tokens.discard("refresh-token-1")
    restarted = TokenSource.from_settings(load_settings(env))
    assert restarted is not None and oauth_server.active(restarted.token())
    assert oauth_server.token_requests[-1]["refresh_token"] == saved
    tokens.close()
    restarted.close()


def test_a_rotated_refresh_token_that_cannot_be_saved_is_kept_in_memory(
    oauth_server: OAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    oauth_server.rotate = True
    unwritable = Path("/proc/privbot-refresh-token")  # not writable, even for root
    tokens = source(oauth_server, refresh_token="refresh-token-1", refresh_token_file=unwritable)
    with caplog.at_level(logging.WARNING, "privbot.mail.oauth"):
        first = tokens.token()
        oauth_server.refresh_tokens.discard("refresh-token-1")
        second = tokens.renew(first)  # with the rotated one, from memory
    assert oauth_server.active(second)
    assert oauth_server.token_requests[-1]["refresh_token"] != "refresh-token-1"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "kept in memory only" in warnings[0]  # said once


def test_sasl_initial_responses() -> None:
    assert (
        xoauth2("support@junocloud.me", "T") == "user=support@junocloud.me\x01auth=Bearer T\x01\x01"
    )
    assert oauthbearer("a,b=c@x.org", "T") == "n,a=a=2Cb=3Dc@x.org,\x01auth=Bearer T\x01\x01"

"""PRIVBOT_OAUTH_*: the providers' settings as the README gives them, and every mistake
refused at start, naming the setting and never echoing a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from privbot.config import ConfigError, load_settings

GOOGLE = {
    "PRIVBOT_IMAP_URL": "imaps://support%40junocloud.me@imap.gmail.com/INBOX",
    "PRIVBOT_SMTP_URL": "smtp://support%40junocloud.me@smtp.gmail.com:587?starttls=1",
    "PRIVBOT_OAUTH_TOKEN_ENDPOINT": "https://oauth2.googleapis.com/token",
    "PRIVBOT_OAUTH_CLIENT_ID": "1234-abc.apps.googleusercontent.com",
    "PRIVBOT_OAUTH_SCOPES": "https://mail.google.com/",
}


def secret_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def test_google_workspace_with_a_refresh_token(tmp_path: Path) -> None:
    s = load_settings(
        {
            **GOOGLE,
            "PRIVBOT_OAUTH_CLIENT_SECRET_FILE": secret_file(tmp_path, "secret", "GOCSPX-s3cr3t"),
            "PRIVBOT_OAUTH_REFRESH_TOKEN_FILE": secret_file(tmp_path, "refresh", "1//0g-r3fr3sh"),
        }
    )
    assert s.imap is not None and s.imap.password is None and s.imap.user == "support@junocloud.me"
    assert s.smtp is not None and s.smtp.password is None and s.smtp.starttls
    assert s.oauth_client_secret == "GOCSPX-s3cr3t"  # read at start, whitespace stripped
    assert s.oauth_refresh_token == "1//0g-r3fr3sh"
    assert s.oauth_refresh_token_file == str(tmp_path / "refresh")
    assert s.oauth_scopes == ("https://mail.google.com/",)
    assert s.oauth_mechanism == "XOAUTH2"
    # Secrets never reach a log line through the settings' repr.
    assert "s3cr3t" not in repr(s) and "r3fr3sh" not in repr(s)


def test_microsoft_365_client_credentials() -> None:
    s = load_settings(
        {
            "PRIVBOT_IMAP_URL": "imaps://support%40junocloud.me@outlook.office365.com/INBOX",
            "PRIVBOT_OAUTH_TOKEN_ENDPOINT": (
                "https://login.microsoftonline.com/00000000-1111-2222-3333-444444444444"
                "/oauth2/v2.0/token"
            ),
            "PRIVBOT_OAUTH_CLIENT_ID": "app-id",
            "PRIVBOT_OAUTH_CLIENT_SECRET": "from-the-environment",
            "PRIVBOT_OAUTH_SCOPES": "https://outlook.office365.com/.default",
            "PRIVBOT_OAUTH_MECHANISM": "xoauth2",
        }
    )
    assert s.oauth_refresh_token is None and s.oauth_client_secret == "from-the-environment"
    assert s.oauth_scopes == ("https://outlook.office365.com/.default",)


def test_scopes_by_space_or_comma() -> None:
    s = load_settings(
        {
            **GOOGLE,
            "PRIVBOT_OAUTH_CLIENT_SECRET": "x",
            "PRIVBOT_OAUTH_SCOPES": "https://outlook.office.com/IMAP.AccessAsUser.All, "
            "https://outlook.office.com/SMTP.Send offline_access",
        }
    )
    assert s.oauth_scopes == (
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
    )


@pytest.mark.parametrize(
    ("env", "name", "says"),
    [
        ({"PRIVBOT_IMAP_URL": "imaps://support%40junocloud.me@imap.gmail.com/INBOX"},
         "PRIVBOT_IMAP_URL", "PRIVBOT_OAUTH_TOKEN_ENDPOINT"),
        ({"PRIVBOT_SMTP_URL": "smtp://support%40junocloud.me@smtp.gmail.com:587?starttls=1"},
         "PRIVBOT_SMTP_URL", "logs in with OAuth"),
        ({**GOOGLE, "PRIVBOT_OAUTH_TOKEN_ENDPOINT": "http://oauth2.googleapis.com/token",
          "PRIVBOT_OAUTH_CLIENT_SECRET": "x"},
         "PRIVBOT_OAUTH_TOKEN_ENDPOINT", "https://"),
        ({**GOOGLE, "PRIVBOT_OAUTH_CLIENT_ID": ""}, "PRIVBOT_OAUTH_CLIENT_ID", "needed"),
        (GOOGLE, "PRIVBOT_OAUTH_CLIENT_SECRET", "client-credentials grant needs"),
        ({**GOOGLE, "PRIVBOT_OAUTH_CLIENT_SECRET": "x", "PRIVBOT_OAUTH_MECHANISM": "PLAIN"},
         "PRIVBOT_OAUTH_MECHANISM", "XOAUTH2, OAUTHBEARER"),
        ({"PRIVBOT_OAUTH_SCOPES": "https://mail.google.com/"},
         "PRIVBOT_OAUTH_SCOPES", "off without PRIVBOT_OAUTH_TOKEN_ENDPOINT"),
        ({**GOOGLE, "PRIVBOT_OAUTH_CLIENT_SECRET": "x",
          "PRIVBOT_OAUTH_CLIENT_SECRET_FILE": "/etc/privbot/secret"},
         "PRIVBOT_OAUTH_CLIENT_SECRET", "not both"),
        ({**GOOGLE, "PRIVBOT_OAUTH_REFRESH_TOKEN_FILE": "/nonexistent/refresh-token"},
         "PRIVBOT_OAUTH_REFRESH_TOKEN_FILE", "cannot read '/nonexistent/refresh-token'"),
    ],
)  # fmt: skip
def test_mistakes_name_the_setting(env: dict[str, str], name: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(name + ":")
    assert says in str(caught.value)


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    empty = secret_file(tmp_path, "secret", "  ")
    with pytest.raises(ConfigError, match=r"PRIVBOT_OAUTH_CLIENT_SECRET_FILE: .* is empty"):
        load_settings({**GOOGLE, "PRIVBOT_OAUTH_CLIENT_SECRET_FILE": empty})


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://privbot:hunter2@login.example.com/token",
        "https://login.example.com/token?client_secret=hunter2",
        "https://login.example.com/token?refresh_token=hunter2",
    ],
)
def test_no_secret_in_the_endpoint_url_and_none_echoed(endpoint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**GOOGLE, "PRIVBOT_OAUTH_TOKEN_ENDPOINT": endpoint})
    assert str(caught.value).startswith("PRIVBOT_OAUTH_TOKEN_ENDPOINT: no credentials in the URL")
    assert "hunter2" not in str(caught.value)


def test_plain_http_is_for_loopback_only() -> None:
    s = load_settings(
        {**GOOGLE, "PRIVBOT_OAUTH_TOKEN_ENDPOINT": "http://127.0.0.1:8080/token",
         "PRIVBOT_OAUTH_CLIENT_SECRET": "x"}
    )  # fmt: skip
    assert s.oauth_token_endpoint == "http://127.0.0.1:8080/token"


def test_passwords_still_work_without_oauth() -> None:
    s = load_settings(
        {"PRIVBOT_IMAP_URL": "imap://u:p@host/INBOX", "PRIVBOT_SMTP_URL": "smtp://relay:25"}
    )
    assert s.imap is not None and s.imap.password == "p"
    assert s.smtp is not None and s.smtp.user is None
    assert s.oauth_token_endpoint is None

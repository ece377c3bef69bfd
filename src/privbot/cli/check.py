"""`privbot config check`: the effective settings, where each came from, and whether the
database, the IMAP mailbox and the SMTP relay can be reached with them.

Secrets are masked: any setting named for a secret, token or password, and the password in
any URL. Nothing is changed: no migration, no folder created, no mail sent (the relay gets
EHLO, STARTTLS and AUTH as configured, then QUIT).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import smtplib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imapclient.exceptions import IMAPClientError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from privbot import db
from privbot.channels.imap import _delimiter as folder_delimiter
from privbot.channels.imap import connect as imap_connect
from privbot.config import DEFAULT, Settings, env_name, read_settings
from privbot.mail.oauth import LoginRefused, TokenError, TokenSource
from privbot.outbox.sender import Mailer

# A setting whose name holds one of these is shown as *** (a file's path is not a secret).
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD")
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^@\s]*@")
TIMEOUT = 15.0  # seconds for each connection tried


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def register(sub: Any) -> None:
    """`privbot config check` on the top-level subparsers."""
    p = sub.add_parser("config", help="settings: check them", description="settings")
    p.set_defaults(handler=_no_action)
    actions = p.add_subparsers(title="actions", metavar="ACTION")
    description = (
        "Print the effective settings with their sources (default, file, environment; "
        "secrets masked) and try the database, the IMAP login and the SMTP relay (EHLO and "
        "AUTH, no mail sent). Exit status 1 when a check fails."
    )
    c = actions.add_parser("check", help="show the settings and test the connections",
                           description=description)  # fmt: skip
    c.set_defaults(handler=run)


def _no_action(args: argparse.Namespace, settings: Settings) -> int:
    print("privbot: give an action; see --help", file=sys.stderr)
    return 2


def run(args: argparse.Namespace, settings: Settings) -> int:
    raw, sources = read_settings(os.environ, args.config)
    rows = setting_rows(settings, raw, sources)
    width = max(len(name) for name, _, _ in rows)
    print("settings:" + (f" (file {args.config}, overridden by the environment)"
                         if args.config else ""))  # fmt: skip
    for name, value, source in rows:
        print(f"  {name.ljust(width)}  {source.ljust(11)}  {value}")
    print("checks:")
    checks = connection_checks(settings)
    for check in checks:
        print(f"  {check.name.ljust(8)}  {'ok' if check.ok else 'FAIL':4}  {check.detail}")
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print(f"privbot: config check: {', '.join(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


def setting_rows(
    settings: Settings, raw: dict[str, str], sources: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(name, value as shown, source) for every setting, secrets masked."""
    defaults = Settings()
    rows = []
    for f in dataclasses.fields(Settings):
        name = env_name(f.name)
        source = sources.get(name, DEFAULT)
        text = raw[name].strip() if source != DEFAULT else shown(getattr(defaults, f.name))
        rows.append((name, masked(name, text), source))
    return sorted(rows)


def masked(name: str, text: str) -> str:
    if text in ("", "none"):
        return text or "none"
    if any(w in name for w in SECRET_WORDS) and not name.endswith(("_FILE", "_ENDPOINT")):
        return "***"
    return _URL_PASSWORD.sub(r"\1***@", text)


def shown(value: object) -> str:
    """A default as it would be written in the environment."""
    if value is None or value == () or value == {}:
        return "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (int, float)):
        first, second = value
        sep = ":" if isinstance(first, str) else "/"  # HOST:PORT, or COUNT/SECONDS
        return f"{first}{sep}{shown(second) if isinstance(second, float) else second}"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def connection_checks(settings: Settings) -> list[Check]:
    checks = [_guard("database", lambda: check_database(settings))]
    if settings.imap is not None:
        checks.append(_guard("imap", lambda: check_imap(settings)))
    else:
        checks.append(Check("imap", True, "not configured (PRIVBOT_IMAP_URL)"))
    if settings.smtp is not None:
        checks.append(_guard("smtp", lambda: check_smtp(settings)))
    else:
        checks.append(Check("smtp", True, "not configured (PRIVBOT_SMTP_URL): replies wait"))
    return checks


def _guard(name: str, check: Callable[[], str]) -> Check:
    """A check's outcome: its detail when it passes, the reason when anything fails."""
    try:
        return Check(name, True, check())
    except DBAPIError as exc:
        return Check(name, False, f"{type(exc.orig).__name__}: {_first_line(exc.orig)}")
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) \
            else str(exc.smtp_error)  # fmt: skip
        return Check(name, False, f"refused: {exc.smtp_code} {_first_line(text)}")
    except (TokenError, LoginRefused) as exc:
        # OAuth: the token endpoint (named, with its HTTP status) or the server said no.
        return Check(name, False, _first_line(exc))
    except (OSError, IMAPClientError, smtplib.SMTPException, EOFError) as exc:
        return Check(name, False, f"{type(exc).__name__}: {_first_line(exc)}")


def _first_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return masked("", lines[0] if lines else "")[:300]


def check_database(settings: Settings) -> str:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database or "")
        if not path.exists():
            # Opening it would create it: say what serve or `db upgrade` will do instead.
            folder = path.parent if str(path.parent) else Path(".")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise OSError(f"no database at {path}, and its folder cannot be written")
            return f"sqlite: no database at {path} yet (`privbot db upgrade` creates it)"
    engine = db.make_engine(settings.database_url)
    try:
        current, head = db.schema_revisions(engine)
    finally:
        engine.dispose()
    state = (
        "schema current" if current == head
        else "not migrated yet" if current is None
        else f"schema at {current}, code at {head}"
    )  # fmt: skip
    hint = "" if current == head else " (`privbot db upgrade`; serve applies it at start)"
    return f"{url.get_backend_name()}: connected, {state}{hint}"


def check_imap(settings: Settings) -> str:
    s = settings.imap
    assert s is not None
    tokens = TokenSource.from_settings(settings)  # OAuth: a token asked for, as serve would
    try:
        client = imap_connect(s, timeout=TIMEOUT, tokens=tokens)
    finally:
        if tokens is not None:
            tokens.close()
    try:
        status = client.folder_status(s.folder, [b"MESSAGES"])
        waiting = int(status.get(b"MESSAGES", 0))
        missing = [
            f for f in (settings.processed_folder, settings.failed_folder)
            if not client.folder_exists(f.replace("/", folder_delimiter(client)))
        ]  # fmt: skip
    finally:
        client.logout()
    created = f"; serve will create {', '.join(missing)}" if missing else ""
    return (
        f"logged in as {s.user} at {s.host}:{s.port}; {s.folder} holds {waiting} messages{created}"
    )


def check_smtp(settings: Settings) -> str:
    s = settings.smtp
    assert s is not None
    tokens = TokenSource.from_settings(settings) if s.user and s.password is None else None
    mailer = Mailer(s, timeout=TIMEOUT, tokens=tokens)
    try:
        conn = mailer.connect()
        utf8 = "SMTPUTF8 offered" if conn.has_extn("smtputf8") else "no SMTPUTF8"
    finally:
        mailer.close()
        if tokens is not None:
            tokens.close()
    how = "TLS" if s.ssl else "STARTTLS" if s.starttls else "no TLS"
    auth = f"AUTH as {s.user}" if s.user else "no AUTH"
    if tokens is not None:
        auth = f"AUTH {tokens.mechanism} as {s.user} with an access token"
    return f"relay {s.host}:{s.port}: EHLO, {how}, {auth}, {utf8}; no mail sent"

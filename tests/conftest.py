"""Shared pytest fixtures: real Dovecot, a capture SMTP relay, PostgreSQL/SQLite URLs, corpora.

A fixture whose server cannot be had (no dovecot binary, PostgreSQL unreachable, corpora
absent) skips the test with the reason, except under CI (env ``CI`` set, e.g. CI=true),
where it fails instead: CI must run every test.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Make ``testing.servers`` importable however pytest was started (tests/ has no __init__.py).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from testing.apps import DkimKey, dkim_key  # noqa: E402
from testing.oauth import OAuthServer  # noqa: E402
from testing.servers import (  # noqa: E402
    CaptureRelay,
    DnsServer,
    Dovecot,
    PostgresDatabase,
    PymapServer,
    SilentDns,
)

CORPORA_DIR = REPO_ROOT.parent / "shared" / "corpora"
# Dovecot's mail user must traverse every parent of its directory; pytest's tmp dirs are 0700.
SERVER_TMP_BASE = Path(os.environ.get("PRIVBOT_TEST_TMP", "/tmp/privbot-tests"))


def in_ci() -> bool:
    """True when the environment variable CI is set to something other than ''/0/false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it under CI (CI must never skip silently)."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: this cannot be skipped)", pytrace=False)
    pytest.skip(reason)


def require(reason: str | None) -> None:
    """`unavailable(reason)` when a server's `available()` gave a reason, else nothing."""
    if reason:
        unavailable(reason)


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """A fresh directory under a 0755 base (/tmp/privbot-tests/<uuid>), removed afterwards."""
    SERVER_TMP_BASE.mkdir(parents=True, exist_ok=True)
    SERVER_TMP_BASE.chmod(0o755)
    path = SERVER_TMP_BASE / uuid.uuid4().hex
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dovecot(server_tmp_path: Path) -> Iterator[Dovecot]:
    """A running private Dovecot (IMAP + LMTP), user support@junocloud.me / secret."""
    require(Dovecot.available())
    with Dovecot(server_tmp_path / "dovecot") as server:
        yield server


@pytest.fixture
def oauth_server() -> Iterator[OAuthServer]:
    """A provider's token and introspection endpoints on loopback (testing/oauth.py)."""
    with OAuthServer() as server:
        yield server


@pytest.fixture
def oauth_dovecot(server_tmp_path: Path, oauth_server: OAuthServer) -> Iterator[Dovecot]:
    """A running Dovecot that also takes XOAUTH2 and OAUTHBEARER, checking each token with
    `oauth_server` through its oauth2 passdb."""
    require(Dovecot.available())
    with Dovecot(
        server_tmp_path / "dovecot", oauth_introspection_url=oauth_server.introspection_url
    ) as server:
        yield server


@pytest.fixture
def relay() -> Iterator[CaptureRelay]:
    """A running CaptureRelay (SMTP on a free loopback port) recording every message."""
    with CaptureRelay() as server:
        yield server


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A running authoritative DNS server on loopback; add records with .txt() and .a()."""
    with DnsServer() as server:
        yield server


@pytest.fixture
def silent_dns() -> Iterator[SilentDns]:
    """A loopback DNS port that never answers: every lookup times out."""
    with SilentDns() as server:
        yield server


@pytest.fixture(scope="session")
def dkim_test_key() -> DkimKey:
    """An RSA key (2048 bits) for signing test mail, made once per run."""
    return dkim_key()


@pytest.fixture
def pymap_server() -> Iterator[PymapServer]:
    """A running pymap (in-memory IMAP), user support@junocloud.me / secret."""
    require(PymapServer.available())
    with PymapServer() as server:
        yield server


@pytest.fixture
def postgres_database() -> Iterator[PostgresDatabase]:
    """A fresh PostgreSQL database (``.url``, ``.conninfo``, ``.name``), dropped after the test."""
    require(PostgresDatabase.available())
    database = PostgresDatabase()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture
def pg_url(postgres_database: PostgresDatabase) -> str:
    """SQLAlchemy URL of a fresh PostgreSQL database, dropped after the test."""
    return postgres_database.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a SQLite file in the test's tmp dir."""
    return f"sqlite:///{tmp_path / 'privbot.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Either database URL: the test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def corpora() -> Path:
    """Path to /work/shared/corpora (found next to the repo)."""
    if not CORPORA_DIR.is_dir():
        unavailable(f"the shared corpora directory {CORPORA_DIR} is absent")
    return CORPORA_DIR


def pytest_sessionstart(session: pytest.Session) -> None:
    """Train the shipped classifier once, before any test's time limit runs: on a fresh
    checkout the first App would train it inside one test's 300 s (minutes on 2 cores
    when the bank has grown). Later Apps load the cached model in a second."""
    from privbot.app import load_understanding
    from privbot.config import load_settings

    load_understanding(load_settings({}))

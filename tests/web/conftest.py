"""Fixtures for the web tests: an App on a real database, a client, staff who can sign in."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from privbot.app import App
from privbot.staff import auth
from privbot.web import create_app
from privbot.web.server import WebServer
from testing.apps import make_app, wait_until
from testing.servers import free_port

STAFF = "ada@junocloud.me"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def add_staff(app: App, email: str = STAFF, password: str = PASSWORD) -> None:
    with app.sessions.begin() as session:
        auth.add_staff(session, email, password, actor="test")


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def login(client: TestClient, email: str = STAFF, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    form = client.get("/login")
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf": csrf_of(form.text), "next": "/queue"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/queue").text)


@pytest.fixture
def web_app(sqlite_url: str) -> Iterator[App]:
    app = make_app(sqlite_url, secret_key="test-secret-key", chat_rate="1000/60")
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def client(web_app: App) -> Iterator[TestClient]:
    with TestClient(create_app(web_app)) as c:
        yield c


@pytest.fixture
def staff_client(web_app: App, client: TestClient) -> TestClient:
    """A client signed in as STAFF; its CSRF token is in `client.csrf`."""
    add_staff(web_app)
    client.csrf = login(client)  # type: ignore[attr-defined]
    return client


@pytest.fixture
def served(db_url: str) -> Iterator[tuple[App, str]]:
    """The web app under uvicorn on a free loopback port, for a browser or an HTTP client."""
    port = free_port()
    app = make_app(db_url, secret_key="served-secret", web=f"127.0.0.1:{port}")
    server = WebServer(app, "127.0.0.1", port).start()
    try:
        wait_until(lambda: server.started, timeout=20, what="uvicorn started")
        yield app, server.url
    finally:
        server.stop()
        app.close()

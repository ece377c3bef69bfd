"""The web app's doors: no anonymous client reaches staff, sessions, CSRF, slow-down, headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import timedelta

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from starlette.routing import BaseRoute, Mount

from privbot.app import App
from privbot.models import Event, LoginFailure, StaffSession, Ticket, utcnow
from privbot.web import create_app
from testing.apps import mail
from tests.web.conftest import PASSWORD, STAFF, add_staff, csrf_of, login

# Every route anyone may use without signing in; everything else is staff only.
PUBLIC = {
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/chat"),
    ("POST", "/api/v1/chat"),
    ("GET", "/chat/confirm/{token}"),
    ("POST", "/chat/confirm/{token}"),
    # For monitoring: a word per check; /metrics has a token of its own
    # (tests/ops/test_health_and_metrics.py).
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/favicon.ico"),  # the browser asks for it on the login page too
}


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every route the app defines, also inside included routers (FastAPI nests them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)
        else:
            assert isinstance(route, Mount) and route.path == "/static", route


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "1" if "id" in m.group(1) else "x@y.org", path)


def test_every_staff_route_refuses_an_anonymous_client(web_app: App, client: TestClient) -> None:
    from privbot import pipeline

    pipeline.receive(web_app, mail(), source="file")  # ticket 1 exists: a 404 proves nothing
    routes = list(api_routes(create_app(web_app).routes))
    staff_routes = [
        (method, r.path)
        for r in routes
        for method in sorted(r.methods)
        if (method, r.path) not in PUBLIC
    ]
    assert len(staff_routes) >= 14, staff_routes  # the walk really covers the app
    for method, path in staff_routes:
        response = client.request(method, _concrete(path), follow_redirects=False)
        if method == "GET" and not path.startswith("/api/"):
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/login?next=")
        else:
            assert response.status_code == 401, (method, path, response.status_code)
    # The public ones answer without a session (and are not the login redirect).
    assert client.get("/chat").status_code == 200
    assert client.get("/login").status_code == 200
    with web_app.sessions() as session:
        assert session.scalar(select(Ticket.assignee)) is None  # nothing was done


def test_root_takes_an_anonymous_visitor_to_the_login_form(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    page = client.get("/")
    assert page.status_code == 200 and 'type="password"' in page.text


def test_security_headers_on_every_response(staff_client: TestClient) -> None:
    for path in ("/login", "/chat", "/queue", "/static/style.css", "/nowhere", "/api/v1/x"):
        response = staff_client.get(path, follow_redirects=False)
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert staff_client.get("/queue").headers["cache-control"] == "no-store"
    assert staff_client.get("/nowhere").status_code == 404
    assert staff_client.get("/api/v1/x").json() == {"error": "Not Found"}
    # No public API description of the staff routes.
    assert staff_client.get("/docs").status_code == 404
    assert staff_client.get("/openapi.json").status_code == 404


def test_login_sets_a_signed_httponly_samesite_cookie_and_logout_ends_it(
    web_app: App, client: TestClient
) -> None:
    add_staff(web_app)
    form = client.get("/login?next=/audit")
    response = client.post(
        "/login",
        data={
            "email": STAFF.upper(),
            "password": PASSWORD,
            "csrf": csrf_of(form.text),
            "next": "/audit",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/audit"
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("privbot_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    value = client.cookies["privbot_session"]
    assert client.get("/queue").status_code == 200

    # A forged signature is nobody.
    client.cookies.set("privbot_session", value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB"))
    assert client.get("/queue", follow_redirects=False).status_code == 303
    client.cookies.set("privbot_session", value)

    csrf = csrf_of(client.get("/queue").text)
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    # The old cookie no longer works, even if a copy was kept: the session is gone server-side.
    client.cookies.set("privbot_session", value)
    assert client.get("/queue", follow_redirects=False).status_code == 303


def test_sessions_expire(web_app: App, client: TestClient) -> None:
    add_staff(web_app)
    login(client)
    assert client.get("/queue").status_code == 200
    with web_app.sessions.begin() as session:
        session.execute(update(StaffSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = client.get("/queue", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_wrong_password_and_open_redirects_are_refused(web_app: App, client: TestClient) -> None:
    add_staff(web_app)
    form = client.get("/login")
    wrong = client.post(
        "/login",
        data={"email": STAFF, "password": "nope", "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert wrong.status_code == 401 and "Wrong e-mail address or password" in wrong.text
    assert "privbot_session" not in client.cookies
    form = client.get("/login")
    ok = client.post(
        "/login",
        data={
            "email": STAFF,
            "password": PASSWORD,
            "csrf": csrf_of(form.text),
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert ok.headers["location"] == "/queue"


def test_login_form_needs_its_csrf_token(web_app: App, client: TestClient) -> None:
    add_staff(web_app)
    client.get("/login")
    response = client.post(
        "/login",
        data={"email": STAFF, "password": PASSWORD, "csrf": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403 and "privbot_session" not in client.cookies


def test_repeated_failed_logins_are_slowed_down(web_app: App, client: TestClient) -> None:
    add_staff(web_app)
    statuses = []
    for _ in range(5):
        form = client.get("/login")
        r = client.post(
            "/login", data={"email": STAFF, "password": "guess", "csrf": csrf_of(form.text)}
        )
        statuses.append(r.status_code)
    assert statuses == [401] * 5
    # Now even the right password is not checked until the wait is over.
    form = client.get("/login")
    blocked = client.post(
        "/login",
        data={"email": STAFF, "password": PASSWORD, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins" in blocked.text
    assert "privbot_session" not in client.cookies
    # Another account from the same client is slowed down too (guessing across accounts).
    add_staff(web_app, "bea@junocloud.me")
    form = client.get("/login")
    other = client.post(
        "/login",
        data={"email": "bea@junocloud.me", "password": PASSWORD, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert other.status_code == 429


def _try(client: TestClient, email: str, password: str) -> int:
    form = client.get("/login")
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    ).status_code


def test_failures_from_other_clients_do_not_lock_staff_out_of_their_own(web_app: App) -> None:
    add_staff(web_app)
    app = create_app(web_app)
    with (
        TestClient(app, client=("203.0.113.9", 40000)) as attacker,
        TestClient(app, client=("198.51.100.7", 40000)) as own,
    ):
        assert [_try(attacker, STAFF, "guess") for _ in range(6)] == [401] * 5 + [429]
        assert _try(own, STAFF, PASSWORD) == 303  # her own browser is not held back
        assert _try(attacker, STAFF, PASSWORD) == 429  # the guessing client still is
        # Failures on one account still slow a client down on every other account.
        add_staff(web_app, "bea@junocloud.me")
        assert _try(attacker, "bea@junocloud.me", PASSWORD) == 429


def test_a_password_typed_as_the_address_is_never_shown_to_staff(
    web_app: App, client: TestClient
) -> None:
    add_staff(web_app)
    typed = "Tr0ub4dor&3-swordfish"  # a password, typed into the e-mail field
    assert _try(client, typed, "") == 401
    assert _try(client, typed.upper(), "") == 401
    assert _try(client, STAFF, "wrong password") == 401
    with web_app.sessions() as s:
        failed = s.scalars(
            select(Event).where(Event.kind == "login_failed").order_by(Event.id)
        ).all()
        keys = s.scalars(select(LoginFailure.key)).all()
    assert [e.actor for e in failed] == ["unknown", "unknown", STAFF]  # a known account: named
    digests = [e.detail.get("name_digest") for e in failed]
    assert digests[0] and digests[0] == digests[1]  # the same name tried again is seen
    stored = " ".join([str(e.detail) for e in failed] + list(keys)).lower()
    assert typed.lower() not in stored
    assert _try(client, STAFF, PASSWORD) == 303
    for page in ("/audit", "/audit?kind=login_failed", "/audit?actor=unknown"):
        assert typed.lower() not in client.get(page).text.lower()


def test_staff_forms_refuse_a_missing_or_wrong_csrf_token(
    web_app: App, staff_client: TestClient
) -> None:
    from privbot import pipeline

    ticket = pipeline.receive(web_app, mail(), source="file").ticket
    for data in ({"assignee": "me"}, {"assignee": "me", "csrf": "wrong"}):
        response = staff_client.post(f"/tickets/{ticket}/assign", data=data, follow_redirects=False)
        assert response.status_code == 403, data
        assert "form has expired" in response.text
    with web_app.sessions() as session:
        assert session.get(Ticket, ticket).assignee is None  # type: ignore[union-attr]
    # Another session's token does not do either.
    add_staff(web_app, "bea@junocloud.me")
    with TestClient(create_app(web_app)) as other:
        other_csrf = login(other, "bea@junocloud.me")
    assert other_csrf != staff_client.csrf  # type: ignore[attr-defined]
    response = staff_client.post(
        f"/tickets/{ticket}/assign",
        data={"assignee": "me", "csrf": other_csrf},
        follow_redirects=False,
    )
    assert response.status_code == 403
    response = staff_client.post(
        f"/tickets/{ticket}/assign",
        data={"assignee": "me", "csrf": staff_client.csrf},  # type: ignore[attr-defined]
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_a_disabled_account_is_signed_out_at_once(web_app: App, staff_client: TestClient) -> None:
    from privbot.staff import auth

    assert staff_client.get("/queue").status_code == 200
    with web_app.sessions.begin() as session:
        auth.disable_staff(session, STAFF, actor="test")
    assert staff_client.get("/queue", follow_redirects=False).status_code == 303

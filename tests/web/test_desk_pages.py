"""The ticket page's JSON steps, the extend box, HEAD and the favicon over HTTP, on SQLite
and PostgreSQL (issue 14, part C; the browser side is in test_desk.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from privbot import pipeline
from privbot.app import App
from privbot.staff import actions
from privbot.web import create_app
from testing.apps import mail, make_app
from tests.web.conftest import STAFF, add_staff, login


@pytest.fixture
def any_app(db_url: str) -> Iterator[App]:
    app = make_app(db_url, secret_key="test-secret-key")
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def staff(any_app: App) -> Iterator[TestClient]:
    add_staff(any_app)
    with TestClient(create_app(any_app)) as c:
        c.csrf = login(c)  # type: ignore[attr-defined]
        yield c


def _ticket(app: App) -> int:
    body = "Guten Tag, bitte senden Sie mir eine Kopie aller Daten über mich.\n\n> old quote\n"
    raw = mail(sender="Max Weber <max@example.de>", subject="Auskunft", body=body)
    out = pipeline.receive(app, raw, source="file")
    assert out.ticket is not None
    return out.ticket


def test_a_template_and_a_preview_come_as_json_for_the_page_script(
    any_app: App, staff: TestClient
) -> None:
    tid = _ticket(any_app)
    r = staff.get(f"/tickets/{tid}/reply/template", params={"name": "identity_needed"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()["body"]
    assert body.startswith("Guten Tag Max Weber,")  # the ticket's language
    assert body.endswith("Max Weber <max@example.de>:\n> Guten Tag, bitte senden Sie mir eine "
                         "Kopie aller Daten über mich.\n")  # fmt: skip
    assert "old quote" not in body  # only what they wrote that time
    r = staff.get(f"/tickets/{tid}/reply/template", params={"name": "../../etc/passwd"})
    assert r.status_code == 400 and "no reply template" in r.json()["error"]

    json = {"Accept": "application/json"}
    form = {"csrf": staff.csrf, "body": "Hallo,\n\nanbei.\n"}  # type: ignore[attr-defined]
    r = staff.post(f"/tickets/{tid}/reply/preview", data=form, headers=json)
    assert r.status_code == 200
    assert r.json() == {"to": "max@example.de", "subject": f"Re: Auskunft [JC-{tid}]",
                        "body": "Hallo,\n\nanbei.\n"}  # fmt: skip
    r = staff.post(f"/tickets/{tid}/reply/preview", data={**form, "body": " "}, headers=json)
    assert r.status_code == 400 and r.json() == {"error": "the reply is empty"}
    # The same post without the script's Accept: the page, as before.
    r = staff.post(f"/tickets/{tid}/reply/preview", data=form)
    assert r.status_code == 200 and "Preview: exactly what will be sent" in r.text
    r = staff.post(f"/tickets/{tid}/reply/preview", data={**form, "csrf": "forged"}, headers=json)
    assert r.status_code == 403
    # And a load of the page with ?template= (no script) fills the box with the quote too.
    page = staff.get(f"/tickets/{tid}", params={"template": "request_done"}).text
    assert "&gt; Guten Tag, bitte senden Sie mir" in page


def test_the_extend_box_counts_the_months_used(any_app: App, staff: TestClient) -> None:
    tid = _ticket(any_app)

    def offered() -> list[str]:
        page = staff.get(f"/tickets/{tid}").text
        return re.findall(r'<option value="(\d)"[^>]*>by \d months?</option>', page)

    assert offered() == ["1", "2"]
    actions.extend_deadline(any_app, tid, 1, "archives", actor=STAFF)
    assert offered() == ["1"]
    actions.extend_deadline(any_app, tid, 1, "still", actor=STAFF)
    assert offered() == []
    assert "cannot be extended further" in staff.get(f"/tickets/{tid}").text


def test_head_answers_wherever_get_does(any_app: App, staff: TestClient) -> None:
    tid = _ticket(any_app)
    for path in ("/login", "/chat", "/queue", f"/tickets/{tid}", "/suppressions", "/audit",
                 "/suppressions.csv", "/favicon.ico", "/static/favicon.svg"):  # fmt: skip
        get = staff.get(path)
        head = staff.head(path)
        assert (head.status_code, get.status_code) == (200, 200), path
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        assert head.headers.get("content-security-policy"), path
    assert staff.head(f"/tickets/{tid}/reply/template?name=blank").status_code == 200
    assert staff.head(f"/tickets/{tid}/note").status_code == 405  # a form's target: POST only
    anonymous = TestClient(create_app(any_app))
    r = anonymous.head("/queue", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    icon = anonymous.get("/favicon.ico")
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg") and 'rel="icon"' in anonymous.get("/chat").text

"""The public chat (answers, verified requests, limits) and the token API for marketing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from privbot import optouts
from privbot.app import App
from privbot.config import load_settings
from privbot.models import ChatRequest, Message, Outgoing, Suppression, Ticket
from privbot.outbox.sender import Mailer
from privbot.staff import auth
from privbot.web import create_app
from testing.apps import make_app, send_one
from testing.servers import CaptureRelay

LINK = re.compile(r"http://127\.0\.0\.1:8025(/chat/confirm/[A-Za-z0-9_.\-]+)")


def deliver(app: App, relay: CaptureRelay) -> None:
    """What the outbox sender of `privbot serve` does: send every due row to the relay."""
    smtp = load_settings({"PRIVBOT_SMTP_URL": relay.url}).smtp
    assert smtp is not None
    mailer = Mailer(smtp)
    try:
        while send_one(app, mailer):
            pass
    finally:
        mailer.close()


def test_chat_answers_a_cookie_question_with_the_policy_citation(client: TestClient) -> None:
    page = client.get("/chat")
    assert page.status_code == 200 and 'src="/static/chat.js"' in page.text
    response = client.post("/api/v1/chat", json={"message": "Do you use cookies?", "session": ""})
    assert response.status_code == 200
    data = response.json()
    assert set(data) >= {"reply", "intents", "sections", "session"}
    assert data["intents"] == ["question"] and data["sections"] == ["Cookies"]
    assert 'section "Cookies"' in data["reply"] and "persistent" in data["reply"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", data["session"])
    # Same classifier and answer code as `privbot ask`: the very same text.
    from privbot.pipeline.reply import answer_text

    assert data["reply"] == answer_text(client.app.state.web.app, "Do you use cookies?")[1].strip()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"message": ""}, 400, "empty"),
        ({"message": "   \n "}, 400, "empty"),
        ({"message": "x" * 2001}, 413, "too long"),
        ({"message": 42}, 400, "must be a string"),
        ({}, 400, "must be a string"),
        (["not", "an", "object"], 400, "JSON object"),
    ],
)
def test_chat_refuses_bad_input_with_a_clear_error(
    client: TestClient, body: object, status: int, error: str
) -> None:
    response = client.post("/api/v1/chat", json=body)
    assert response.status_code == status
    assert error in response.json()["error"]


def test_chat_refuses_what_is_not_json(client: TestClient) -> None:
    form = client.post("/api/v1/chat", data={"message": "hi"})
    assert form.status_code == 415 and "send JSON" in form.json()["error"]
    # text/plain is what another site's page may post without asking: refused too.
    plain = client.post(
        "/api/v1/chat", content=b'{"message": "hi"}', headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 415
    broken = client.post(
        "/api/v1/chat", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and "send JSON" in broken.json()["error"]


def test_chat_is_rate_limited_per_client(sqlite_url: str) -> None:
    app = make_app(sqlite_url, secret_key="k", chat_rate="3/60")
    try:
        with TestClient(create_app(app)) as client:
            codes = [
                client.post("/api/v1/chat", json={"message": "cookies?"}).status_code
                for _ in range(4)
            ]
            assert codes == [200, 200, 200, 429]
            limited = client.post("/api/v1/chat", json={"message": "cookies?"})
            assert "too many" in limited.json()["error"]
            assert int(limited.headers["retry-after"]) >= 1
        # Another client is not affected.
        with TestClient(create_app(app), client=("10.0.0.2", 5000)) as other:
            assert other.post("/api/v1/chat", json={"message": "cookies?"}).status_code == 200
    finally:
        app.close()


@pytest.fixture
def chat_app(db_url: str) -> Iterator[App]:
    app = make_app(db_url, secret_key="chat-secret", chat_rate="1000/60")
    try:
        yield app
    finally:
        app.close()


def test_an_opt_out_asked_in_the_chat_is_applied_only_after_the_mailed_link(
    chat_app: App, relay: CaptureRelay
) -> None:
    with TestClient(create_app(chat_app)) as client:
        first = client.post(
            "/api/v1/chat", json={"message": "Please unsubscribe me from your newsletter."}
        ).json()
        assert first["intents"] == ["opt_out"] and first["waiting_for"] == "address"
        assert "e-mail address" in first["reply"]
        session = first["session"]
        second = client.post(
            "/api/v1/chat", json={"message": "It is Nina@Example.org", "session": session}
        ).json()
        assert second["waiting_for"] == "confirmation" and "nina@example.org" in second["reply"]

        # Nothing is done yet: no suppression, no ticket, no stored message.
        with chat_app.sessions() as db:
            assert optouts.active_scopes(db, "nina@example.org") == ()
            assert db.scalar(select(func.count(Ticket.id))) == 0
            assert db.scalar(select(func.count(Message.id))) == 0
            row = db.scalar(select(Outgoing))
            assert row is not None and (row.kind, row.to_addr) == ("confirm", "nina@example.org")

        deliver(chat_app, relay)  # the outbox sender mails the link
        (letter,) = relay.messages
        assert letter["To"] == "nina@example.org"
        text = letter.get_content()
        assert "unsubscribe me from your newsletter" in text
        path = LINK.search(text).group(1)  # type: ignore[union-attr]

        # Following the link shows the request; a GET alone (a mail scanner) does nothing.
        shown = client.get(path)
        assert shown.status_code == 200 and "Yes, make this request" in shown.text
        with chat_app.sessions() as db:
            assert optouts.active_scopes(db, "nina@example.org") == ()

        done = client.post(path)
        assert done.status_code == 200 and "your request is made" in done.text
        again = client.post(path)  # a second click does nothing twice
        assert again.status_code == 200
        with chat_app.sessions() as db:
            assert optouts.active_scopes(db, "nina@example.org") == ("marketing_email",)
            messages = db.scalars(select(Message)).all()
            assert [(m.source, m.sender, m.status) for m in messages] == [
                ("chat", "nina@example.org", "handled")
            ]
            request = db.scalar(select(ChatRequest))
            assert request is not None and request.status == "confirmed"
            # Exactly as by mail: the usual reply is queued for the address owner.
            replies = db.scalars(select(Outgoing).where(Outgoing.kind == "auto")).all()
            assert [r.to_addr for r in replies] == ["nina@example.org"]

        # A forged or altered link does nothing.
        assert client.get(path[:-4] + "AAAA").status_code == 404
        assert client.post("/chat/confirm/garbage").status_code == 404


def test_a_data_request_in_the_chat_opens_a_ticket_for_the_address_owner_only(
    chat_app: App, relay: CaptureRelay
) -> None:
    with TestClient(create_app(chat_app)) as client:
        # The address in the message itself: the link goes there, not to whoever typed it.
        answer = client.post(
            "/api/v1/chat",
            json={"message": "I want a copy of all personal data you hold about tom@example.org"},
        ).json()
        assert "data_access" in answer["intents"]
        assert answer["waiting_for"] == "confirmation"
        deliver(chat_app, relay)
        (letter,) = relay.messages
        assert letter["To"] == "tom@example.org"
        path = LINK.search(letter.get_content()).group(1)  # type: ignore[union-attr]
        page = client.post(path).text
        with chat_app.sessions() as db:
            ticket = db.scalar(select(Ticket))
            assert ticket is not None
            assert (ticket.requester, ticket.type, ticket.status) == (
                "tom@example.org",
                "access",
                "awaiting_identity",
            )
        assert f"JC-{ticket.id}" in page


def test_confirmation_links_per_address_are_limited(chat_app: App) -> None:
    with TestClient(create_app(chat_app)) as client:
        replies = [
            client.post(
                "/api/v1/chat", json={"message": "unsubscribe victim@example.org please"}
            ).json()
            for _ in range(4)
        ]
    assert [r["waiting_for"] for r in replies] == ["confirmation"] * 3 + ["address"]
    assert "already sent 3 confirmation links" in replies[3]["reply"]
    with chat_app.sessions() as db:
        assert db.scalar(select(func.count(Outgoing.id))) == 3


def test_suppression_api_needs_a_token_and_answers_the_scopes(
    web_app: App, client: TestClient
) -> None:
    with web_app.sessions.begin() as db:
        token = auth.create_token(db, "marketing", actor="test")
        optouts.apply(
            db, "eva@example.org", ("marketing_email", "targeted_ads"), message=None, ticket=None
        )
    url = "/api/v1/suppressions/Eva@Example.org"
    missing = client.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(url, headers={"Authorization": f"Basic {token}"}).status_code == 401
    ok = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert ok.json() == {
        "email": "eva@example.org",
        "suppressed": True,
        "scopes": ["marketing_email", "targeted_ads"],
        "all_scopes": {
            "marketing_email": True,
            "third_party_marketing": False,
            "targeted_ads": True,
        },
    }
    clean = client.get(
        "/api/v1/suppressions/new@example.org", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert clean["suppressed"] is False and clean["scopes"] == []
    bad = client.get(
        "/api/v1/suppressions/not-an-address", headers={"Authorization": f"Bearer {token}"}
    )
    assert bad.status_code == 400 and "not an e-mail address" in bad.json()["error"]
    # A staff session is not a token: the API is for machines with tokens.
    with web_app.sessions() as db:
        assert db.scalar(select(func.count(Suppression.id))) == 2

"""The public chat (answers, verified requests, limits) and the token API for marketing."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from privbot import optouts, pipeline
from privbot.app import App
from privbot.channels import chat
from privbot.config import load_settings
from privbot.models import ChatRequest, Event, Message, Outgoing, Suppression, Ticket
from privbot.outbox.queue import address_key
from privbot.outbox.sender import Mailer
from privbot.staff import auth
from privbot.web import create_app
from privbot.web.server import WebServer
from testing.apps import make_app, send_one, wait_until
from testing.servers import CaptureRelay, free_port

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

    web_app = client.app.state.web.app  # type: ignore[attr-defined]
    assert data["reply"] == answer_text(web_app, "Do you use cookies?").body.strip()


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


@pytest.mark.parametrize(
    "content_type",
    [
        # What a page on another site can post without the browser asking first, dressed up.
        "text/plain; application/json",
        "text/plain;charset=utf-8;type=application/json",
        "application/x-www-form-urlencoded; x=application/json",
        "multipart/form-data; boundary=application/json",
        # Not JSON as such, or JSON with a parameter we do not know.
        "application/json-patch+json",
        "application/jsonp",
        "application/json; profile=x",
        "",
    ],
)
def test_chat_accepts_only_exactly_json(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/api/v1/chat",
        content=b'{"message": "Do you use cookies?"}',
        headers={"content-type": content_type},
    )
    assert response.status_code == 415, content_type
    assert "send JSON" in response.json()["error"]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=UTF-8", 'application/json;charset="utf-8"'],
)
def test_chat_takes_json_with_or_without_a_charset(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/api/v1/chat",
        content=b'{"message": "Do you use cookies?"}',
        headers={"content-type": content_type},
    )
    assert response.status_code == 200 and response.json()["sections"] == ["Cookies"]


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
        assert "stop sending you marketing" in text  # what was asked, in our words only
        assert "unsubscribe me from your newsletter" not in text
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


def test_a_request_confirmed_through_the_mailed_link_counts_as_verified(
    db_url: str, relay: CaptureRelay
) -> None:
    """Following the link proves the address is the requester's: the ticket says verified,
    even where only verified senders are acted for."""
    app = make_app(db_url, secret_key="chat-secret", chat_rate="1000/60",
                   require_verified_sender="1")  # fmt: skip
    try:
        with TestClient(create_app(app)) as client:
            client.post("/api/v1/chat", json={
                "message": "Please send me a copy of all personal data you hold about "
                           "uma@example.org"})  # fmt: skip
            deliver(app, relay)
            path = LINK.search(relay.messages[0].get_content()).group(1)  # type: ignore[union-attr]
            client.post(path)
        with app.sessions() as db:
            ticket = db.scalar(select(Ticket))
            assert ticket is not None and ticket.sender_verified is True
            message = db.scalar(select(Message))
            assert message is not None
            confirmed = "pass: confirmed through the link mailed to uma@example.org"
            assert message.auth_result == confirmed
            [why] = db.scalars(select(Event.detail).where(Event.kind == "classified")).all()
            assert not any("not verified" in h for h in why["held_back"])
    finally:
        app.close()


def test_a_mailed_copy_of_a_chat_request_is_not_verified(db_url: str) -> None:
    """What makes a chat request verified is how it was stored, never what the mail says."""
    app = make_app(db_url)
    try:
        raw = (
            b"From: uma@example.org\r\nTo: support@junocloud.me\r\n"
            b"Subject: Request made in the privacy chat\r\nX-Privbot-Chat-Request: 1\r\n"
            b"Message-ID: <chat.forged@junocloud.me>\r\n\r\n"
            b"Please send me a copy of all personal data you hold about me.\r\n"
        )
        out = pipeline.receive(app, raw, source="smtp")
        with app.sessions() as db:
            ticket = db.get(Ticket, out.ticket)
            assert ticket is not None and ticket.sender_verified is None
    finally:
        app.close()


def test_confirmation_links_per_address_are_limited(chat_app: App) -> None:
    with TestClient(create_app(chat_app)) as client:
        replies = [
            client.post(
                "/api/v1/chat",
                json={"message": "Please unsubscribe victim@example.org from your newsletter."},
            ).json()
            for _ in range(4)
        ]
    assert [r["waiting_for"] for r in replies] == ["confirmation"] * 3 + ["address"]
    assert "already sent 3 confirmation links" in replies[3]["reply"]
    with chat_app.sessions() as db:
        assert db.scalar(select(func.count(Outgoing.id))) == 3


def ask_for(client: TestClient, address: str) -> dict[str, object]:
    """An opt-out asked in the chat, then `address` given: the answer to the address."""
    asked = client.post(
        "/api/v1/chat", json={"message": "Please unsubscribe me from your newsletter."}
    ).json()
    assert asked["waiting_for"] == "address", asked
    response = client.post("/api/v1/chat", json={"message": address, "session": asked["session"]})
    assert response.status_code == 200
    data: dict[str, object] = response.json()
    return data


def links(app: App) -> list[str]:
    with app.sessions() as db:
        return list(
            db.scalars(
                select(Outgoing.to_addr).where(Outgoing.kind == "confirm").order_by(Outgoing.id)
            )
        )


def age_links(app: App, by: timedelta) -> None:
    """Make every confirmation link queued so far older, as if `by` had passed."""
    with app.sessions.begin() as db:
        for row in db.scalars(select(Outgoing).where(Outgoing.kind == "confirm")):
            row.created_at = row.created_at - by


@pytest.mark.parametrize(
    ("typed", "mailbox"),
    [
        ("Victim@Example.org", "victim@example.org"),
        ("victim+newsletter@example.org", "victim@example.org"),
        ("VICTIM+a+b@EXAMPLE.ORG", "victim@example.org"),
        ("v.ictim@example.org", "v.ictim@example.org"),  # dots matter on most domains
        ("V.i.c.t.i.m+1@gmail.com", "victim@gmail.com"),
        ("vic.tim@GoogleMail.com", "victim@gmail.com"),  # the same mailboxes as gmail.com
    ],
)
def test_addresses_are_counted_as_the_mailbox_they_reach(typed: str, mailbox: str) -> None:
    assert address_key(typed) == mailbox


def test_the_per_address_cap_is_not_dodged_by_case_plus_tags_or_gmail_dots(db_url: str) -> None:
    app = make_app(db_url, secret_key="k", chat_rate="1000/60")
    try:
        with TestClient(create_app(app)) as client:
            typed = [
                "victim@gmail.com",
                "Victim+1@gmail.com",
                "v.i.c.t.i.m@googlemail.com",
                "VICTIM+2@GMail.com",
                "vic.tim+3@gmail.com",
            ]
            replies = [ask_for(client, address) for address in typed]
            assert [r["waiting_for"] for r in replies] == ["confirmation"] * 3 + ["address"] * 2
            assert "already sent 3 confirmation links" in str(replies[3]["reply"])
            # Each link went to the address as typed (lower-cased), not to the mailbox's key.
            assert links(app) == [a.lower() for a in typed[:3]]
            # Dots count outside Gmail: another person, with a cap of their own.
            assert ask_for(client, "v.ictim@example.org")["waiting_for"] == "confirmation"
            # The address cap is per day: two hours on, still no more links to the victim.
            age_links(app, timedelta(hours=2))
            assert ask_for(client, "victim+4@gmail.com")["waiting_for"] == "address"
            age_links(app, timedelta(hours=23))
            assert ask_for(client, "victim+4@gmail.com")["waiting_for"] == "confirmation"
    finally:
        app.close()


def test_no_link_goes_to_an_address_cut_out_of_a_longer_one(chat_app: App) -> None:
    with TestClient(create_app(chat_app)) as client:
        # Read as ASCII only, "jörg@example.de" used to be "rg@example.de": a stranger.
        answer = ask_for(client, "jörg@example.de")
        assert answer["waiting_for"] != "confirmation"
        assert ask_for(client, "ann@example.org.")["waiting_for"] == "confirmation"
    assert links(chat_app) == ["ann@example.org"]


def test_the_per_domain_cap_holds_for_an_hour(db_url: str) -> None:
    app = make_app(db_url, secret_key="k", chat_rate="1000/60", chat_links_per_domain_hour="2")
    try:
        with TestClient(create_app(app)) as client:
            assert ask_for(client, "ann@example.org")["waiting_for"] == "confirmation"
            assert ask_for(client, "bob+x@example.org")["waiting_for"] == "confirmation"
            refused = ask_for(client, "cy@EXAMPLE.ORG")
            assert refused["waiting_for"] == "address"
            assert "cannot send more confirmation links" in str(refused["reply"])
            assert ask_for(client, "cy@example.net")["waiting_for"] == "confirmation"
            # gmail.com and googlemail.com are one provider, so one domain for the cap.
            assert ask_for(client, "a@gmail.com")["waiting_for"] == "confirmation"
            assert ask_for(client, "b@googlemail.com")["waiting_for"] == "confirmation"
            assert ask_for(client, "c@gmail.com")["waiting_for"] == "address"
            age_links(app, timedelta(minutes=61))
            assert ask_for(client, "cy@example.org")["waiting_for"] == "confirmation"
        assert links(app) == [
            "ann@example.org", "bob+x@example.org", "cy@example.net", "a@gmail.com",
            "b@googlemail.com", "cy@example.org",
        ]  # fmt: skip
    finally:
        app.close()


def test_the_hourly_cap_on_all_links_is_shared_by_every_process(db_url: str) -> None:
    # Two apps on one database are what two `privbot serve` processes are.
    first = make_app(db_url, secret_key="k", chat_rate="1000/60", chat_links_per_hour="3")
    second = make_app(db_url, secret_key="k", chat_rate="1000/60", chat_links_per_hour="3")
    try:
        with TestClient(create_app(first)) as one, TestClient(create_app(second)) as two:
            assert ask_for(one, "ann@one.example")["waiting_for"] == "confirmation"
            assert ask_for(two, "bob@two.example")["waiting_for"] == "confirmation"
            assert ask_for(one, "cy@three.example")["waiting_for"] == "confirmation"
            refused = ask_for(two, "dee@four.example")
            assert refused["waiting_for"] == "address"
            assert "cannot send more confirmation links" in str(refused["reply"])
            assert ask_for(one, "eve@five.example")["waiting_for"] == "address"
            age_links(first, timedelta(minutes=61))
            assert ask_for(two, "dee@four.example")["waiting_for"] == "confirmation"
        assert len(links(first)) == 4
    finally:
        first.close()
        second.close()


def test_the_caps_hold_when_requests_arrive_at_once_in_two_processes(db_url: str) -> None:
    apps = [
        make_app(db_url, secret_key="k", chat_links_per_hour="3", chat_links_per_address_day="2")
        for _ in range(2)
    ]
    visitors = 10
    # Each visitor first asks for an opt-out; the addresses then arrive all at once, so the
    # links are decided side by side (no classifying in between to spread them out).
    sessions = [
        chat.answer(
            apps[n % 2], "Please unsubscribe me from your newsletter.", None,
            client=f"10.0.0.{n}", secret="k", base_url="http://127.0.0.1:8025",
        ).session
        for n in range(visitors)
    ]  # fmt: skip
    start = threading.Barrier(visitors)
    failures: list[BaseException] = []

    def visitor(n: int) -> None:
        try:
            start.wait(timeout=30)
            # Half of them the same mailbox (the address cap), all of them the global cap.
            address = f"victim+{n}@example.org" if n % 2 else f"person{n}@site{n}.example"
            chat.answer(
                apps[n % 2], address, sessions[n],
                client=f"10.0.0.{n}", secret="k", base_url="http://127.0.0.1:8025",
            )  # fmt: skip
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(visitors)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not failures, failures
        sent = links(apps[0])
        assert len(sent) == 3, sent
        assert sum(address_key(a) == "victim@example.org" for a in sent) <= 2, sent
    finally:
        for app in apps:
            app.close()


def test_the_confirmation_mail_carries_nothing_the_visitor_wrote(
    chat_app: App, relay: CaptureRelay
) -> None:
    lure = (
        "Please unsubscribe me from your newsletter. URGENT: your account is locked, call "
        "+1 900 555 0100 or sign in at http://evil.example/login to keep it"
    )
    with TestClient(create_app(chat_app)) as client:
        first = client.post("/api/v1/chat", json={"message": lure}).json()
        assert first["intents"] == ["opt_out"] and first["waiting_for"] == "address"
        second = client.post(
            "/api/v1/chat",
            json={"message": "victim@example.org -- WIN A PRIZE", "session": first["session"]},
        ).json()
        assert second["waiting_for"] == "confirmation"
        deliver(chat_app, relay)
        (letter,) = relay.messages
        raw = letter.as_bytes().decode("utf-8", "replace").lower()
        for words in ("urgent", "locked", "900 555", "evil.example", "sign in", "prize"):
            assert words not in raw, words
        text = letter.get_content()
        assert "stop sending you marketing" in text and letter["Subject"] == (
            "Please confirm your privacy request"
        )
        path = LINK.search(text).group(1)  # type: ignore[union-attr]
        # The page behind the link shows what was asked, for the owner to judge.
        page = client.get(path)
        assert page.status_code == 200 and "evil.example" in page.text


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


def test_a_token_without_the_read_scope_is_refused_and_a_revoked_one_at_once(
    web_app: App, client: TestClient
) -> None:
    with web_app.sessions.begin() as db:
        reader = auth.create_token(db, "marketing", actor="test")
        writer = auth.create_token(db, "crm", scopes=(auth.WRITE_SUPPRESSIONS,), actor="test")
    url = "/api/v1/suppressions/eva@example.org"

    def get(token: str) -> httpx.Response:
        return client.get(url, headers={"Authorization": f"Bearer {token}"})

    assert get(reader).status_code == 200
    refused = get(writer)
    assert refused.status_code == 403 and "may not read" in refused.json()["error"]
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    with web_app.sessions.begin() as db:
        assert auth.revoke_token(db, "marketing", actor="test") == 1
    gone = get(reader)  # no cache to run out: the very next request
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]
    with web_app.sessions() as db:
        kinds = db.scalars(select(Event.kind).where(Event.kind.like("token_%"))).all()
    assert sorted(kinds) == ["token_created", "token_created", "token_revoked"]


# -- the body limit, on a real server: uvicorn on loopback, as `privbot serve` runs it -----


@pytest.fixture
def served(sqlite_url: str) -> Iterator[tuple[App, int]]:
    port = free_port()
    app = make_app(sqlite_url, secret_key="k", chat_rate="1000/60", web=f"127.0.0.1:{port}")
    server = WebServer(app, "127.0.0.1", port).start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn started")
        yield app, server.port
    finally:
        server.stop()
        app.close()


def _start_post(port: int, *headers: str, content_type: str = "application/json") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = [
        "POST /api/v1/chat HTTP/1.1", f"Host: 127.0.0.1:{port}",
        f"Content-Type: {content_type}", *headers,
    ]  # fmt: skip
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    return sock


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _answer_then_close(sock: socket.socket, within: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        raise AssertionError(
            f"no answer and close within {within} s, the server is still reading: {received!r}"
        ) from None
    return received


def test_an_oversized_chunked_body_is_refused_before_it_ends(served: tuple[App, int]) -> None:
    _, port = served
    sock = _start_post(port, "Transfer-Encoding: chunked")
    try:
        # Just over the limit, and the body never finishes: reading it whole would wait forever.
        sock.sendall(_chunk(b'{"message": "' + b"x" * 20_000) + _chunk(b"x" * 20_000))
        answer = _answer_then_close(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"connection: close" in answer.lower() and b"request too large" in answer


def test_a_declared_oversized_body_is_refused_without_reading_it(served: tuple[App, int]) -> None:
    _, port = served
    sock = _start_post(port, f"Content-Length: {200 * 1024 * 1024}")
    try:
        sock.sendall(b'{"message": "' + b"x" * 1000)  # of 200 MiB announced
        answer = _answer_then_close(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_flood_of_body_is_cut_off_early(served: tuple[App, int], content_type: str) -> None:
    """The 200 MiB post of the report, streamed as fast as loopback takes it (64 MiB here);
    refused as too large, or at once for its type: either way no more of it is read."""
    _, port = served
    sock = _start_post(port, "Transfer-Encoding: chunked", content_type=content_type)
    block = _chunk(b"x" * (256 * 1024))
    sent = 0
    started = time.monotonic()
    try:
        while sent < 64 * 1024 * 1024:
            sock.sendall(block)
            sent += len(block)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up: what it should do
    finally:
        sock.close()
    # What the kernel buffers on loopback took before the close was seen, and no more.
    assert sent < 16 * 1024 * 1024, f"the server read {sent / 2**20:.0f} MiB of it"
    assert time.monotonic() - started < 10
    # And it still answers the next visitor.
    question = b'{"message": "Do you use cookies?"}'
    other = _start_post(port, f"Content-Length: {len(question)}", "Connection: close")
    try:
        other.sendall(question)
        assert _answer_then_close(other, within=15).startswith(b"HTTP/1.1 200 ")
    finally:
        other.close()

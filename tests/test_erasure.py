"""Erasure after a deletion request: after the hold, everything of the person goes but the
audit facts and their opt-outs; legal holds stop it (and ordinary retention) until released."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from privbot import erasure, optouts, pipeline, retention
from privbot.app import App
from privbot.audit import record
from privbot.config import ConfigError, load_settings
from privbot.erasure import HoldError, HoldTarget
from privbot.models import (
    ChatRequest,
    Event,
    Example,
    LegalHold,
    Message,
    Outgoing,
    Suppression,
    Ticket,
    utcnow,
)
from privbot.outbox.queue import address_key
from privbot.staff import actions, auth, views
from privbot.tickets import ref
from testing.apps import mail, make_app
from tests.cli.test_main import privbot

DELETE = "Hello,\n\nplease delete my account and all my personal data: {secret}.\n\nThanks\n"
STAFF = "ada@junocloud.me"


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    app = make_app(db_url)
    try:
        yield app
    finally:
        app.close()


def _deletion(app: App, sender: str, secret: str, *, done_days_ago: float | None) -> int:
    """A deletion request's ticket, its reply sent, set done by staff so long ago (or open)."""
    raw = mail(sender=sender, subject=f"Delete me {secret}", body=DELETE.format(secret=secret))
    outcome = pipeline.receive(app, raw, source="file")
    assert outcome.ticket is not None and outcome.reply is not None, outcome
    with app.sessions.begin() as s:
        s.execute(update(Outgoing).where(Outgoing.id == outcome.reply).values(status="sent"))
    if done_days_ago is not None:
        actions.set_status(app, outcome.ticket, "done", actor=STAFF)
        with app.sessions.begin() as s:
            s.execute(
                update(Ticket)
                .where(Ticket.id == outcome.ticket)
                .values(closed_at=utcnow() - timedelta(days=done_days_ago))
            )
    return outcome.ticket


def _person(app: App, address: str) -> dict[str, Any]:
    """Everything stored about a person, to compare before and after."""
    key = address_key(address)
    with app.sessions() as s:
        scope = erasure.person_scope(s, key)
        return {
            "scope": scope,
            "messages": sorted(
                s.execute(
                    select(Message.id, Message.raw, Message.subject, Message.sender).where(
                        Message.id.in_(scope.messages)
                    )
                ).all()
            ),
            "replies": sorted(
                s.execute(
                    select(Outgoing.id, Outgoing.raw, Outgoing.to_addr).where(
                        Outgoing.id.in_(scope.replies)
                    )
                ).all()
            ),
            "tickets": sorted(
                s.execute(
                    select(Ticket.id, Ticket.requester, Ticket.subject, Ticket.erased_at).where(
                        Ticket.id.in_(scope.tickets)
                    )
                ).all()
            ),
            "events": sorted(
                s.execute(
                    select(Event.id, Event.actor, Event.detail).where(
                        Event.ticket_id.in_(scope.tickets)
                    )
                ).all(),
                key=lambda e: e[0],
            ),
        }


def _everything_of(app: App, ticket_id: int) -> str:
    """Every stored value of a ticket's rows and events as one text, to search for content."""
    with app.sessions() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        rows: list[object] = [ticket.requester, ticket.subject, ticket.reply_to]
        for m in s.scalars(select(Message).where(Message.ticket_id == ticket_id)):
            rows += [m.raw, m.subject, m.sender, m.envelope_from, m.message_id, m.reason]
        for o in s.scalars(select(Outgoing).where(Outgoing.ticket_id == ticket_id)):
            rows += [o.raw, o.subject, o.to_addr, o.in_reply_to, o.last_error]
        for e in s.scalars(select(Event).where(Event.ticket_id == ticket_id)):
            if not e.kind.startswith("opt_out_"):  # the opt-out register keeps the address
                rows += [e.actor, e.detail]
    return repr(rows)


def _add_chat(app: App, address: str, message_id: int | None, nonce: str) -> tuple[int, int]:
    """A confirmed chat request (its mail is `message_id`) or one never confirmed, with the
    confirmation link mailed for it and the events that recorded that. Returns the ids."""
    with app.sessions.begin() as s:
        chat = ChatRequest(
            session="s" * 24, text=f"delete me {nonce}", intents=["deletion"], nonce=nonce,
            address=address, status="confirmed" if message_id else "link_sent",
            client="203.0.113.7", created_at=utcnow() - timedelta(days=2),
            message_id=message_id,
        )  # fmt: skip
        link = Outgoing(
            message_id=f"confirm-{nonce}@junocloud.me", to_addr=address, subject="Confirm",
            raw=f"To: {address}\nSubject: Confirm\n\nhttps://x/confirm/{nonce}".encode(),
            kind="confirm", status="sent", created_at=utcnow() - timedelta(days=2),
        )  # fmt: skip
        s.add_all([chat, link])
        s.flush()
        record(s, "chat_link_queued", actor="chat", address=address, request=chat.id,
               intents=["deletion"], outbox=link.id)  # fmt: skip
        record(s, "reply_sent", outbox=link.id, to=address)
        if message_id:
            record(s, "chat_request_confirmed", actor=address, request=chat.id,
                   message_ref=message_id)  # fmt: skip
        return chat.id, link.id


def test_a_done_deletion_erases_the_person_after_the_hold_and_keeps_the_facts(app: App) -> None:
    ann = "Ann Example <ann@example.org>"
    erased = _deletion(app, ann, "SECRET-ANN", done_days_ago=40)
    # More of Ann: an out-of-office from another spelling of her mailbox (screened, no
    # ticket), a staff note naming her, a correction learned from her mail, chat requests,
    # and an opt-out that must stay.
    ooo = mail(sender="Ann Example <Ann+Work@Example.org>", subject="Out of office SECRET-OOO",
               body="I am away. SECRET-OOO\n",
               headers={"Auto-Submitted": "auto-replied"})  # fmt: skip
    away = pipeline.receive(app, ooo, source="file")
    assert away.status == "screened" and away.ticket is None
    actions.add_note(app, erased, "Called Ann Example; ann@example.org gone from billing",
                     actor=STAFF)  # fmt: skip
    with app.sessions() as s:
        first = s.scalar(select(Message.id).where(Message.ticket_id == erased))
        kinds_before = list(
            s.scalars(select(Event.kind).where(Event.ticket_id == erased).order_by(Event.id))
        )
    assert first is not None
    confirmed, link = _add_chat(app, "ann@example.org", first, "ann-confirmed")
    unconfirmed, _ = _add_chat(app, "ANN@example.org", None, "ann-unconfirmed")
    with app.sessions.begin() as s:
        ticket = s.get(Ticket, erased)
        s.add(Example(text="please delete SECRET-ANN", intent="deletion", language="en",
                      ticket_id=erased, message_id=first, created_by=STAFF))  # fmt: skip
        optouts.apply(s, "ann@example.org", ("marketing_email",), message=None, ticket=ticket,
                      actor=STAFF)  # fmt: skip
    # Others: inside the hold, under a legal hold, and a person whose address starts alike.
    recent = _deletion(app, "cat@example.org", "SECRET-CAT", done_days_ago=10)
    held = _deletion(app, "bob@example.org", "SECRET-BOB", done_days_ago=40)
    other = _deletion(app, "anna@example.org", "SECRET-ANNA", done_days_ago=None)
    with app.sessions.begin() as s:
        s.add(Example(text="SECRET-ANNA wants out", intent="deletion", language="en",
                      ticket_id=other, created_by=STAFF))  # fmt: skip
    erasure.place_hold(app, HoldTarget(ticket_id=held), reason="court case 4711", actor=STAFF)
    untouched = {a: _person(app, a) for a in ("cat@example.org", "bob@example.org",
                                              "anna@example.org")}  # fmt: skip

    report = retention.run(app)

    assert (report.people_erased, report.erasures_on_hold, report.erasures_waiting) == (1, 1, 0)
    everything = _everything_of(app, erased)
    for gone in ("SECRET-ANN", "ann@example.org", "Ann Example", "ann+work"):
        assert gone.lower() not in everything.lower(), gone
    alias = erasure.pseudonym(erased)
    with app.sessions() as s:
        ticket = s.get(Ticket, erased)
        assert ticket is not None
        # The facts stay: what was asked, when, what was done.
        assert (ticket.type, ticket.status, ticket.requester) == ("deletion", "done", alias)
        assert "deletion" in ticket.intents and ticket.closed_at and ticket.erased_at
        screened = s.get(Message, away.message)
        assert screened is not None and b"SECRET-OOO" not in screened.raw
        assert screened.sender == alias and "SECRET" not in (screened.subject or "")
        assert screened.reason is not None and screened.reason.startswith("auto-reply: ")
        assert b"Auto-Submitted: auto-generated" in screened.raw  # never answered if retried
        chats = {c.id: c for c in s.scalars(select(ChatRequest))}
        assert unconfirmed not in chats
        assert chats[confirmed].client is None and chats[confirmed].address == alias
        assert "ann-confirmed" not in chats[confirmed].text
        confirm_link = s.get(Outgoing, link)
        assert confirm_link is not None and confirm_link.to_addr == alias
        assert b"ann-confirmed" not in confirm_link.raw
        examples = list(s.scalars(select(Example.text)))
        assert examples == ["SECRET-ANNA wants out"]
        loose = list(s.scalars(select(Event).where(Event.ticket_id.is_(None))))
        # The opt-out stays as it was, with its event: or marketing would mail her again.
        suppression = s.scalar(select(Suppression))
        kinds = list(
            s.scalars(select(Event.kind).where(Event.ticket_id == erased).order_by(Event.id))
        )
        done = s.scalar(select(Event).where(Event.ticket_id == erased, Event.kind == "data_erased"))
        changed = s.scalar(
            select(Event).where(Event.ticket_id == erased, Event.kind == "status_changed")
        )
        note = s.scalar(select(Event).where(Event.ticket_id == erased, Event.kind == "note"))
        opt_out = s.scalar(
            select(Event).where(Event.ticket_id == erased, Event.kind == "opt_out_applied")
        )
    assert not any("ann@example.org" in repr((e.actor, e.detail)).lower() for e in loose)
    assert not any("ann-unconfirmed" in repr(e.detail) for e in loose)
    assert suppression is not None and suppression.address == "ann@example.org"
    assert suppression.withdrawn_at is None and suppression.ticket_id == erased
    assert opt_out is not None and opt_out.detail["address"] == "ann@example.org"
    # Every event of before is still there, plus what the erasure did, in counts.
    assert kinds[: len(kinds_before)] == kinds_before and "data_erased" in kinds
    assert changed is not None and changed.actor == STAFF and changed.detail["to"] == "done"
    assert note is not None and note.detail["text"] == (
        f"Called {erasure.NAME_PLACEHOLDER}; {alias} gone from billing"
    )
    assert done is not None
    assert done.detail["asked"] == "deletion" and done.detail["request"] == ref(erased)
    # Her mail and the out-of-office; the reply and the two chat confirmation links.
    assert done.detail["messages_erased"] == 2 and done.detail["replies_erased"] == 3
    assert done.detail["chat_requests_deleted"] == 1 and done.detail["examples_deleted"] == 1
    assert done.detail["suppressions_kept"] == 1 and done.detail["hold_days"] == 30
    assert "SECRET" not in repr(done.detail)
    # The ticket page still renders, with placeholders.
    detail = views.ticket_detail(app, erased)
    assert detail is not None and detail["requester"] == alias
    assert all("SECRET" not in m["text"] for m in detail["thread"])
    assert all(w.get("matched") is None or all(not m["sentence"] for m in w["matched"])
               for w in detail["why"])  # fmt: skip
    # Nobody else was touched.
    for address, before in untouched.items():
        assert _person(app, address) == before, address
    assert actions.draft_reply(app, recent, "Hello").to == "cat@example.org"
    with pytest.raises(actions.ReviewError, match="erased"):
        actions.draft_reply(app, erased, "Hello")

    # A second run changes nothing.
    ann_after = _person(app, alias)
    again = retention.run(app)
    assert (again.people_erased, again.erasures_on_hold) == (0, 1)
    assert _person(app, alias) == ann_after
    assert _person(app, "bob@example.org") == untouched["bob@example.org"]

    # Released, the held person goes at the next run; the hold stays as a fact.
    erasure.release_hold(app, HoldTarget(ticket_id=held), reason="case closed", actor=STAFF)
    assert retention.run(app).people_erased == 1
    assert "SECRET-BOB" not in _everything_of(app, held)
    with app.sessions() as s:
        hold_events = list(
            s.execute(select(Event.kind, Event.actor, Event.detail).where(Event.ticket_id == held))
        )
        hold = s.scalar(select(LegalHold))
    placed = [d for k, a, d in hold_events if k == "legal_hold_placed" and a == STAFF]
    released = [d for k, a, d in hold_events if k == "legal_hold_released" and a == STAFF]
    assert placed[0]["reason"] == "court case 4711" and released[0]["reason"] == "case closed"
    assert hold is not None and hold.released_by == STAFF and hold.ticket_id == held
    assert _person(app, "cat@example.org") == untouched["cat@example.org"]


def test_a_person_on_hold_keeps_everything_from_ordinary_retention_too(app: App) -> None:
    ticket = _deletion(app, "eve@example.org", "SECRET-EVE", done_days_ago=400)
    hold = erasure.place_hold(
        app, erasure.target("Eve+Legal@Example.org"), reason="authority inquiry", actor=STAFF
    )
    with app.sessions() as s:
        assert s.get(LegalHold, hold).address == "eve@example.org"  # type: ignore[union-attr]
    before = _person(app, "eve@example.org")
    report = retention.run(app)
    assert report.erasures_on_hold == 1 and report.messages_redacted == 0
    assert report.tickets_redacted == 0
    assert _person(app, "eve@example.org") == before
    with pytest.raises(HoldError, match="already on hold"):
        erasure.place_hold(app, erasure.target("eve@example.org"), reason="again", actor=STAFF)
    erasure.release_hold(app, erasure.target("eve@example.org"), reason="done", actor=STAFF)
    with pytest.raises(HoldError, match="not on hold"):
        erasure.release_hold(app, erasure.target("eve@example.org"), reason="x", actor=STAFF)
    assert retention.run(app).people_erased == 1
    assert "SECRET-EVE" not in _everything_of(app, ticket)
    with pytest.raises(HoldError, match="nothing is left to hold"):
        erasure.place_hold(app, HoldTarget(ticket_id=ticket), reason="late", actor=STAFF)


def test_the_erasure_waits_while_a_request_of_theirs_is_open_or_in_its_hold(app: App) -> None:
    done = _deletion(app, "fay@example.org", "SECRET-FAY", done_days_ago=40)
    second = _deletion(app, "fay@example.org", "SECRET-FAY-2", done_days_ago=None)
    with app.sessions() as s:
        our_reply = s.scalar(select(Outgoing.message_id).where(Outgoing.ticket_id == done))
    assert retention.run(app).erasures_waiting == 1  # the second is open
    assert "SECRET-FAY" in _everything_of(app, done)
    actions.set_status(app, second, "done", actor=STAFF)
    assert retention.run(app).erasures_waiting == 1  # the second is in its own hold
    with app.sessions.begin() as s:
        s.execute(
            update(Ticket)
            .where(Ticket.id == second)
            .values(closed_at=utcnow() - timedelta(days=31))
        )
    assert retention.run(app).people_erased == 1
    for ticket in (done, second):
        assert "SECRET-FAY" not in _everything_of(app, ticket)
        assert "fay@example.org" not in _everything_of(app, ticket)
    # A later mail of hers, even in reply to our old reply, is not put in the erased thread.
    again = mail(sender="fay@example.org", subject="Delete me again",
                 body=DELETE.format(secret="SECRET-FAY-3"),
                 headers={"In-Reply-To": f"<{our_reply}>"})  # fmt: skip
    later = pipeline.receive(app, again, source="file")
    assert later.ticket is not None and later.ticket not in (done, second)


def test_the_hold_is_a_setting(db_url: str) -> None:
    app = make_app(db_url, DELETION_HOLD_DAYS="5")
    try:
        ticket = _deletion(app, "gus@example.org", "SECRET-GUS", done_days_ago=6)
        assert retention.run(app).people_erased == 1
        assert "SECRET-GUS" not in _everything_of(app, ticket)
        assert erasure.erased_note(ticket, 5) in _everything_of(app, ticket)
    finally:
        app.close()
    with pytest.raises(ConfigError, match="PRIVBOT_DELETION_HOLD_DAYS"):
        load_settings({"PRIVBOT_DELETION_HOLD_DAYS": "0"})
    assert load_settings({}).deletion_hold_days == 30


def test_privbot_retention_hold_and_release(db_url: str) -> None:
    app = make_app(db_url)
    try:
        ticket = _deletion(app, "hal@example.org", "SECRET-HAL", done_days_ago=40)
        with app.sessions.begin() as s:
            auth.add_staff(s, STAFF, "a long password")
    finally:
        app.close()
    env = {"PRIVBOT_DATABASE_URL": db_url, "PRIVBOT_STAFF": STAFF}
    placed = privbot("retention", "hold", ref(ticket), "--reason", "dispute", env=env)
    assert placed.returncode == 0, placed.stderr
    assert f"on {ref(ticket)}" in placed.stdout
    twice = privbot("retention", "hold", ref(ticket), "--reason", "dispute", env=env)
    assert twice.returncode == 1 and "already on hold" in twice.stderr
    listed = privbot("retention", "holds", env=env)
    assert ref(ticket) in listed.stdout and "dispute" in listed.stdout
    ran = privbot("retention", "run", env=env)
    assert "people erased: 0" in ran.stdout and "erasures on hold: 1" in ran.stdout
    released = privbot("retention", "release", ref(ticket), "--reason", "settled", env=env)
    assert released.returncode == 0, released.stderr
    assert "people erased: 1" in privbot("retention", "run", env=env).stdout

"""Finding tickets, closed ones too, on SQLite (FTS5) and PostgreSQL (tsvector): by reference,
by address, by words of the subject and of what the requester wrote; and the words leave
the index when retention or erasure takes them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from privbot import pipeline, retention
from privbot.app import App
from privbot.models import Outgoing, Ticket, TicketSearch, utcnow
from privbot.search import BODY_CHARS
from privbot.staff import actions, views
from testing.apps import mail, make_app

ADA = "ada@junocloud.me"


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    app = make_app(db_url)
    try:
        yield app
    finally:
        app.close()


def _request(app: App, sender: str, subject: str, body: str, **headers: str) -> int:
    out = pipeline.receive(
        app, mail(sender=sender, subject=subject, body=body, headers=headers), source="file"
    )
    assert out.ticket is not None, out
    return out.ticket


def _found(app: App, q: str, **filters: str) -> list[int]:
    return [r["id"] for r in views.queue(app, views.QueueFilter(q=q, **filters))["rows"]]


def test_a_closed_ticket_is_found_by_reference_address_and_words_of_its_body(app: App) -> None:
    passport = _request(
        app, "Jana Novak <jana.novak@example.cz>", "Copy of my data",
        "Hello,\n\nplease send me a copy of my personal data. I attach my passport scan.\n\n"
        "Jana\n",
    )  # fmt: skip
    other = _request(app, "bo@example.org", "Delete my account", "Please delete my account.")
    actions.set_status(app, passport, "done", actor=ADA)
    assert views.queue(app, views.QueueFilter())["rows"][0]["id"] == other  # closed: not open

    assert _found(app, "passport") == [passport]  # a word of the body, closed or not
    assert _found(app, "PASSPORT scan") == [passport]  # every word, any case
    assert _found(app, "passp") == [passport]  # the beginning of a word
    assert _found(app, "copy data") == [passport]  # words of the subject
    assert _found(app, "passport delete") == []
    for ref in (f"JC-{passport}", f"jc{passport}", f"jc-{passport}", f"#{passport}", str(passport)):
        assert _found(app, ref) == [passport], ref
    assert _found(app, "jana.novak@") == [passport]  # an address, by its beginning
    assert _found(app, "jana.novak@example.cz") == [passport]
    assert _found(app, "novak") == [passport]  # a word of the address
    # The status filter narrows a search; "done" and "all" show closed tickets.
    assert _found(app, "passport", status="open") == []
    assert _found(app, "", status="done") == [passport]
    assert sorted(_found(app, "", status="all")) == sorted([passport, other])


def test_follow_ups_add_their_words_and_accents_do_not_matter(app: App) -> None:
    first = _request(
        app, "claire@example.fr", "Mes données",
        "Bonjour, je voudrais une copie de mes données personnelles.", **{"Message-ID": "<c1@x>"}
    )  # fmt: skip
    assert _found(app, "donnees") == [first]  # folded the same way on both databases
    assert _found(app, "DONNÉES") == [first]
    assert _found(app, "Straßburg") == []
    pipeline.receive(
        app,
        mail(sender="claire@example.fr", subject="Re: Mes données", body="J'habite à Straßburg.",
             headers={"In-Reply-To": "<c1@x>"}),
        source="file",
    )  # fmt: skip
    assert _found(app, "strassburg") == [first]
    assert _found(app, "habite") == [first]


def test_search_text_is_bounded_and_query_syntax_is_only_words(app: App) -> None:
    huge = " ".join(f"word{i}" for i in range(40_000))
    ticket = _request(app, "big@example.org", "Big one", f"Please delete my data. {huge}")
    with app.sessions() as s:
        row = s.get(TicketSearch, ticket)
    assert row is not None and len(row.body) <= BODY_CHARS and len(row.head) < 100
    assert _found(app, "word5") == [ticket]
    assert _found(app, "word39999") == []  # past the bound: not kept
    # What FTS5 or to_tsquery would read as syntax is searched as words, never an error.
    for hostile in ('"', "'", "a OR b", "NEAR(a b)", "x*", "!&|", "col:word", "(", "\\", "%_",
                    "' ; DROP TABLE tickets; --", "big\x00one", "\u202ebig"):  # fmt: skip
        views.queue(app, views.QueueFilter(q=hostile))
    assert _found(app, "big OR nothing") == []  # OR is a word here, and not in the ticket


def test_redaction_and_erasure_take_the_words_out_of_the_index(app: App) -> None:
    old = _request(app, "old@example.org", "SECRET-OLD request", "Please delete SECRETWORD now.")
    with app.sessions.begin() as s:
        s.execute(
            update(Ticket).where(Ticket.id == old)
            .values(status="rejected", closed_at=utcnow() - timedelta(days=400))
        )  # fmt: skip
    assert _found(app, "secretword") == [old]
    retention.run(app)
    assert _found(app, "secretword") == [] and _found(app, "secret old") == []
    assert _found(app, f"JC-{old}") == [old]  # the ticket itself is still there
    assert _found(app, "removed retention") == [old]  # it says what it now says

    gone = _request(app, "eve@example.org", "Delete all", "Delete my account ERASEME please.")
    actions.set_status(app, gone, "done", actor=ADA)
    with app.sessions.begin() as s:
        s.execute(
            update(Ticket).where(Ticket.id == gone).values(closed_at=utcnow() - timedelta(days=40))
        )
        s.execute(update(Outgoing).values(status="sent"))  # nothing of theirs still in flight
    assert retention.run(app).people_erased == 1
    assert _found(app, "eraseme") == [] and _found(app, "eve@example.org") == []
    assert _found(app, "eve") == []


def test_views_sorts_and_who_moved_last(app: App) -> None:
    now = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    ids = {}
    for name, days in (("late", -2), ("today", 0), ("week", 6), ("later", 7)):
        ids[name] = _request(app, f"{name}@example.org", f"Request {name}", "Delete my data.",
                             **{"Message-ID": f"<{name}@x>"})  # fmt: skip
        with app.sessions.begin() as s:
            s.execute(update(Ticket).where(Ticket.id == ids[name])
                      .values(due_at=now + timedelta(days=days)))  # fmt: skip
    actions.assign(app, ids["week"], None, actor=ADA)

    def got(**filters: str) -> list[int]:
        return [r["id"] for r in views.queue(app, views.QueueFilter(**filters))["rows"]]

    assert got(due="overdue") == [ids["late"]]
    assert got(due="week") == [ids["today"], ids["week"]]
    assert got() == [ids[n] for n in ("late", "today", "week", "later")]  # due first
    assert got(sort="-due") == [ids[n] for n in ("later", "week", "today", "late")]
    assert got(sort="-created") == [ids[n] for n in ("later", "week", "today", "late")]
    assert got(sort="created") == [ids[n] for n in ("late", "today", "week", "later")]
    assert got(sort="-updated")[0] == ids["week"]  # assigned last: the last to change

    # The requester writes again: the ticket says so until a person answers.
    def replied() -> dict[int, bool]:
        return {r["id"]: r["replied"] for r in views.queue(app, views.QueueFilter())["rows"]}

    assert not any(replied().values())  # the automatic answer to the opening mail
    pipeline.receive(
        app, mail(sender="today@example.org", subject="Re: Request today", body="Any news?",
                  headers={"In-Reply-To": "<today@x>"}), source="file",
    )  # fmt: skip
    assert [t for t, r in replied().items() if r] == [ids["today"]]  # though auto-answered
    actions.send_reply(app, ids["today"], "We are on it.", actor=ADA)
    assert not any(replied().values())


def test_a_bare_number_is_a_reference_and_a_word(app: App) -> None:
    first = _request(app, "a@example.org", "Order question", "My order 48213 never came.")
    assert _found(app, str(first)) == [first]
    assert _found(app, "48213") == [first]
    assert _found(app, "4821") == []  # a number is matched whole
    with app.sessions() as s:
        assert s.scalar(select(TicketSearch.body).where(TicketSearch.ticket_id == first))

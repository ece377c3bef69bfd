"""Migrations that change stored data: rows written by an older privbot come out as the
current code reads them, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import select

from privbot import pipeline, retention
from privbot.db import MIGRATIONS, make_engine
from privbot.models import LegalHold, Message, Outgoing, Ticket
from privbot.staff import auth, views
from testing.apps import mail, make_app

NOW = datetime(2026, 11, 30, 12, 0)
# The tables as revision 0004 left them, only the columns these rows need.
TICKETS = sa.table(
    "tickets", *(sa.column(n) for n in ("id", "type", "status", "requester", "subject")),
    sa.column("intents", sa.JSON()), sa.column("created_at"), sa.column("updated_at"),
)  # fmt: skip
MESSAGES = sa.table(
    "messages", *(sa.column(n) for n in ("id", "idem_key", "message_id", "source", "size",
    "status", "attempts", "ticket_id", "sender")), sa.column("raw", sa.LargeBinary()),
    sa.column("received_at"),
)  # fmt: skip
OUTBOX = sa.table(
    "outbox", *(sa.column(n) for n in ("id", "message_id", "ticket_id", "in_reply_to", "to_addr",
    "subject", "kind", "status", "attempts")), sa.column("raw", sa.LargeBinary()),
    sa.column("next_attempt_at"), sa.column("created_at"),
)  # fmt: skip


def _upgrade_to(url: str, revision: str) -> None:
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_message_ids_stored_with_brackets_become_the_parsers_form(db_url: str) -> None:
    _upgrade_to(db_url, "0004")
    stored = {
        "key1": "<old1@example.org>",
        "key2": "<old2@example.org> (Alice's message)",
        "key3": "old3@example.org",  # already canonical: left alone
        "key4": "<" + "x" * 899,  # an overlong id the old store cut short
    }
    engine = make_engine(db_url)  # no explicit ids: PostgreSQL's sequences must count them
    with engine.begin() as conn:
        ticket = conn.execute(TICKETS.insert().returning(TICKETS.c.id), [{
            "type": "access", "status": "awaiting_identity",
            "requester": "old@example.org", "subject": "My data", "intents": ["data_access"],
            "created_at": NOW, "updated_at": NOW,
        }]).scalar_one()  # fmt: skip
        conn.execute(MESSAGES.insert(), [{
            "idem_key": key, "message_id": value, "source": "file", "size": 1,
            "status": "handled", "attempts": 0, "ticket_id": ticket, "sender": "old@example.org",
            "raw": b"x", "received_at": NOW,
        } for key, value in stored.items()])  # fmt: skip
        conn.execute(OUTBOX.insert(), [{
            "message_id": "privbot.1@junocloud.me", "ticket_id": ticket,
            "in_reply_to": "<old1@example.org>", "to_addr": "old@example.org",
            "subject": "Re: My data [JC-1]", "kind": "staff", "status": "sent", "attempts": 1,
            "raw": b"x", "next_attempt_at": NOW, "created_at": NOW,
        }])  # fmt: skip
    engine.dispose()

    app = make_app(db_url)  # migrates to the newest revision, as `privbot serve` does
    with app.sessions() as s:
        ids = {k: i for k, i in s.execute(select(Message.idem_key, Message.message_id))}
        outgoing = s.scalar(select(Outgoing))
    assert ids == {
        "key1": "old1@example.org", "key2": "old2@example.org", "key3": "old3@example.org",
        "key4": None,
    }  # fmt: skip
    assert outgoing is not None and outgoing.in_reply_to == "old1@example.org"
    assert outgoing.message_id == "privbot.1@junocloud.me"

    # A follow-up to the person's own mail of before the upgrade finds its ticket.
    follow = mail(sender="old@example.org", subject="Any news?",
                  headers={"In-Reply-To": "<old2@example.org>"})  # fmt: skip
    assert pipeline.receive(app, follow, source="file").ticket == ticket
    app.close()


def test_tokens_made_before_scopes_keep_reading_suppressions(db_url: str) -> None:
    _upgrade_to(db_url, "0005")
    tokens = sa.table("api_tokens", sa.column("name"), sa.column("token_hash"),
                      sa.column("created_at"))  # fmt: skip
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(tokens.insert(), [{
            "name": "marketing", "token_hash": hashlib.sha256(b"pbt_old").hexdigest(),
            "created_at": NOW,
        }])  # fmt: skip
    engine.dispose()

    app = make_app(db_url)
    with app.sessions.begin() as s:
        row = auth.check_token(s, "pbt_old")
        assert row is not None and auth.token_scopes(row) == (auth.READ_SUPPRESSIONS,)
        auth.revoke_token(s, "marketing")
    with app.sessions() as s:
        assert auth.check_token(s, "pbt_old") is None
    app.close()


def test_deletions_done_before_the_upgrade_are_erased_after_their_hold(db_url: str) -> None:
    _upgrade_to(db_url, "0007")
    closed = sa.table("tickets", sa.column("id"), sa.column("closed_at"))
    done_at = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=40)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        ticket = conn.execute(TICKETS.insert().returning(TICKETS.c.id), [{
            "type": "deletion", "status": "done", "requester": "old@example.org",
            "subject": "Delete SECRET-OLD", "intents": ["deletion"],
            "created_at": NOW, "updated_at": NOW,
        }]).scalar_one()  # fmt: skip
        conn.execute(closed.update().where(closed.c.id == ticket).values(closed_at=done_at))
        conn.execute(MESSAGES.insert(), [{
            "idem_key": "k-old", "message_id": "old@example.org", "source": "file", "size": 1,
            "status": "handled", "attempts": 0, "ticket_id": ticket, "sender": "old@example.org",
            "raw": b"From: old@example.org\n\nDelete SECRET-OLD", "received_at": NOW,
        }])  # fmt: skip
    engine.dispose()

    app = make_app(db_url)  # 0008: tickets.erased_at and legal_holds
    with app.sessions() as s:
        assert s.get(Ticket, ticket).erased_at is None  # type: ignore[union-attr]
        assert s.scalar(select(LegalHold)) is None
    assert retention.run(app).people_erased == 1
    with app.sessions() as s:
        row = s.get(Ticket, ticket)
        raw = s.scalar(select(Message.raw).where(Message.ticket_id == ticket))
    assert row is not None and row.erased_at is not None and row.requester != "old@example.org"
    assert raw is not None and b"SECRET-OLD" not in raw
    app.close()


def test_tickets_from_before_search_are_found_by_the_words_of_their_mail(db_url: str) -> None:
    _upgrade_to(db_url, "0008")
    closed = sa.table("tickets", sa.column("id"), sa.column("closed_at"))
    engine = make_engine(db_url)
    with engine.begin() as conn:
        ticket = conn.execute(TICKETS.insert().returning(TICKETS.c.id), [{
            "type": "access", "status": "done", "requester": "vera@example.org",
            "subject": "Meine Daten", "intents": ["data_access"],
            "created_at": NOW, "updated_at": NOW,
        }]).scalar_one()  # fmt: skip
        conn.execute(closed.update().where(closed.c.id == ticket).values(closed_at=NOW))
        conn.execute(MESSAGES.insert(), [{
            "idem_key": "k-vera", "message_id": "vera@example.org", "source": "file",
            "size": 1, "status": "handled", "attempts": 0, "ticket_id": ticket,
            "sender": "vera@example.org", "received_at": NOW,
            "raw": "From: vera@example.org\nSubject: Meine Daten\nContent-Type: text/plain; "
            "charset=utf-8\n\nBitte schicken Sie mir eine Kopie. Mein Kundenkonto: Überlingen-7\n"
            "\n> Zitat: QUOTEDWORD\n".encode(),
        }])  # fmt: skip
    engine.dispose()

    app = make_app(db_url)  # 0009: ticket_search, filled from the stored mail
    try:

        def found(q: str) -> list[int]:
            return [r["id"] for r in views.queue(app, views.QueueFilter(q=q))["rows"]]

        assert found("kundenkonto") == [ticket]  # the body of a closed ticket
        assert found("uberlingen") == [ticket]
        assert found("meine daten") == [ticket] and found("vera@") == [ticket]
        assert found("quotedword") == []  # what was quoted is not what they wrote
        # And the index keeps up from now on: a new ticket is found as soon as it is open.
        out = pipeline.receive(app, mail(subject="Neu", body="Bitte NEUWORD löschen."),
                               source="file")  # fmt: skip
        assert found("neuword") == [out.ticket]
    finally:
        app.close()


def test_replies_from_before_0011_still_count_for_the_reply_caps(db_url: str) -> None:
    """The caps compare `to_key`/`to_domain` now; replies queued by an older privbot get
    them from their `to_addr`, so an upgrade does not reset anyone's count."""
    _upgrade_to(db_url, "0010")
    now = datetime.now(UTC).replace(tzinfo=None)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(OUTBOX.insert(), [{
            "message_id": f"old-{n}@junocloud.me", "ticket_id": None, "in_reply_to": None,
            "to_addr": to, "subject": "Re: x", "kind": "auto", "status": "sent",
            "attempts": 1, "raw": b"x", "next_attempt_at": now, "created_at": now,
        } for n, to in enumerate(["J.O.E+news@GoogleMail.com", "joe@gmail.com.", "ann@example.org"])
        ])  # fmt: skip
    engine.dispose()
    app = make_app(db_url, reply_cap="2")  # 0011 fills the new columns
    try:
        with app.sessions() as s:
            rows = s.execute(select(Outgoing.to_key, Outgoing.to_domain).order_by(Outgoing.id))
            assert rows.all() == [("joe@gmail.com", "gmail.com"), ("joe@gmail.com", "gmail.com"),
                                  ("ann@example.org", "example.org")]  # fmt: skip
        # Two replies to Joe's mailbox already: the cap holds the third.
        out = pipeline.receive(app, mail(sender="jo.e@gmail.com", body="Please delete my account."),
                               source="file")  # fmt: skip
        with app.sessions() as s:
            assert s.get(Message, out.message).status == "handled"
            assert s.scalar(select(sa.func.count()).select_from(Outgoing)) == 3
    finally:
        app.close()

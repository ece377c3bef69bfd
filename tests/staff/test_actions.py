"""Staff actions called as the web app and the CLI call them: each checks its input, does its
work in one transaction and leaves an audit event with the staff member as actor."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from privbot import optouts, pipeline
from privbot.app import App
from privbot.models import Event, Ticket
from privbot.staff import actions
from privbot.tickets import statuses_for
from testing.apps import mail, make_app

ADA = "ada@junocloud.me"


def _access_ticket(app: App) -> int:
    out = pipeline.receive(
        app, mail(subject="Copy of my data", body="Please send me a copy of my personal data."),
        source="file",
    )  # fmt: skip
    assert out.ticket is not None
    return out.ticket


def _events(app: App, kind: str) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def test_status_follows_the_ticket_type_and_closing_is_recorded(db_url: str) -> None:
    app = make_app(db_url)
    ticket_id = _access_ticket(app)
    assert statuses_for("access")[0] == "awaiting_identity"
    with pytest.raises(actions.ReviewError, match="awaiting_identity, in_progress"):
        actions.set_status(app, ticket_id, "open", actor=ADA)
    done = actions.set_status(app, ticket_id, "done", actor=ADA)
    assert done.closed_at is not None
    reopened = actions.set_status(app, ticket_id, "in_progress", actor=ADA)
    assert reopened.closed_at is None
    changes = _events(app, "status_changed")
    assert [(e.detail["previous"], e.detail["to"], e.actor) for e in changes] == [
        ("awaiting_identity", "done", ADA),
        ("done", "in_progress", ADA),
    ]


def test_the_deadline_moves_at_most_two_months_in_all(db_url: str) -> None:
    app = make_app(db_url)
    ticket_id = _access_ticket(app)
    with app.sessions() as s:
        due = s.get(Ticket, ticket_id).due_at  # type: ignore[union-attr]
    with pytest.raises(actions.ReviewError, match="reason"):
        actions.extend_deadline(app, ticket_id, 1, "  ", actor=ADA)
    actions.extend_deadline(app, ticket_id, 1, "many records to gather", actor=ADA)
    with pytest.raises(actions.ReviewError, match="already extended by 1"):
        actions.extend_deadline(app, ticket_id, 2, "still gathering", actor=ADA)
    actions.extend_deadline(app, ticket_id, 1, "still gathering", actor=ADA)
    with app.sessions() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None and ticket.due_at is not None and due is not None
        assert (ticket.due_at.year * 12 + ticket.due_at.month) - (due.year * 12 + due.month) == 2
    assert len(_events(app, "extension_notice_queued")) == 2  # the requester is told each time


def test_an_opt_out_applied_and_undone_by_staff(db_url: str) -> None:
    app = make_app(db_url)
    with pytest.raises(actions.ReviewError, match="unknown scope"):
        actions.apply_opt_out(app, None, "eva@example.org", ["newsletters"], actor=ADA)
    new, already = actions.apply_opt_out(
        app, None, "Eva@Example.org", ["marketing_email", "targeted_ads"], actor=ADA
    )
    assert (new, already) == (("marketing_email", "targeted_ads"), ())
    assert actions.undo_opt_out(app, None, "eva@example.org", ["targeted_ads"], actor=ADA) == (
        "targeted_ads",
    )
    assert optouts.status(app.sessions, "eva@example.org")["scopes"] == ["marketing_email"]
    assert [e.actor for e in _events(app, "opt_out_withdrawn")] == [ADA]

"""Staff replies: the templates staff start from, the draft as it will be sent, and
queueing it in the bot's outbox with an audit event. Re-exported by `privbot.review`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from privbot.app import App
from privbot.mail.compose import compose_reply, reply_subject
from privbot.mail.parse import ParseError, parse_message
from privbot.models import Message, Ticket
from privbot.outgoing import queue_outgoing
from privbot.review_common import (
    MAX_BODY,
    ReviewError,
    date_text,
    locked_ticket,
    sender_name,
    thread_head,
    touch,
)
from privbot.tickets import record

STAFF_TEMPLATES = "staff"  # replies/staff/*.txt.j2


def staff_templates(app: App) -> list[str]:
    """Names of the reply templates staff may start from (replies/staff/*.txt.j2)."""
    folder = Path(app.replies.folder) / STAFF_TEMPLATES
    return sorted(
        p.name.removesuffix(".txt.j2")
        for p in folder.glob("*.txt.j2")
        if not p.name.startswith("_")
    )


def render_template(app: App, ticket_id: int, name: str, *, actor: str, **extra: str) -> str:
    """A staff template filled in for this ticket: the starting text of a reply."""
    if name not in staff_templates(app):
        raise ReviewError(f"no reply template {name!r}")
    with app.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            raise ReviewError(f"no ticket JC-{ticket_id}")
        first = thread_head(session, ticket)
        name_of_requester = sender_name(first)
        context = {
            "name": name_of_requester,
            "ticket_id": ticket.id,
            "subject": ticket.subject,
            "address": app.settings.address,
            "requester": ticket.requester,
            "due_date": date_text(ticket.due_at),
            "staff": actor,
            "reason": "",
            **extra,
        }
    try:
        return app.replies.render(f"{STAFF_TEMPLATES}/{name}.txt.j2", **context)
    except jinja2.TemplateError as exc:
        raise ReviewError(f"template {name}: {exc}") from None


@dataclass(frozen=True)
class Draft:
    """A reply as it will be sent: what the preview shows."""

    to: str
    subject: str
    body: str
    in_reply_to: str | None
    references: tuple[str, ...]


def draft_reply(app: App, ticket_id: int, body: str) -> Draft:
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise ReviewError("the reply is empty")
    if len(body) > MAX_BODY:
        raise ReviewError(f"the reply is too long (at most {MAX_BODY} characters)")
    with app.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            raise ReviewError(f"no ticket JC-{ticket_id}")
        last = session.scalar(
            select(Message)
            .where(Message.ticket_id == ticket.id, Message.message_id.is_not(None))
            .order_by(Message.id.desc())
            .limit(1)
        )
        refs: tuple[str, ...] = ()
        if last is not None:
            try:
                refs = parse_message(last.raw).references
            except ParseError:
                refs = ()
        return Draft(
            # Always the From address: a differing Reply-To is recorded, never used.
            to=ticket.requester,
            # A folded or hostile subject must not break the header line.
            subject=reply_subject(" ".join(ticket.subject.split()), ticket.id),
            body=body + "\n",
            in_reply_to=last.message_id if last is not None else None,
            references=refs,
        )


def send_reply(
    app: App, ticket_id: int, body: str, *, actor: str, kind: str = "staff_reply"
) -> int:
    """Queue a staff reply in the same outbox as the bot's; the sender delivers it.
    Returns the outbox row's id."""
    draft = draft_reply(app, ticket_id, body)
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        row = queue_draft(app, session, ticket, draft, actor=actor, event=kind)
    app.outbox_ready.set()
    return row


def queue_draft(
    app: App, session: Session, ticket: Ticket, draft: Draft, *, actor: str, event: str
) -> int:
    reply = compose_reply(
        from_addr=app.settings.address,
        to_addr=draft.to,
        subject=draft.subject,
        body=draft.body,
        domain=app.settings.domain,
        in_reply_to=draft.in_reply_to,
        references=draft.references,
        automatic=False,  # a person wrote it: auto-responders may answer, as to any mail
    )
    row = queue_outgoing(
        session, reply, to_addr=draft.to, kind="staff", ticket_id=ticket.id,
        in_reply_to=draft.in_reply_to,
    )  # fmt: skip
    touch(ticket)
    record(session, event, ticket=ticket, actor=actor, outbox=row, to=draft.to)
    return row

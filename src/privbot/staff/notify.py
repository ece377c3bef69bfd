"""Mail to staff about tickets: a notice for each new ticket that needs them, and the mails
of the daily run (`staff/daily.py`). Set by PRIVBOT_STAFF_NOTIFY (each | digest | off).

Every staff mail goes through the outbox like any reply, as kind `staff_notice`, to the
addresses of PRIVBOT_STAFF_NOTIFY_TO or else every active staff account: never to a
ticket's requester, never to privbot's own addresses (it would come back as mail to handle).
Staff mailboxes may be anywhere, so a notice carries no word the requester wrote, nor their
address or name: the reference, what was asked (privbot's labels), dates, and a link to the
ticket page (PRIVBOT_PUBLIC_URL). So a notice holds no personal data of the requester, and
its outbox row is tied to no ticket: it is not part of the conversation, and a staff member
answering it cannot add their mail to the requester's thread.

The texts are data, Jinja2 templates in `replies/_desk/` (English: the staff desk is), each
defining its `subject`; they are checked at start-up (`check`), rendered with samples, so
a template naming something that is not there stops privbot, naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from privbot.audit import record
from privbot.config import ConfigError, Settings
from privbot.mail.compose import compose_reply, one_line
from privbot.models import Staff, Ticket
from privbot.outbox.queue import address_key, queue_outgoing
from privbot.staff import events
from privbot.tickets import ref

if TYPE_CHECKING:  # the App imports nothing of staff/: only its type is needed here
    from privbot.app import App

log = logging.getLogger(__name__)

NOTICE = "staff_notice"  # the outbox kind of every staff mail
NOTIFIED = "staff_notified"  # the audit event of a new ticket's notices
DESK = "_desk"  # under the replies folder; "_" so replies.py takes it for no language
TEMPLATES = ("notice.txt.j2", "daily.txt.j2")


class DeskError(ConfigError):
    """A staff mail template is missing or broken; the message names the file."""


@dataclass(frozen=True)
class StaffMail:
    subject: str
    body: str


@dataclass(frozen=True)
class TicketFacts:
    """What a staff mail may say of a ticket: nothing the requester wrote or is called."""

    ref: str
    link: str
    asked: str  # the intents in privbot's words: "a copy of their data and an opt-out"
    type: str
    status: str
    language: str
    due: str  # "2027-02-02" (UTC), as the queue writes it; "" without a due date
    assignee: str  # "" when unassigned
    verified: bool  # False: the sender's domain failed DMARC/DKIM/SPF or was not checked
    days_left: int | None = None  # the daily list's: whole days to the due date
    colour: str = ""  # the daily list's: green, amber, red (daily.colour)


def facts(ticket: Ticket, public_url: str, *, days_left: int | None = None,
          colour: str = "") -> TicketFacts:  # fmt: skip
    return TicketFacts(
        ref=ref(ticket.id),
        link=ticket_link(public_url, ticket.id),
        asked=events.intents(ticket.intents) if ticket.intents else events.status(ticket.type),
        type=events.status(ticket.type),
        status=events.status(ticket.status),
        language=events.language(ticket.language),
        due=ticket.due_at.date().isoformat() if ticket.due_at else "",
        assignee=ticket.assignee or "",
        verified=ticket.sender_verified is True,
        days_left=days_left,
        colour=colour,
    )


def ticket_link(public_url: str, ticket_id: int) -> str:
    return f"{public_url.rstrip('/')}/tickets/{ticket_id}"


def links(settings: Settings) -> dict[str, str]:
    """The queue's pages a staff mail links to."""
    base = (settings.public_url or "").rstrip("/")
    return {"queue": f"{base}/queue", "overdue": f"{base}/queue?due=overdue",
            "week": f"{base}/queue?due=week"}  # fmt: skip


# -- templates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Desk:
    folder: Path
    env: jinja2.Environment

    def render(self, name: str, /, **context: Any) -> StaffMail:
        """A staff mail from its template: the `subject` it sets, and its text."""
        module = self.env.get_template(name).make_module(context)
        subject = one_line(str(getattr(module, "subject", "")), 200)
        if not subject:
            raise DeskError(f"{self.folder / name}: sets no subject ({{% set subject = … %}})")
        return StaffMail(subject, _tidy(str(module)))


def desk_folder(app: App) -> Path:
    return app.replies.folder / DESK


def check(app: App) -> Desk:
    """The staff mail templates, loaded and tried once with samples: at start-up."""
    return load_desk(desk_folder(app))


@lru_cache(maxsize=8)
def load_desk(folder: Path) -> Desk:
    """Cached by folder: the templates are data read once, like the reply templates."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain-text mail, never HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    desk = Desk(folder, env)
    for name, context in _samples().items():
        path = folder / name
        if not path.is_file():
            raise DeskError(f"{path}: staff mail template is missing")
        try:
            desk.render(name, **context)
        except jinja2.TemplateSyntaxError as exc:
            raise DeskError(f"{path}:{exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:  # e.g. a name the context does not have
            raise DeskError(f"{path}: {exc}") from None
    return desk


def _samples() -> dict[str, dict[str, Any]]:
    """A context for each template, as the code gives it: StrictUndefined then finds every
    name a template uses that the code does not give."""
    ticket = TicketFacts(
        ref="JC-1", link="https://privacy.example/tickets/1", asked="a copy of their data",
        type="access", status="awaiting identity", language="German", due="2027-02-02",
        assignee="", verified=False, days_left=3, colour="red",
    )  # fmt: skip
    page = {"queue": "https://privacy.example/queue", "overdue": "", "week": ""}
    common = {"links": page, "address": "support@example.org"}
    return {
        "notice.txt.j2": {**common, "ticket": ticket},
        "daily.txt.j2": {
            **common, "day": "2027-01-02", "mode": "digest", "since": "2027-01-01 07:00 UTC",
            "new": [ticket], "new_total": 1, "overdue": [ticket], "overdue_total": 1,
            "soon": [ticket], "soon_total": 1, "soon_days": 5,
        },
    }  # fmt: skip


def _tidy(text: str) -> str:
    """Lines without trailing blanks, no runs of empty lines, one final newline. Not reflowed:
    a staff mail is lists and links, each on its line."""
    out: list[str] = []
    for raw in text.strip("\n").splitlines():
        line = "-- " if raw == "-- " else raw.rstrip()  # the signature separator keeps its space
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"


# -- recipients and the outbox ------------------------------------------------------------------


def recipients(session: Session, settings: Settings) -> list[str]:
    """Who gets staff mail: PRIVBOT_STAFF_NOTIFY_TO, else the active staff accounts; never
    one of our own addresses."""
    listed: Iterable[str] = settings.staff_notify_to or session.scalars(
        select(Staff.email).where(Staff.active).order_by(Staff.email)
    )
    ours = settings.our_addresses
    return [a for a in dict.fromkeys(x.strip().lower() for x in listed) if a and a not in ours]


def not_requester(addresses: Iterable[str], requester: str) -> list[str]:
    """The addresses that are not the requester's mailbox (case, +tags, Gmail's dots off)."""
    theirs = address_key(requester)
    return [a for a in addresses if address_key(a) != theirs]


def queue_staff_mail(session: Session, settings: Settings, to: str, mail: StaffMail) -> int:
    """One staff mail into the outbox, in the caller's transaction; the sender sends it."""
    reply = compose_reply(
        from_addr=settings.address, to_addr=to, subject=mail.subject, body=mail.body,
        domain=settings.domain, automatic=False, language="en",
    )  # fmt: skip
    # RFC 3834: made by a program, not an answer to anyone; Exchange and others then send
    # no out-of-office back to the privacy mailbox.
    reply.message["Auto-Submitted"] = "auto-generated"
    reply.message["X-Auto-Response-Suppress"] = "All"
    return queue_outgoing(session, reply, to_addr=to, kind=NOTICE)


def ticket_opened(app: App, session: Session, ticket: Ticket) -> list[int]:
    """A new ticket that needs staff (the pipeline, in the ticket's own transaction, so each
    is announced exactly once): with PRIVBOT_STAFF_NOTIFY=each, a notice to each recipient.
    Returns the outbox ids."""
    settings = app.settings
    if settings.staff_notify != "each" or not settings.public_url:
        return []
    to = not_requester(recipients(session, settings), ticket.requester)
    if not to:
        log.warning("staff notice for %s: nobody to send it to (no active staff account, "
                    "PRIVBOT_STAFF_NOTIFY_TO unset)", ref(ticket.id))  # fmt: skip
        return []
    mail = check(app).render(
        "notice.txt.j2", ticket=facts(ticket, settings.public_url), **mail_context(settings)
    )
    ids = [queue_staff_mail(session, settings, address, mail) for address in to]
    record(session, "staff_notified", ticket=ticket, to=to, outbox=ids)  # NOTIFIED
    return ids


def mail_context(settings: Settings) -> dict[str, Any]:
    """What every staff mail template gets: the queue's links and our address."""
    return {"links": links(settings), "address": settings.address}

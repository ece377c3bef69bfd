"""The privacy chat: answers from the same classifier and policy as mail, and verified requests.

A question is answered at once (`reply_parts.answer_text`, the code `privbot ask` uses). A
request for something to be done (opt-out, access, correction, deletion) is only written
down: the visitor gives the account's address, a signed, expiring link is mailed there
through the outbox, and only following it puts the request through the mail pipeline
(`pipeline.receive`, source "chat"), so it is done exactly as if mailed, by the owner.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from privbot import pipeline
from privbot.app import App
from privbot.audit import record
from privbot.mail.compose import compose_reply
from privbot.models import ChatRequest, Outgoing, utcnow
from privbot.outbox.queue import counted_as, queue_outgoing
from privbot.pipeline.reply import answer_text

SAYS = "chat/says.txt.j2"  # what the chat says, in the visitor's language

log = logging.getLogger(__name__)

MAX_MESSAGE = 2000
LINK_HOURS = 24
ADDRESS_WAIT = timedelta(hours=1)  # how long a request waits for the visitor's address
ACTOR = "chat"
_SESSION = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Not inside a longer word: "jörg@example.de" must not mail rg@example.de.
_ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
    r"(?![\w-])"
)
# Serialises link sending across PostgreSQL processes so the caps hold exactly (SQLite's
# BEGIN IMMEDIATE already does). Any constant: it only has to be the same everywhere.
_LINK_LOCK = 7_311_043


class ChatError(ValueError):
    """The visitor's input cannot be taken; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ChatAnswer:
    reply: str
    intents: list[str]
    sections: list[str]
    session: str
    # "address": we wait for the account's address; "confirmation": a link was mailed.
    waiting_for: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="privbot-chat-confirm")


def check_message(message: object) -> str:
    if not isinstance(message, str):
        raise ChatError('"message" must be a string')
    text = message.strip()
    if not text:
        raise ChatError("the message is empty: type a question")
    if len(text) > MAX_MESSAGE:
        raise ChatError(f"the message is too long: at most {MAX_MESSAGE} characters", 413)
    return text


def session_token(given: object) -> str:
    """The visitor's conversation: theirs if well-formed, else a new one."""
    if isinstance(given, str) and _SESSION.match(given):
        return given
    return secrets.token_urlsafe(18)


def answer(
    app: App, message: object, session: object, *, client: str, secret: str, base_url: str
) -> ChatAnswer:
    text = check_message(message)
    token = session_token(session)
    addresses = list(dict.fromkeys(a.lower() for a in _ADDRESS.findall(text)))
    with app.sessions.begin() as db:
        pending = db.scalar(
            select(ChatRequest)
            .where(
                ChatRequest.session == token,
                ChatRequest.status == "awaiting_address",
                ChatRequest.created_at > utcnow() - ADDRESS_WAIT,
            )
            .order_by(ChatRequest.id.desc())
            .limit(1)
        )
        pending_id = pending.id if pending is not None else None
    if pending_id is not None and len(addresses) == 1:
        return _send_link(app, pending_id, addresses[0], token, secret, base_url)

    answer = answer_text(app, text)
    understanding = answer.understanding
    intents = list(understanding.intents)
    actions = (
        [i for i in intents if i in app.classifier.intents.requests]
        if not understanding.low_confidence
        else []
    )
    if not actions:
        return ChatAnswer(answer.body.strip(), intents, list(answer.sections), token)

    with app.sessions.begin() as db:
        request = ChatRequest(
            session=token,
            text=text,
            intents=actions,
            language=understanding.language,
            nonce=secrets.token_urlsafe(24),
            status="awaiting_address",
            client=client[:64],
            created_at=utcnow(),
        )
        db.add(request)
        db.flush()
        request_id = request.id
    if len(addresses) == 1:
        return _send_link(app, request_id, addresses[0], token, secret, base_url)
    reply = app.replies.says(SAYS, understanding.language, "address_needed", intents=actions)
    return ChatAnswer(reply, intents, [], token, waiting_for="address")


def _links_refused(db: Session, app: App, address: str, language: str | None) -> str | None:
    """Why no confirmation link may go to `address` now, or None; read under the link lock."""
    settings = app.settings
    now = utcnow()
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(hours=24)
    # Counted by the outbox's own columns for the caps (their indexes serve these counts):
    # the mailbox however it is spelled, and its domain.
    counted = counted_as(address)
    confirm = Outgoing.kind == "confirm"
    to_mailbox = db.scalar(
        select(func.count(Outgoing.id)).where(
            Outgoing.to_key == counted["to_key"], confirm, Outgoing.created_at > day_ago
        )
    )
    if (to_mailbox or 0) >= settings.chat_links_per_address_day:
        return app.replies.says(
            SAYS, language, "links_used_up",
            count=settings.chat_links_per_address_day, address=settings.address,
        )  # fmt: skip
    busy = app.replies.says(SAYS, language, "links_busy", address=settings.address)
    to_domain = db.scalar(
        select(func.count(Outgoing.id)).where(
            Outgoing.to_domain == counted["to_domain"], confirm, Outgoing.created_at > hour_ago
        )
    )
    if (to_domain or 0) >= settings.chat_links_per_domain_hour:
        domain = counted["to_domain"]
        log.warning("chat: confirmation links to %s held back: the domain's hourly cap", domain)
        return busy
    total = db.scalar(
        select(func.count(Outgoing.id)).where(confirm, Outgoing.created_at > hour_ago)
    )
    if (total or 0) >= settings.chat_links_per_hour:
        log.warning("chat: confirmation links held back: the hourly cap for all links")
        return busy
    return None


def _send_link(
    app: App, request_id: int, address: str, token: str, secret: str, base_url: str
) -> ChatAnswer:
    """Mail the confirmation link for a waiting request through the outbox."""
    with app.sessions.begin() as db:
        if db.get_bind().dialect.name == "postgresql":
            db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LINK_LOCK})
        request = db.get(ChatRequest, request_id, with_for_update=True)
        assert request is not None
        language = request.language
        refused = _links_refused(db, app, address, language)
        if refused is not None:
            return ChatAnswer(refused, list(request.intents), [], token, waiting_for="address")
        link = f"{base_url.rstrip('/')}/chat/confirm/{confirm_token(secret, request)}"
        # Nothing the visitor wrote goes into it: only the intents, in our words, and the link
        # (on a line of its own, never broken).
        body = app.replies.render(
            "chat/confirm.txt.j2",
            language,
            intents=list(request.intents),
            link=link,
            hours=LINK_HOURS,
            address=app.settings.address,
        )
        mail = compose_reply(
            from_addr=app.settings.address,
            to_addr=address,
            subject=app.replies.says(SAYS, language, "confirm_subject"),
            body=body,
            domain=app.settings.domain,
            language=app.replies.language(language),
        )
        row = queue_outgoing(db, mail, to_addr=address, kind="confirm")
        request.address = address
        request.status = "link_sent"
        request.link_sent_at = utcnow()
        record(
            db, "chat_link_queued", actor=ACTOR, address=address, request=request.id,
            intents=list(request.intents), outbox=row,
        )  # fmt: skip
        intents = list(request.intents)
    app.outbox_ready.set()
    reply = app.replies.says(SAYS, language, "link_sent", address=address, hours=LINK_HOURS)
    return ChatAnswer(reply, intents, [], token, waiting_for="confirmation")


def confirm_token(secret: str, request: ChatRequest) -> str:
    return _serializer(secret).dumps([request.id, request.nonce])


@dataclass(frozen=True)
class Confirmation:
    request_id: int
    address: str
    text: str
    intents: list[str]
    status: str  # link_sent (not yet confirmed) or confirmed
    ticket: int | None = None


def load_confirmation(app: App, secret: str, token: str) -> Confirmation:
    """The request a link stands for; ChatError if the link is forged, stale or unknown."""
    try:
        request_id, nonce = _serializer(secret).loads(token, max_age=LINK_HOURS * 3600)
    except SignatureExpired:
        raise ChatError("this link has expired; ask again in the chat", 410) from None
    except (BadSignature, ValueError, TypeError):
        raise ChatError("this link is not valid", 404) from None
    with app.sessions() as db:
        request = db.get(ChatRequest, request_id) if isinstance(request_id, int) else None
        if request is None or request.nonce != nonce or request.address is None:
            raise ChatError("this link is not valid", 404)
        found = Confirmation(
            request.id, request.address, request.text, list(request.intents), request.status
        )
        message_id = request.message_id
    if message_id is None:
        return found
    ticket = pipeline.current_outcome(app, message_id).ticket
    return Confirmation(
        found.request_id, found.address, found.text, found.intents, found.status, ticket
    )


def confirm(app: App, secret: str, token: str) -> Confirmation:
    """Put the confirmed request through the mail pipeline, once, whoever clicks twice."""
    found = load_confirmation(app, secret, token)
    if found.status == "confirmed":
        return found
    with app.sessions() as db:
        request = db.get(ChatRequest, found.request_id)
        assert request is not None
        raw = _as_mail(app, request)
    # The same bytes every time: the store recognises a second confirmation as one message.
    outcome = pipeline.receive(
        app, raw, source="chat", source_ref=f"chat-request:{found.request_id}"
    )
    with app.sessions.begin() as db:
        request = db.get(ChatRequest, found.request_id, with_for_update=True)
        assert request is not None
        if request.status != "confirmed":
            request.status = "confirmed"
            request.confirmed_at = utcnow()
            request.message_id = outcome.message
            record(
                db, "chat_request_confirmed", actor=found.address, request=request.id,
                message_ref=outcome.message, ticket_ref=outcome.ticket,
            )  # fmt: skip
    return Confirmation(
        found.request_id, found.address, found.text, found.intents, "confirmed", outcome.ticket
    )


def _as_mail(app: App, request: ChatRequest) -> bytes:
    """The confirmed request as the mail its owner could have written."""
    assert request.address is not None
    msg = EmailMessage()
    msg["From"] = request.address
    msg["To"] = app.settings.address
    msg["Subject"] = "Request made in the privacy chat"
    msg["Date"] = format_datetime(request.created_at)
    msg["Message-ID"] = f"<chat.{request.nonce}@{app.settings.domain}>"
    msg["X-Privbot-Chat-Request"] = str(request.id)
    msg.set_content(request.text)
    return msg.as_bytes()

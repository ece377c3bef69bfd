"""The problems page: mail set aside and replies that failed, with their reasons and a retry.

It calls `privbot.staff.problems`; a retry is a staff form (session and CSRF token) and
comes back to the page with what became of the message or reply, read from the database.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from privbot.app import App
from privbot.models import Message, OutboxStatus, Outgoing
from privbot.staff import problems
from privbot.tickets import ref
from privbot.web.security import StaffForm, StaffPage, StaffUser, state
from privbot.web.staff import MAX_TICKET_ID
from privbot.web.views import render

router = APIRouter()

RowId = Annotated[int, Path(ge=1, le=MAX_TICKET_ID)]


def _page(
    request: Request, user: StaffUser, *, error: str = "", status_code: int = 200,
    notice: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    app = state(request).app
    return render(
        request, "problems.html", user, status_code, result=problems.problems(app),
        error=error, notice=notice, max_attempts=app.settings.max_attempts,
    )  # fmt: skip


@router.get("/problems")
def problems_page(
    request: Request,
    user: StaffPage,
    message: int = Query(0, ge=0, le=MAX_TICKET_ID),
    reply: int = Query(0, ge=0, le=MAX_TICKET_ID),
) -> Response:
    app = state(request).app
    # Only an id comes in the link; what is said about it is read from the database.
    notice = _message_notice(app, message) if message else None
    notice = _reply_notice(app, reply) if reply else notice
    return _page(request, user, notice=notice)


@router.post("/problems/messages/{message_id}/retry")
async def retry_message(request: Request, user: StaffForm, message_id: RowId) -> Response:
    app = state(request).app
    try:
        await run_in_threadpool(lambda: problems.retry_message(app, message_id, actor=user.email))
    except problems.ProblemError as exc:
        error = str(exc)
        return await run_in_threadpool(lambda: _page(request, user, error=error, status_code=400))
    return RedirectResponse(f"/problems?message={message_id}", status_code=303)


@router.post("/problems/replies/{outbox_id}/retry")
async def retry_reply(request: Request, user: StaffForm, outbox_id: RowId) -> Response:
    app = state(request).app
    try:
        await run_in_threadpool(lambda: problems.retry_reply(app, outbox_id, actor=user.email))
    except problems.ProblemError as exc:
        error = str(exc)
        return await run_in_threadpool(lambda: _page(request, user, error=error, status_code=400))
    return RedirectResponse(f"/problems?reply={outbox_id}", status_code=303)


def _message_notice(app: App, message_id: int) -> dict[str, Any] | None:
    with app.sessions() as session:
        m = session.get(Message, message_id)
        if m is None:
            return None
        status, reason, ticket = m.status, m.reason, m.ticket_id
    where = f", ticket {ref(ticket)}" if ticket else ""
    if status in problems.SET_ASIDE:
        return {"level": "warn", "text": f"Message #{message_id} was put through again and "
                f"is {status} again: {reason or 'no reason recorded'}."}  # fmt: skip
    return {"level": "ok", "text": f"Message #{message_id} was put through again: {status}{where}."}


def _reply_notice(app: App, outbox_id: int) -> dict[str, Any] | None:
    with app.sessions() as session:
        o = session.get(Outgoing, outbox_id)
        if o is None:
            return None
        status, error = o.status, o.last_error
    if status == OutboxStatus.FAILED:
        return {"level": "warn", "text": f"Reply #{outbox_id} failed again: {error or '?'}."}
    if status == OutboxStatus.SENT:
        return {"level": "ok", "text": f"Reply #{outbox_id} was sent."}
    return {"level": "ok", "text": f"Reply #{outbox_id} is back in the outbox queue ({status}): "
            "the sender tries it now."}  # fmt: skip

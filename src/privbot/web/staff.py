"""Staff pages and actions: the queue, a ticket, opt-outs, the audit log.

Every route depends on `require_staff` (pages) or `require_staff_form` (actions, which
also checks the CSRF token). Actions call `privbot.staff.actions`; a bad input re-shows the page
with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from privbot import optouts
from privbot.replies import language_name
from privbot.staff import actions, auth, views
from privbot.tickets import parse_ref, ref, statuses_for
from privbot.web.security import StaffForm, StaffPage, StaffUser, state
from privbot.web.views import render

router = APIRouter()

# PostgreSQL's integer: no ticket has a larger id, and the database driver raises on one.
MAX_TICKET_ID = 2**31 - 1


def _ticket_id(ticket_id: int) -> int:
    """The ticket id in the path; 404 for one no ticket can have, rather than a crash."""
    if not 0 < ticket_id <= MAX_TICKET_ID:
        raise HTTPException(404, f"There is no ticket {ref(ticket_id)}.")
    return ticket_id


# After the staff member in each signature: dependencies run in order, so sign-in comes first.
TicketId = Annotated[int, Depends(_ticket_id)]

# What a redirect after an action says; codes, so no text can be slipped into a link.
DONE = {
    "assigned": "Assignment saved.",
    "status": "Status changed.",
    "extended": "Deadline extended; the requester is told in a reply now in the outbox.",
    "replied": "Reply queued in the outbox.",
    "noted": "Note added.",
    "language": "Language set: later mails on this ticket are written in it.",
    "reclassified": "Reclassified; the message is now an example the classifier learns from.",
    "optout": "Opt-out recorded.",
    "optout_undone": "Opt-out withdrawn.",
}


@router.get("/queue")
def queue_page(
    request: Request,
    user: StaffPage,
    type: str = Query("", max_length=32),
    status: str = Query("", max_length=32),
    assignee: str = Query("", max_length=320),
    language: str = Query("", max_length=8),
    q: str = Query("", max_length=200),
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    app = state(request).app
    if assignee == "me":
        assignee = user.email
    f = views.QueueFilter(type, status, assignee, language, q, page)
    result = views.queue(app, f)
    params = {k: v for k, v in (("type", type), ("status", status), ("assignee", assignee),
                                ("language", language), ("q", q)) if v}  # fmt: skip

    def page_link(n: int) -> str:
        return "/queue?" + urlencode({**params, "page": n})

    return render(
        request, "queue.html", user, result=result, f=f, choices=views.queue_choices(app),
        page_link=page_link, filtered=bool(params),
    )  # fmt: skip


def _ticket_page(
    request: Request,
    user: StaffUser,
    ticket_id: int,
    *,
    error: str = "",
    status_code: int = 200,
    draft: str = "",
    preview: actions.Draft | None = None,
    template: str = "",
) -> Response:
    app = state(request).app
    ticket = views.ticket_detail(app, ticket_id)
    if ticket is None:
        raise HTTPException(404, f"There is no ticket {ref(ticket_id)}.")
    if template and not draft:
        try:
            draft = actions.render_template(app, ticket_id, template, actor=user.email)
        except actions.ReviewError as exc:
            error = str(exc)
    with app.sessions() as session:
        staff = auth.active_emails(session)
    done = DONE.get(request.query_params.get("done", ""), "")
    return render(
        request, "ticket.html", user, status_code, t=ticket, error=error,
        done=done, draft=draft, preview=preview, template=template,
        templates=actions.staff_templates(app), statuses=statuses_for(ticket["type"]),
        staff=staff, intents=app.classifier.intents.names, scopes=optouts.SCOPES,
        languages=[(c, language_name(c)) for c in sorted(app.replies.languages)],
        suppressed=optouts.status(app.sessions, ticket["requester"])["scopes"],
    )  # fmt: skip


@router.get("/tickets/{ticket_id}")
def ticket_page(
    request: Request,
    user: StaffPage,
    ticket_id: TicketId,
    template: str = Query("", max_length=64),
) -> Response:
    return _ticket_page(request, user, ticket_id, template=template)


async def _act(
    request: Request,
    user: StaffUser,
    ticket_id: int,
    done: str,
    action: Callable[[], Any],
    **on_error: Any,
) -> Response:
    """Run a review action; back to the ticket with a notice, or the page with the error."""
    try:
        await run_in_threadpool(action)
    except actions.ReviewError as exc:
        error = str(exc)
        return await run_in_threadpool(
            lambda: _ticket_page(request, user, ticket_id, error=error, status_code=400, **on_error)
        )
    return RedirectResponse(f"/tickets/{ticket_id}?done={done}", status_code=303)


async def _review(
    request: Request,
    user: StaffUser,
    ticket_id: int,
    done: str,
    action: Callable[..., Any],
    *args: Any,
) -> Response:
    """`_act` for a `privbot.staff.actions` action on this ticket with the staff member as actor."""
    app = state(request).app
    return await _act(
        request, user, ticket_id, done, lambda: action(app, ticket_id, *args, actor=user.email)
    )


@router.post("/tickets/{ticket_id}/assign")
async def assign(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
    assignee: str = Form(""),
) -> Response:
    who = user.email if assignee == "me" else assignee.strip() or None
    return await _review(request, user, ticket_id, "assigned", actions.assign, who)


@router.post("/tickets/{ticket_id}/status")
async def set_status(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
    status: str = Form(""),
) -> Response:
    return await _review(request, user, ticket_id, "status", actions.set_status, status)


@router.post("/tickets/{ticket_id}/language")
async def set_language(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
    language: str = Form("", max_length=8),
) -> Response:
    return await _review(request, user, ticket_id, "language", actions.set_language, language)


@router.post("/tickets/{ticket_id}/extend")
async def extend(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
    months: int = Form(2),
    reason: str = Form(""),
) -> Response:
    return await _review(
        request, user, ticket_id, "extended", actions.extend_deadline, months, reason
    )


@router.post("/tickets/{ticket_id}/reply/preview")
async def reply_preview(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
    body: str = Form(""),
    template: str = Form("", max_length=64),
) -> Response:
    app = state(request).app

    def show() -> Response:
        try:
            draft = actions.draft_reply(app, ticket_id, body)
        except actions.ReviewError as exc:
            return _ticket_page(request, user, ticket_id, error=str(exc), status_code=400,
                                draft=body, template=template)  # fmt: skip
        return _ticket_page(request, user, ticket_id, draft=body, preview=draft, template=template)

    return await run_in_threadpool(show)


@router.post("/tickets/{ticket_id}/reply")
async def reply(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
    body: str = Form(""),
    then_status: str = Form(""),
) -> Response:
    app = state(request).app

    def send() -> None:
        if then_status and then_status not in statuses_for(_type(app, ticket_id)):
            raise actions.ReviewError(f"status {then_status!r} does not fit this ticket")
        actions.send_reply(app, ticket_id, body, actor=user.email)
        if then_status:
            actions.set_status(app, ticket_id, then_status, actor=user.email)

    return await _act(request, user, ticket_id, "replied", send, draft=body)


def _type(app: Any, ticket_id: int) -> str:
    detail = views.ticket_detail(app, ticket_id)
    if detail is None:
        raise actions.ReviewError(f"no ticket {ref(ticket_id)}")
    return str(detail["type"])


@router.post("/tickets/{ticket_id}/note")
async def note(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
    text: str = Form(""),
) -> Response:
    return await _review(request, user, ticket_id, "noted", actions.add_note, text)


@router.post("/tickets/{ticket_id}/reclassify")
async def reclassify(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
) -> Response:
    intents = [str(v) for v in (await request.form()).getlist("intents")]
    return await _review(request, user, ticket_id, "reclassified", actions.reclassify, intents)


@router.post("/tickets/{ticket_id}/optout")
async def optout(
    request: Request,
    user: StaffForm,
    ticket_id: TicketId,
    address: str = Form(""),
    undo: str = Form(""),
) -> Response:
    scopes = [str(v) for v in (await request.form()).getlist("scopes")]
    if undo:
        return await _review(
            request, user, ticket_id, "optout_undone", actions.undo_opt_out, address, scopes
        )
    return await _review(request, user, ticket_id, "optout", actions.apply_opt_out, address, scopes)


# -- opt-outs and the audit log -------------------------------------------------------------


@router.get("/suppressions")
def suppressions_page(
    request: Request,
    user: StaffPage,
    q: str = Query("", max_length=320),
    withdrawn: bool = Query(False),
) -> Response:
    app = state(request).app
    rows = optouts.register(app.sessions, q, include_withdrawn=withdrawn, limit=500)
    return render(request, "suppressions.html", user, rows=rows, q=q, withdrawn=withdrawn,
                  limit=500)  # fmt: skip


@router.get("/suppressions.csv")
def suppressions_csv(
    request: Request,
    user: StaffPage,
    q: str = Query("", max_length=320),
    withdrawn: bool = Query(False),
) -> Response:
    rows = optouts.register(state(request).app.sessions, q, include_withdrawn=withdrawn, limit=None)
    return Response(
        optouts.as_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )


@router.get("/audit")
def audit_page(
    request: Request,
    user: StaffPage,
    kind: str = Query("", max_length=64),
    actor: str = Query("", max_length=320),
    ticket: str = Query("", max_length=12),
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    ticket_id = parse_ref(ticket)
    result = views.audit_log(
        state(request).app, kind=kind, actor=actor, ticket=ticket_id, page=page
    )
    params = {k: v for k, v in (("kind", kind), ("actor", actor), ("ticket", ticket)) if v}
    return render(
        request, "audit.html", user, result=result, kind=kind, actor=actor, ticket=ticket,
        prev_link="/audit?" + urlencode({**params, "page": page - 1}) if page > 1 else "",
        next_link="/audit?" + urlencode({**params, "page": page + 1}) if result["more"] else "",
    )  # fmt: skip

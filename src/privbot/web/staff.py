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
from fastapi.responses import JSONResponse, RedirectResponse, Response

from privbot import optouts
from privbot.replies import language_name
from privbot.staff import actions, auth, evidence, views
from privbot.tickets import REF, REF_PREFIX, parse_ref, ref, statuses_for
from privbot.web.security import StaffForm, StaffPage, StaffUser, state
from privbot.web.views import render

router = APIRouter()

# PostgreSQL's integer: no ticket has a larger id, and the database driver raises on one.
MAX_TICKET_ID = 2**31 - 1


def _ticket_id(ticket_id: str) -> int:
    """The ticket in the path ("7", "JC-7"); 404 for what no ticket can be, not a crash."""
    number = _number(ticket_id)
    if number is None:
        raise HTTPException(404, f"There is no ticket {ticket_id[:40]}.")
    return number


def _number(reference: str) -> int | None:
    number = parse_ref(reference)
    return number if number is not None and 0 < number <= MAX_TICKET_ID else None


def _missing(request: Request, user: StaffUser, reference: str) -> Response:
    """The friendly 404 of a ticket page: the layout, what was asked, a search box."""
    shaped = REF.fullmatch(reference.strip())
    return render(request, "not_found.html", user, 404, reference=reference[:40],
                  ref=f"{REF_PREFIX}{shaped.group(1)[:20]}" if shaped else "")  # fmt: skip


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
    "evidence_checked": "Evidence marked checked; its attachments are removed under the "
    "retention rules, and the check stays in the audit trail.",
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
    sort: str = Query("", max_length=16),
    due: str = Query("", max_length=16),
) -> Response:
    app = state(request).app
    # Typed or hand-made links: a NUL is no text PostgreSQL takes, so none reaches a query.
    type, status, assignee, language, q = (
        v.replace("\x00", "") for v in (type, status, assignee, language, q)
    )
    mine = assignee == "me"
    f = views.QueueFilter(type, status, user.email if mine else assignee, language, q, page,
                          sort if sort in views.SORTS else "",
                          due if due in views.DUE_VIEWS else "")  # fmt: skip
    result = views.queue(app, f)
    params = {k: v for k, v in (("type", type), ("status", status), ("assignee", assignee),
                                ("language", language), ("q", q), ("due", f.due)) if v}  # fmt: skip
    sorted_by = {"sort": f.sort} if f.sort else {}

    def page_link(n: int) -> str:
        return "/queue?" + urlencode({**params, **sorted_by, "page": n})

    def sort_link(key: str) -> str:
        """The column's link: by it (newest first for times), or the other way round."""
        first = "due" if key == "due" else f"-{key}"
        flipped = first[1:] if first.startswith("-") else f"-{first}"
        chosen = flipped if result["sort"] == first else first
        return "/queue?" + urlencode({**params, "sort": chosen})

    return render(
        request, "queue.html", user, result=result, f=f, choices=views.queue_choices(app),
        page_link=page_link, sort_link=sort_link, filtered=bool(params),
        saved_views=_saved_views(f, mine),
    )  # fmt: skip


def _saved_views(f: views.QueueFilter, mine: bool) -> list[tuple[str, str, bool]]:
    """The queue's saved views: (label, link, whether it is the one shown)."""
    plain = not (f.type or f.status or f.language or f.q)
    return [
        ("Open", "/queue", plain and not f.assignee and not f.due),
        ("Mine", "/queue?assignee=me", plain and mine and not f.due),
        ("Unassigned", "/queue?assignee=none", plain and f.assignee == "none" and not f.due),
        ("Overdue", "/queue?due=overdue", plain and not f.assignee and f.due == "overdue"),
        ("Due this week", "/queue?due=week", plain and not f.assignee and f.due == "week"),
        ("All tickets", "/queue?status=all", f.status == views.ALL and not f.q and not f.due),
    ]


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
        return _missing(request, user, ref(ticket_id))
    if template and not draft:
        try:
            draft = actions.start_reply(app, ticket_id, template, actor=user.email)
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
    ticket_id: str,
    template: str = Query("", max_length=64),
) -> Response:
    # "/tickets/JC-7" as well as "/tickets/7"; anything else is the friendly 404.
    number = _number(ticket_id)
    if number is None:
        return _missing(request, user, ticket_id)
    return _ticket_page(request, user, number, template=template)


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


def _wants_json(request: Request) -> bool:
    # The ticket page's script asks for JSON; a plain form post (no script) gets the page.
    return "application/json" in request.headers.get("accept", "")


@router.get("/tickets/{ticket_id}/reply/template")
def reply_template(
    request: Request,
    user: StaffPage,
    ticket_id: TicketId,
    name: str = Query("", max_length=64),
) -> Response:
    """The reply box's start for a template, as JSON: the page fills it in without a reload."""
    try:
        body = actions.start_reply(state(request).app, ticket_id, name, actor=user.email)
    except actions.ReviewError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"template": name, "body": body})


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
            if _wants_json(request):
                return JSONResponse({"error": str(exc)}, status_code=400)
            return _ticket_page(request, user, ticket_id, error=str(exc), status_code=400,
                                draft=body, template=template)  # fmt: skip
        if _wants_json(request):
            return JSONResponse({"to": draft.to, "subject": draft.subject, "body": draft.body})
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


@router.post("/tickets/{ticket_id}/evidence-checked")
async def evidence_checked(request: Request, user: StaffForm, ticket_id: TicketId) -> Response:
    return await _review(request, user, ticket_id, "evidence_checked", evidence.mark_checked)


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

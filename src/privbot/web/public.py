"""What anyone may reach: the login form, the chat page and API, confirmation links."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from privbot.channels import chat
from privbot.staff import auth
from privbot.web.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    StaffForm,
    TooLarge,
    client_of,
    is_json,
    new_login_token,
    read_body,
    session_user,
    state,
)
from privbot.web.views import render

router = APIRouter()
# Far more than a message of MAX_MESSAGE characters, even all escaped, needs.
MAX_CHAT_BODY = 16 * chat.MAX_MESSAGE
# On a refusal that leaves the body unread: a connection kept open would go on reading
# (and throwing away) whatever the client still sends.
HANG_UP = {"Connection": "close"}


FAVICON = Path(__file__).parent / "static" / "favicon.svg"


@router.get("/favicon.ico")
def favicon() -> Response:
    # Browsers and bookmarks ask for /favicon.ico whatever the page links: the same SVG.
    return Response(
        FAVICON.read_bytes(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/")
def home(request: Request) -> Response:
    target = "/queue" if session_user(request) else "/login"
    return RedirectResponse(target, status_code=303)


def _safe_next(target: str) -> str:
    # Only our own paths: never an open redirect to another site.
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/queue"


def _login_form(
    request: Request, next_: str, error: str = "", status: int = 200, email: str = ""
) -> Response:
    token = new_login_token()
    response = render(
        request, "login.html", None, status, csrf=token, next=_safe_next(next_),
        error=error, email=email,
    )  # fmt: skip
    response.set_cookie(
        LOGIN_COOKIE, state(request).signer.sign(token).decode(), max_age=3600,
        httponly=True, samesite="strict", secure=state(request).secure_cookies, path="/login",
    )  # fmt: skip
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/queue") -> Response:
    if session_user(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, next)


@router.post("/login")
def login(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    csrf: str = Form(""),
    next: str = Form("/queue"),
) -> Response:
    web = state(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    try:
        expected = web.signer.unsign(cookie, max_age=3600).decode() if cookie else ""
    except Exception:
        expected = ""
    if not expected or not hmac.compare_digest(expected, csrf):
        return _login_form(request, next, "The form had expired. Please sign in again.", 403, email)
    with web.app.sessions.begin() as session:
        result = auth.attempt_login(
            session, email, password[:1024], client_of(request), secret=web.secret
        )
        if result.staff is None:
            wait = result.wait_seconds
            message = (
                f"Too many failed sign-ins. Wait {wait} seconds before trying again."
                if wait
                else "Wrong e-mail address or password."
            )
            failed = _login_form(request, next, message, 429 if wait else 401, email)
            if wait:
                failed.headers["Retry-After"] = str(wait)
            return failed
        token, _ = auth.start_session(session, result.staff)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, web.signer.sign(token).decode(), max_age=auth.SESSION_HOURS * 3600,
        httponly=True, samesite="lax", secure=web.secure_cookies, path="/",
    )  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, user: StaffForm) -> Response:
    with state(request).app.sessions.begin() as session:
        auth.end_session(session, user.token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- the chat ------------------------------------------------------------------------------


@router.get("/chat")
def chat_page(request: Request) -> Response:
    return render(request, "chat.html", session_user(request), max_length=chat.MAX_MESSAGE)


def _base_url(request: Request) -> str:
    web = state(request)
    if web.public_url:
        return web.public_url
    # Never the Host header: a forged one would mail a link to another site.
    host, port = web.app.settings.web
    return f"http://{host}:{port}"


@router.post("/api/v1/chat", response_model=None)
async def chat_api(request: Request) -> Any:
    web = state(request)
    client = client_of(request)
    wait = web.chat_limit.allow(client)
    if wait:
        return JSONResponse(
            {"error": "too many messages; wait a moment", "retry_after": int(wait) + 1},
            status_code=429,
            headers={"Retry-After": str(int(wait) + 1), **HANG_UP},
        )
    # JSON only: a form or text/plain post from another site's page is refused, not read.
    if not is_json(request.headers.get("content-type", "")):
        return JSONResponse(
            {"error": 'send JSON (Content-Type: application/json): {"message": "..."}'},
            415,
            HANG_UP,
        )
    try:
        body = await read_body(request, MAX_CHAT_BODY)
    except TooLarge:
        return JSONResponse({"error": "request too large"}, 413, HANG_UP)
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return JSONResponse({"error": 'send JSON: {"message": "...", "session": "..."}'}, 400)
    if not isinstance(data, dict):
        return JSONResponse({"error": 'send a JSON object: {"message": "..."}'}, 400)
    try:
        answer = await run_in_threadpool(
            chat.answer, web.app, data.get("message"), data.get("session"),
            client=client, secret=web.secret, base_url=_base_url(request),
        )  # fmt: skip
    except chat.ChatError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return {
        "reply": answer.reply,
        "intents": answer.intents,
        "sections": answer.sections,
        "session": answer.session,
        "waiting_for": answer.waiting_for,
    }


@router.get("/chat/confirm/{token}")
def confirm_page(token: str, request: Request) -> Response:
    # A GET only shows the request: mail scanners follow links, people press the button.
    return _confirmation(request, token, chat.load_confirmation)


@router.post("/chat/confirm/{token}")
def confirm(token: str, request: Request) -> Response:
    return _confirmation(request, token, chat.confirm)


def _confirmation(request: Request, token: str, step: Callable[..., Any]) -> Response:
    web = state(request)
    try:
        found = step(web.app, web.secret, token)
    except chat.ChatError as exc:
        return render(request, "confirm.html", None, exc.status, error=str(exc), found=None)
    return render(request, "confirm.html", None, error="", found=found, token=token)

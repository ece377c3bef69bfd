"""The machine API: `GET /api/v1/suppressions/{email}` for JunoCloud's marketing system."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from privbot import optouts
from privbot.staff import auth
from privbot.web.security import state

router = APIRouter()
UNAUTHORISED = {"WWW-Authenticate": 'Bearer realm="privbot"'}


@router.get("/api/v1/suppressions/{email}", response_model=None)
def suppression(email: str, request: Request) -> Any:
    web = state(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return JSONResponse(
            {"error": "send an API token: Authorization: Bearer TOKEN (privbot token create)"},
            status_code=401,
            headers=UNAUTHORISED,
        )
    with web.app.sessions.begin() as session:
        if auth.check_token(session, token.strip()) is None:
            return JSONResponse(
                {"error": "unknown or revoked API token"}, status_code=401, headers=UNAUTHORISED
            )
    try:
        address = auth.normalise_email(email)
    except auth.AuthError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return optouts.status(web.app.sessions, address)

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
# RFC 6750: a good token without the scope the request needs.
READ_SCOPE_NEEDED = {
    "WWW-Authenticate": 'Bearer realm="privbot", error="insufficient_scope", '
    f'scope="{auth.READ_SUPPRESSIONS}"'
}


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
        row = auth.check_token(session, token.strip())
        if row is None:
            return JSONResponse(
                {"error": "unknown or revoked API token"}, status_code=401, headers=UNAUTHORISED
            )
        scopes = auth.token_scopes(row)
    if auth.READ_SUPPRESSIONS not in scopes:
        return JSONResponse(
            {"error": f"this token may not read suppressions (its scopes: {' '.join(scopes)})"},
            status_code=403,
            headers=READ_SCOPE_NEEDED,
        )
    try:
        address = auth.normalise_email(email)
    except auth.AuthError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return optouts.status(web.app.sessions, address)

"""`create_app(app)`: the ASGI app over one privbot `App`, with its security settings.

Every response carries a strict Content-Security-Policy (no inline script or style, no
framing) and the usual hardening headers. Templates autoescape: mail text is shown as
text, never as HTML.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import TimestampSigner
from starlette.exceptions import HTTPException as StarletteHTTPException

from privbot.app import App
from privbot.web import api, attachments, ops, problems, public, staff
from privbot.web.head import HeadAsGet
from privbot.web.security import CsrfError, LoginRequired, RateLimiter, WebState
from privbot.web.views import humanize, when

log = logging.getLogger(__name__)
HERE = Path(__file__).parent

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The confirmation links carry their token in the path: never leak it to another site.
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def create_app(app: App) -> FastAPI:
    settings = app.settings
    secret = settings.secret_key
    if not secret:
        # Sessions and confirmation links then end with this process; fine for a try-out.
        log.warning("PRIVBOT_SECRET_KEY is not set: using a random key for this process only")
        secret = secrets.token_urlsafe(32)
    public_url = settings.public_url
    limit, window = settings.chat_rate
    web = WebState(
        app=app,
        secret=secret,
        signer=TimestampSigner(secret, salt="privbot-staff-session"),
        chat_limit=RateLimiter(limit, window),
        public_url=public_url,
        secure_cookies=bool(public_url and public_url.startswith("https:")),
    )

    api_app = FastAPI(
        title="privbot", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
    api_app.state.web = web
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every value is text; mail HTML is never markup here
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["humanize"] = humanize
    env.filters["when"] = when
    api_app.state.templates = Jinja2Templates(env=env)
    api_app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    api_app.include_router(public.router)
    api_app.include_router(staff.router)
    api_app.include_router(attachments.router)
    api_app.include_router(problems.router)
    api_app.include_router(api.router)
    api_app.include_router(ops.router)  # /healthz, /readyz, /metrics

    def harden(request: Request, response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if web.secure_cookies:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    @api_app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        return harden(request, await call_next(request))

    # Outermost: everything inside (the headers above, sign-in redirects) sees the GET.
    api_app.add_middleware(HeadAsGet)

    @api_app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette answers a crash outside every middleware: the headers are set here. It
        # raises the exception again afterwards, so the server still logs it.
        return harden(request, error_page(request, 500, "Something went wrong on our side."))

    @api_app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/") or request.method != "GET":
            return JSONResponse({"error": "sign in first"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @api_app.exception_handler(CsrfError)
    async def csrf_failed(request: Request, exc: CsrfError) -> Response:
        return error_page(request, 403, "This form has expired or did not come from privbot. "
                          "Go back, reload the page and try again.")  # fmt: skip

    @api_app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(request, exc.status_code, str(exc.detail), exc.headers)

    @api_app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'input'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return error_page(request, 400, f"bad input: {problems}")

    return api_app


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "user": None},
        status_code=status, headers=headers,
    )  # fmt: skip

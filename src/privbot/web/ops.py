"""For the site's monitoring: `/healthz`, `/readyz` and `/metrics`.

The first two need no sign-in and say only a word per check (no host, version or error:
anyone can ask). `/metrics` answers only a request with PRIVBOT_METRICS_TOKEN as its bearer
token, and is not there (404) while that is unset. The facts come from the core
(`health.readiness`, the App's metrics registry); this module only asks.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from privbot.ops.health import readiness
from privbot.web.security import state

router = APIRouter()


@router.get("/healthz", response_model=None)
def healthz() -> JSONResponse:
    """Alive: the process answers. Nothing is asked of the database or the mail servers."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", response_model=None)
def readyz(request: Request) -> JSONResponse:
    app = state(request).app
    stuck_after = timedelta(seconds=app.settings.outbox_stuck_seconds)
    result = readiness(app.sessions, app.probes, stuck_after)
    body = {"status": "ready" if result.ready else "not ready", "checks": result.checks}
    return JSONResponse(body, status_code=200 if result.ready else 503)


@router.get("/metrics", response_model=None)
def metrics(request: Request) -> Response:
    app = state(request).app
    token = app.settings.metrics_token
    if not token:
        raise StarletteHTTPException(404, "Not Found")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        return JSONResponse(
            {"error": "send the metrics token: Authorization: Bearer TOKEN"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="privbot-metrics"'},
        )
    return Response(generate_latest(app.metrics.registry), media_type=CONTENT_TYPE_LATEST)

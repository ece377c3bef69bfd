"""Rendering helpers shared by the page modules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from privbot.web.security import StaffUser


def humanize(value: object) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM UTC'; other values as text."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def render(
    request: Request,
    page: str,
    user: StaffUser | None,
    status_code: int = 200,
    /,
    **context: Any,
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, page, {"user": user, **context}, status_code=status_code
    )

"""Rendering helpers shared by the page modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

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


def ago(value: object, now: datetime | None = None) -> str:
    """An ISO time as staff glance at it: 'just now', '5 min ago', '3 h ago', '2 d ago',
    'in 4 d'; past a month, the date."""
    moment = _moment(value)
    if moment is None:
        return humanize(value)
    now = now or datetime.now(UTC)
    seconds = (now - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        amount = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        amount = f"{int(seconds // 3600)} h"
    elif seconds < 30 * 86400:
        amount = f"{int(seconds // 86400)} d"
    else:
        return moment.strftime("%Y-%m-%d")
    return f"in {amount}" if future else f"{amount} ago"


def when(value: object) -> Markup:
    """A <time> element: relative, with the absolute time on hover (its title)."""
    moment = _moment(value)
    if moment is None:
        return Markup("{}").format(humanize(value))
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(), humanize(moment), ago(moment)
    )


def _moment(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    # The database's times are UTC; SQLite gives them back without the zone.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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

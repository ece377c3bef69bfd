"""Downloading an attachment of a ticket's mail: always as a file to save, never shown.

Whatever the mail says a file is (a PDF, an image, HTML with script in it), it leaves as
`application/octet-stream` with `Content-Disposition: attachment`, `nosniff` and a sandbox
policy: a browser neither renders it from our origin nor guesses a type for it, so a file a
stranger sent can never run as a page of the staff app. Each download is recorded
(`privbot.staff.evidence.open_attachment`) before its bytes are sent.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from privbot.staff import evidence
from privbot.web.security import StaffPage, state
from privbot.web.staff import MAX_TICKET_ID, TicketId

router = APIRouter()

MessageId = Annotated[int, Path(ge=1, le=MAX_TICKET_ID)]
# More parts than any mail privbot parses has (mail.parse.MAX_PARTS).
Index = Annotated[int, Path(ge=0, le=10_000)]
# No script, no plugin, no form, no same-origin access, even if a browser did render it.
DOWNLOAD_CSP = "sandbox; default-src 'none'"


def download_headers(filename: str) -> dict[str, str]:
    """RFC 6266: a plain ASCII `filename` for old clients, the exact name in `filename*`."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\%;' else "_" for c in filename
    )
    return {
        "Content-Disposition": (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": DOWNLOAD_CSP,
        "Cache-Control": "no-store",
    }


@router.get("/tickets/{ticket_id}/messages/{message_id}/attachments/{index}")
async def download(
    request: Request,
    user: StaffPage,
    ticket_id: TicketId,
    message_id: MessageId,
    index: Index,
) -> Response:
    app = state(request).app
    try:
        found = await run_in_threadpool(
            evidence.open_attachment, app, ticket_id, message_id, index, actor=user.email,
            via="web",
        )  # fmt: skip
    except evidence.AttachmentRemoved as exc:
        raise HTTPException(410, str(exc)) from None
    except evidence.NoSuchAttachment as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(
        found.data, media_type="application/octet-stream", headers=download_headers(found.filename)
    )

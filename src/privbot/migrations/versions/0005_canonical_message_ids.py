"""canonical message ids

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Stored Message-IDs kept their angle brackets (`<a@b>`, as the header had them), while the
parser, the outbox and threading use them without: a follow-up to the person's own earlier
mail found nothing, and staff replies went out with `In-Reply-To: <<a@b>>`. Every stored id
is rewritten in the parser's form (`privbot.mail.headers.parse_message_id`, repeated here
so that this migration keeps doing what it did when that function changes).
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ANGLE_ID = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")
_MAX_ID = 900
_CLIPPED = 900  # the stored header value was cut to this many characters
_BATCH = 1000


def _canonical(value: str) -> str | None:
    match = _ANGLE_ID.search(value)
    if match is None and len(value) >= _CLIPPED:
        return None  # cut short when stored: no longer the id anything refers to
    ident = _WHITESPACE.sub("", match.group(1) if match else value).replace("\x00", "")
    ident = ident.strip("<>")
    return ident if 0 < len(ident) <= _MAX_ID else None


def _rewrite(table: str, column: str) -> None:
    """Rewrite the column where it differs from its canonical form, a batch at a time."""
    bind = op.get_bind()
    meta = sa.table(table, sa.column("id", sa.Integer()), sa.column(column, sa.String()))
    col = meta.c[column]
    last = 0
    while True:
        rows = bind.execute(
            sa.select(meta.c.id, col)
            .where(meta.c.id > last, col.is_not(None))
            .order_by(meta.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        changed = [
            {"row": row.id, "value": new} for row in rows if (new := _canonical(row[1])) != row[1]
        ]
        if changed:
            bind.execute(
                meta.update()
                .where(meta.c.id == sa.bindparam("row"))
                .values({column: sa.bindparam("value")}),
                changed,
            )


def upgrade() -> None:
    _rewrite("messages", "message_id")
    # Staff replies recorded the bracketed id they answered; automatic ones never did.
    _rewrite("outbox", "in_reply_to")


def downgrade() -> None:
    # Nothing to undo: the code before this revision reads canonical ids as well (it only
    # wrote bracketed ones), and threads better with them.
    pass

"""what the reply caps count, as columns with indexes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Before every automatic reply the caps count the replies of the last hours to the mailbox
and to its domain. Those were LIKE patterns over `to_addr`, which no index serves: every
reply of the window to anyone was read, twice, so a busy day made each reply dearer (a
sixth of the watcher's time in a burst of 1,000). `to_key` and `to_domain` hold what the
caps compare (`outbox.queue.counted_as`), each first in an index with the kind and the time.
"""

from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

from privbot.outbox.queue import counted_as

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

CHUNK = 5000


def upgrade() -> None:
    op.add_column("outbox", sa.Column("to_key", sa.String(length=320), nullable=True))
    op.add_column("outbox", sa.Column("to_domain", sa.String(length=255), nullable=True))
    conn = op.get_bind()
    outbox = sa.table("outbox", sa.column("id"), sa.column("to_addr"), sa.column("to_key"),
                      sa.column("to_domain"))  # fmt: skip
    fill = (
        sa.update(outbox)
        .where(outbox.c.id == sa.bindparam("row"))
        .values(to_key=sa.bindparam("key"), to_domain=sa.bindparam("domain"))
    )
    for rows in _chunks(conn, outbox):
        values = [counted_as(to or "") for _, to in rows]
        conn.execute(fill, [
            {"row": row_id, "key": v["to_key"], "domain": v["to_domain"]}
            for (row_id, _), v in zip(rows, values, strict=True)
        ])  # fmt: skip
    op.create_index("ix_outbox_counted_key", "outbox", ["to_key", "kind", "created_at"])
    op.create_index("ix_outbox_counted_domain", "outbox", ["to_domain", "kind", "created_at"])


def _chunks(conn: sa.Connection, outbox: sa.TableClause) -> Iterator[list[tuple[int, str]]]:
    last = 0
    while True:
        rows = conn.execute(
            sa.select(outbox.c.id, outbox.c.to_addr)
            .where(outbox.c.id > last)
            .order_by(outbox.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        yield [(r[0], r[1]) for r in rows]
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_outbox_counted_domain", table_name="outbox")
    op.drop_index("ix_outbox_counted_key", table_name="outbox")
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("to_domain")
        batch_op.drop_column("to_key")

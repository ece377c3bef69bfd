"""search

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

Full-text search of tickets, closed ones too: `ticket_search` holds each ticket's words
(subject, requester, the new text of its messages; see privbot/search.py), indexed by an
FTS5 table kept in step by triggers on SQLite, by a generated tsvector column with a GIN
index on PostgreSQL. Filled here for every existing ticket. Indexes for the queue sorted
by last change and by creation, and for its "requester replied" (a page's messages).

A later batch_alter_table on ticket_search (SQLite copies the table) must create the three
triggers again.
"""

from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

from privbot import search
from privbot.mail.parse import ParseError, parse_message

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 500  # tickets read, parsed and written at a time

SQLITE = (
    "CREATE VIRTUAL TABLE ticket_fts USING fts5(head, body, content='ticket_search', "
    "content_rowid='ticket_id', tokenize='unicode61', detail='column')",
    "CREATE TRIGGER ticket_search_ai AFTER INSERT ON ticket_search BEGIN "
    "INSERT INTO ticket_fts(rowid, head, body) VALUES (new.ticket_id, new.head, new.body); END",
    "CREATE TRIGGER ticket_search_ad AFTER DELETE ON ticket_search BEGIN "
    "INSERT INTO ticket_fts(ticket_fts, rowid, head, body) "
    "VALUES ('delete', old.ticket_id, old.head, old.body); END",
    "CREATE TRIGGER ticket_search_au AFTER UPDATE ON ticket_search BEGIN "
    "INSERT INTO ticket_fts(ticket_fts, rowid, head, body) "
    "VALUES ('delete', old.ticket_id, old.head, old.body); "
    "INSERT INTO ticket_fts(rowid, head, body) VALUES (new.ticket_id, new.head, new.body); END",
)
POSTGRESQL = (
    "ALTER TABLE ticket_search ADD COLUMN vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple', head || ' ' || body)) STORED",
    "CREATE INDEX ix_ticket_search_vector ON ticket_search USING gin (vector)",
)

TICKETS = sa.table(
    "tickets", sa.column("id"), sa.column("subject"), sa.column("requester"),
    sa.column("redacted_at"),
)  # fmt: skip
MESSAGES = sa.table(
    "messages", sa.column("id"), sa.column("ticket_id"), sa.column("status"),
    sa.column("raw", sa.LargeBinary()), sa.column("redacted_at"),
)  # fmt: skip
SEARCH = sa.table("ticket_search", sa.column("ticket_id"), sa.column("head"), sa.column("body"))


def upgrade() -> None:
    op.create_table(
        "ticket_search",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("head", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    conn = op.get_bind()
    for statement in POSTGRESQL if conn.dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tickets_open_updated", ["updated_at", "id"], unique=False,
            sqlite_where=sa.text("closed_at IS NULL"),
            postgresql_where=sa.text("closed_at IS NULL"),
        )  # fmt: skip
        batch_op.create_index("ix_tickets_updated", ["updated_at", "id"], unique=False)
        batch_op.create_index("ix_tickets_created", ["created_at", "id"], unique=False)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_ticket_status_at", ["ticket_id", "status", "received_at"], unique=False
        )
    for rows in _documents(conn):
        conn.execute(SEARCH.insert(), rows)


def _documents(conn: sa.Connection) -> Iterator[list[dict[str, object]]]:
    """Every ticket's row, as privbot.search writes it, BATCH tickets at a time."""
    after = 0
    while True:
        tickets = conn.execute(
            sa.select(TICKETS.c.id, TICKETS.c.subject, TICKETS.c.requester, TICKETS.c.redacted_at)
            .where(TICKETS.c.id > after)
            .order_by(TICKETS.c.id)
            .limit(BATCH)
        ).all()
        if not tickets:
            return
        after = tickets[-1].id
        bodies = {t.id: "" for t in tickets}
        mail = conn.execute(
            sa.select(MESSAGES.c.ticket_id, MESSAGES.c.raw)
            .where(
                MESSAGES.c.ticket_id.in_([t.id for t in tickets if t.redacted_at is None]),
                MESSAGES.c.status == "handled",  # the requester's mail, not auto-replies
                MESSAGES.c.redacted_at.is_(None),
            )
            .order_by(MESSAGES.c.id)
        )
        for ticket_id, raw in mail:
            try:
                words = parse_message(raw).new_text
            except ParseError:
                continue
            bodies[ticket_id] = search.with_text(bodies[ticket_id], words)
        yield [
            {"ticket_id": t.id, "head": search.head_of(t.subject, t.requester),
             "body": bodies[t.id]}
            for t in tickets
        ]  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_ticket_status_at")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_created")
        batch_op.drop_index("ix_tickets_updated")
        batch_op.drop_index("ix_tickets_open_updated")
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE ticket_fts")  # its triggers go with ticket_search
    op.drop_table("ticket_search")

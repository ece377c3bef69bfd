"""partial indexes on the outbox's unsent replies

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Every reply ever sent stays in the outbox, nearly all of them `sent`, so a planner that
knows the table (ANALYZE, `PRAGMA optimize`) reads it whole for a bound `status = ?`:
claiming due replies cost 60 ms at 100,000 replies and grew with the years. Two partial
indexes hold only the unsent rows; the sender names the status in the SQL text to use them
(`models.outbox_status_is`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")
SENDING = sa.text("status = 'sending'")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_pending_due", "outbox", ["next_attempt_at", "id"], unique=False,
        sqlite_where=PENDING, postgresql_where=PENDING,
    )  # fmt: skip
    op.create_index(
        "ix_outbox_sending_lease", "outbox", ["lease_until", "id"], unique=False,
        sqlite_where=SENDING, postgresql_where=SENDING,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_outbox_sending_lease", table_name="outbox")
    op.drop_index("ix_outbox_pending_due", table_name="outbox")

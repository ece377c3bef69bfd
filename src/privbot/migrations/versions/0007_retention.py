"""retention

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

When the retention policy redacted a message, a reply or a ticket's subject: the run skips
rows already done, and staff can tell a removal from mail that was empty.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("messages", "outbox", "tickets")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("redacted_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("redacted_at")

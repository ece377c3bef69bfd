"""token scopes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

API tokens get scopes ("suppressions:read", "suppressions:write"). Tokens made before could
only read the suppression list, so that is what they keep.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "scopes",
                sa.String(length=200),
                nullable=False,
                server_default="suppressions:read",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("scopes")

"""where Telegram long polling stands in the bot's update queue

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

`telegram_poll_offsets`: per bot (its numeric id, the token's first part), the `offset` the
next getUpdates sends, written after each update is handled (`python -m service telegram poll`).
A restart resumes there; an update handled but not yet counted here is recognised by
`telegram_updates` (the same update_id dedupe as the webhook).
"""

import sqlalchemy as sa
from alembic import op

from service.stores.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telegram_poll_offsets",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bot_id"),
    )


def downgrade() -> None:
    op.drop_table("telegram_poll_offsets")

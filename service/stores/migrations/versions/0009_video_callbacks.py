"""completion callbacks: the durable outbox `video_callbacks`

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-05

One row per video whose `/create` named a `callback_url`, written by the claim in the same
statement as the video (state `waiting`), made due by the statement that records how the video
ended (state `pending`, its event and a fresh delivery id), then taken by a deliverer
(`service.callbacks`) until it is `delivered` or `failed` (given up). A table of the service's
own: the bot's `videos` is not touched, so the old bot keeps working and the way back drops it.
Row level security on, no policy, like every table the service creates (migration 0007).
"""

import sqlalchemy as sa
from alembic import op

from service.stores.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "video_callbacks",
        sa.Column("video_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("event", sa.String(32), nullable=True),
        sa.Column("delivery_id", sa.Text(), nullable=True),
        sa.Column("video_url", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("lease_token", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("video_id"),
    )
    # What every deliverer asks every poll: the due rows, from an index of the pending ones only.
    op.create_index("ix_video_callbacks_due", "video_callbacks", ["next_attempt_at"],
                    postgresql_where=sa.text("state = 'pending'"), sqlite_where=sa.text("state = 'pending'"))
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE video_callbacks ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.drop_index("ix_video_callbacks_due", table_name="video_callbacks")
    op.drop_table("video_callbacks")

"""a partial index on the videos still generating

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A takeover fences off the earlier attempts of its (user, prompt) still marked `generating`.
Found through `ix_videos_user_created`, that read every video the user ever made; this index
holds only the rows still generating, a handful per user whatever the history's size.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GENERATING = sa.text("status = 'generating'")


def upgrade() -> None:
    op.create_index("ix_videos_generating_user", "videos", ["tg_user_id"],
                    postgresql_where=GENERATING, sqlite_where=GENERATING)


def downgrade() -> None:
    op.drop_index("ix_videos_generating_user", table_name="videos")

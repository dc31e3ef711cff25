"""videos and video_claims

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("tg_user_id", sa.BigInteger(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("enhanced_prompt", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("video_url", sa.Text(), nullable=True),
        sa.Column("thumbnail_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prompt_key", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cost_usd", sa.Numeric(10, 2), nullable=True),
        sa.Column("duplicate_of", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_videos_user_key_created", "videos", ["tg_user_id", "prompt_key", "created_at"])
    op.create_index("ix_videos_created_at", "videos", ["created_at"])
    op.create_table(
        "video_claims",
        sa.Column("tg_user_id", sa.BigInteger(), primary_key=True),
        sa.Column("prompt_key", sa.Text(), primary_key=True),
        sa.Column("video_id", sa.BigInteger(), sa.ForeignKey("videos.id"), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("video_claims")
    op.drop_index("ix_videos_created_at", table_name="videos")
    op.drop_index("ix_videos_user_key_created", table_name="videos")
    op.drop_table("videos")

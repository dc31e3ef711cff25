"""claims keyed on a digest of the prompt key; sweep index; provider job id; per-user video index

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

- `video_claims` was keyed on (tg_user_id, prompt_key). A btree entry holds at most ~2.7 kB,
  and a 2,000-character prompt key in CJK is ~6 kB: PostgreSQL refused such a claim with
  "index row size exceeds" (a 503 for valid input). The claim is now keyed on SHA-256 of the
  key (32 bytes); the readable key stays on the video. The digest is computed in Python (the
  same function the service uses), so the table is rebuilt rather than altered in place.
- `ix_videos_user_key_created` had the same overflow; it becomes (tg_user_id, created_at).
- A partial index on the live claims keeps the periodic sweep cheap at millions of claims.
- `videos.provider_job_id`: the paid job of each attempt, recorded before it is waited on.
"""

import sqlalchemy as sa
from alembic import op

from service.stores.base import key_digest

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COPY_BATCH = 5000
_LIVE = sa.text("status = 'generating'")


def _claims_table(name: str, key: sa.Column) -> sa.Table:
    return op.create_table(
        name,
        sa.Column("tg_user_id", sa.BigInteger(), primary_key=True),
        key,
        sa.Column("video_id", sa.BigInteger(), sa.ForeignKey("videos.id"), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    )


def _copy(bind: sa.Connection, source: str, target: sa.Table, convert) -> None:  # type: ignore[no-untyped-def]
    """Copy `source` into `target` in batches, passing each row's key through `convert`."""
    old_key, new_key = ("prompt_key", "key_digest") if "key_digest" in target.c else ("key_digest", "prompt_key")
    src = sa.table(source, sa.column("tg_user_id"), sa.column(old_key), sa.column("video_id"), sa.column("attempt"),
                   sa.column("status"), sa.column("claimed_at"), sa.column("lease_expires_at"))
    last = None
    while True:
        query = sa.select(src).order_by(src.c.tg_user_id, src.c[old_key]).limit(COPY_BATCH)
        if last is not None:  # keyset pagination: each batch is one index range scan
            query = query.where(sa.tuple_(src.c.tg_user_id, src.c[old_key]) > sa.tuple_(*last))
        rows = bind.execute(query).mappings().all()
        if not rows:
            return
        # Untyped on both sides: the stored values move as they are (SQLite's times are text).
        untyped = sa.table(target.name, *(sa.column(c.name) for c in target.columns))
        bind.execute(untyped.insert(), [
            {**{k: v for k, v in row.items() if k != old_key}, new_key: convert(row)} for row in rows
        ])
        last = (rows[-1]["tg_user_id"], rows[-1][old_key])


def upgrade() -> None:
    bind = op.get_bind()
    new = _claims_table("video_claims_new", sa.Column("key_digest", sa.LargeBinary(32), primary_key=True))
    if op.get_context().as_sql:  # offline (`migrate --sql`)
        op.execute("-- then every row of video_claims is copied into video_claims_new with key_digest ="
                   " SHA-256 of its prompt_key, computed in Python (service.stores.base.key_digest)")
    else:
        _copy(bind, "video_claims", new, lambda row: key_digest(row["prompt_key"]))
    op.drop_table("video_claims")
    op.rename_table("video_claims_new", "video_claims")
    if bind.dialect.name == "postgresql":
        # Constraint names follow the table they were created with; give them the plain ones.
        op.execute("ALTER TABLE video_claims RENAME CONSTRAINT video_claims_new_pkey TO video_claims_pkey")
        op.execute("ALTER TABLE video_claims RENAME CONSTRAINT video_claims_new_video_id_fkey "
                   "TO video_claims_video_id_fkey")
    op.create_index("ix_claims_generating_lease", "video_claims", ["lease_expires_at"],
                    postgresql_where=_LIVE, sqlite_where=_LIVE)
    op.drop_index("ix_videos_user_key_created", table_name="videos")
    op.create_index("ix_videos_user_created", "videos", ["tg_user_id", "created_at"])
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("provider_job_id", sa.Text(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    # A plain DROP COLUMN (SQLite >= 3.35): a batch rebuild would drop `videos` itself, which
    # the claims' foreign key refuses while claims point at it.
    op.execute("ALTER TABLE videos DROP COLUMN provider_job_id")
    op.drop_index("ix_videos_user_created", table_name="videos")
    op.create_index("ix_videos_user_key_created", "videos", ["tg_user_id", "prompt_key", "created_at"])
    op.drop_index("ix_claims_generating_lease", table_name="video_claims")
    # Back to readable keys: each claim takes the key of the video it points at.
    old = _claims_table("video_claims_old", sa.Column("prompt_key", sa.Text(), primary_key=True))
    videos = sa.table("videos", sa.column("id"), sa.column("prompt_key"))
    key_of = dict(bind.execute(sa.select(videos.c.id, videos.c.prompt_key)).all())
    _copy(bind, "video_claims", old, lambda row: key_of[row["video_id"]])
    op.drop_table("video_claims")
    op.rename_table("video_claims_old", "video_claims")
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE video_claims RENAME CONSTRAINT video_claims_old_pkey TO video_claims_pkey")
        op.execute("ALTER TABLE video_claims RENAME CONSTRAINT video_claims_old_video_id_fkey "
                   "TO video_claims_video_id_fkey")

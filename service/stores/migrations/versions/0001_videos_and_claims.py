"""videos and video_claims; adopts the bot's existing `videos` table if there is one

Revision ID: 0001
Revises:
Create Date: 2026-11-28

The operator's real store (Supabase) already has a `videos` table with the incident's columns
and history. Creating it again would fail, and starting with an empty claims table would let
the first request after the switch duplicate a video made an hour before. So when `videos`
exists, this revision adds the claim's columns to it, computes every row's prompt key (with
`service.prompt_key`, in Python: SQL has no NFKC), and seeds one claim per (user, key) from the
latest non-failed video. Stop the old bot first: its rows still `generating` get no lease, so
they do not block (the audit lists them as stuck claims).

Switch-over and switch-back. On an adopted table every added column is nullable or defaulted, and
no existing column is altered: the old bot's own insert (its eight columns) and its
`update … set status` keep working while both run. Its rows get `attempt` 1 from the default, a
NULL `prompt_key` (and on SQLite a NULL `updated_at`: SQLite cannot add a column whose default is
a time); the service fills both when it reads such a row (`service.stores.base.video_record`), and
never claims against them. What the adoption added, and on SQLite the bot's original timestamp
text it rewrote, is written down in `claimfirst_adoption`, so that the downgrade drops exactly the
added columns and puts the original text back: the table is as it was before the upgrade.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from service.prompt_key import prompt_key

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# What adopting a table changed, for a lossless downgrade: a row with `row_id` NULL is a column
# the adoption added; one with a `row_id` is the bot's original text of a rewritten timestamp.
ADOPTION = "claimfirst_adoption"
# Rows read and updated per round trip while computing prompt keys of an existing table.
BACKFILL_BATCH = 5000
# How SQLAlchemy stores a DateTime in SQLite (naive UTC, microseconds): the claim compares
# these columns as text, so an adopted '2025-10-15T12:37:15+00:00' must be rewritten to it.
SQLITE_STORED_FORM = "%Y-%m-%d %H:%M:%S.%f"


def claim_columns(*, nullable: bool = False) -> list[sa.Column]:
    """The columns the claim adds to the incident's; all nullable while an old table is filled."""
    return [
        sa.Column("prompt_key", sa.Text(), nullable=nullable),
        sa.Column("attempt", sa.Integer(), nullable=nullable),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cost_usd", sa.Numeric(10, 2), nullable=True),
        sa.Column("duplicate_of", sa.BigInteger(), nullable=True),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    offline = op.get_context().as_sql
    if offline and op.get_context().config.attributes.get("videos_exist"):
        # Offline (`migrate --sql`): the caller looked whether the bot's table exists.
        _print_adoption()
        return
    if not offline and bot_schema(bind) is not None:
        _adopt_existing_videos(bind)
    else:
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
            *claim_columns(),
        )
    op.create_index("ix_videos_user_key_created", "videos", ["tg_user_id", "prompt_key", "created_at"])
    op.create_index("ix_videos_created_at", "videos", ["created_at"])
    _create_claims()
    # One claim per key, from its latest non-failed video; no lease (see the docstring).
    op.execute(SEED_CLAIMS)


def _create_claims() -> None:
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


SEED_CLAIMS = (
        """
        INSERT INTO video_claims (tg_user_id, prompt_key, video_id, attempt, status, claimed_at, lease_expires_at)
        SELECT tg_user_id, prompt_key, id, 1, status, created_at, NULL FROM (
            SELECT id, tg_user_id, prompt_key, status, created_at,
                   ROW_NUMBER() OVER (PARTITION BY tg_user_id, prompt_key ORDER BY created_at DESC, id DESC) AS latest
            FROM videos WHERE status <> 'failed'
        ) ranked WHERE latest = 1
        """
)


def bot_schema(bind: sa.Connection) -> str | None:
    """Where an existing `videos` is: the service's own schema (first on the search_path), or
    `public` when CLAIMFIRST_DB_SCHEMA puts the service's tables elsewhere; None: nowhere."""
    inspector = sa.inspect(bind)
    for schema in (inspector.default_schema_name, "public"):
        if inspector.has_table("videos", schema=schema):
            return schema
    return None


def _print_adoption() -> None:
    """The adoption as `migrate --sql` shows it: its Python steps are described, not run."""
    op.execute("-- adopting the existing table videos: ADD COLUMN for each of prompt_key, attempt (DEFAULT 1),"
               " error, cost_usd, duplicate_of, updated_at that it lacks (recorded in claimfirst_adoption)")
    op.execute("-- then every row's prompt_key is computed in Python (service.prompt_key: NFKC) and written"
               " by id; on SQLite the ISO text timestamps are rewritten to the stored form")
    op.create_index("ix_videos_user_key_created", "videos", ["tg_user_id", "prompt_key", "created_at"])
    op.create_index("ix_videos_created_at", "videos", ["created_at"])
    _create_claims()
    op.execute("-- then one claim per (user, prompt key) is seeded from the latest non-failed video")


def _adopt_existing_videos(bind: sa.Connection) -> None:
    existing = {column["name"] for column in sa.inspect(bind).get_columns("videos", schema=bot_schema(bind))}
    required = {"id", "tg_user_id", "prompt", "status", "created_at"}
    if missing := required - existing:
        raise RuntimeError(f"existing table 'videos' lacks {', '.join(sorted(missing))}: not the bot's table?")
    adoption = op.create_table(
        ADOPTION,
        sa.Column("column_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=True),
        sa.Column("original", sa.Text(), nullable=True),
    )
    # Nullable or defaulted, so that the old bot's insert, which names none of them, still works.
    added = [
        sa.Column("prompt_key", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True, server_default=sa.text("1")),
        *claim_columns()[2:],
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    ]
    added = [column for column in added if column.name not in existing]
    for column in added:
        # Plain ADD COLUMN on both backends (no batch copy of the table): the rest of its
        # definition stays byte for byte what the bot had.
        op.add_column("videos", column)
    if added:
        op.bulk_insert(adoption, [{"column_name": column.name} for column in added])

    videos = sa.table("videos", sa.column("id"), sa.column("prompt"), sa.column("prompt_key"))
    last_id = None
    while True:
        query = sa.select(videos.c.id, videos.c.prompt).order_by(videos.c.id).limit(BACKFILL_BATCH)
        if last_id is not None:
            query = query.where(videos.c.id > last_id)
        rows = bind.execute(query).all()
        if not rows:
            break
        bind.execute(
            sa.update(videos).where(videos.c.id == sa.bindparam("row_id")).values(prompt_key=sa.bindparam("key")),
            [{"row_id": row.id, "key": prompt_key(row.prompt or "")} for row in rows],
        )
        last_id = rows[-1].id
    if bind.dialect.name == "sqlite":
        _sqlite_timestamps_to_stored_form(bind, adoption, "created_at", "updated_at" if "updated_at" in existing else None)
    # Only columns this revision added are filled: the bot's own values are left as they are.
    if "updated_at" not in existing:
        op.execute("UPDATE videos SET updated_at = created_at")
        if bind.dialect.name == "postgresql":
            # The old bot's new rows get a time; SQLite cannot add such a default (the service
            # reads a NULL there as created_at).
            op.alter_column("videos", "updated_at", server_default=sa.text("now()"))


def _sqlite_timestamps_to_stored_form(bind: sa.Connection, adoption: sa.Table, *columns: str | None) -> None:
    """Rewrite the bot's ISO text timestamps (any offset) as the service stores them, in UTC,
    keeping each original text in `adoption` for the downgrade.

    PostgreSQL needs nothing: its timestamptz columns are typed and compare as times.
    """
    names = [name for name in columns if name]
    videos = sa.table("videos", sa.column("id"), *(sa.column(name) for name in names))
    rows = bind.execute(sa.select(videos.c.id, *(videos.c[name] for name in names))).all()
    updates = []
    for row in rows:
        values = {name: _stored_form(row.id, name, getattr(row, name)) for name in names}
        if any(values[name] != getattr(row, name) for name in names):
            updates.append({"row_id": row.id, **{f"new_{name}": value for name, value in values.items()}})
    originals = [
        {"column_name": name, "row_id": row.id, "original": getattr(row, name)}
        for row in rows for name in names
        if getattr(row, name) is not None and _stored_form(row.id, name, getattr(row, name)) != getattr(row, name)
    ]
    if originals:
        bind.execute(adoption.insert(), originals)
    if updates:
        bind.execute(
            sa.update(videos).where(videos.c.id == sa.bindparam("row_id"))
            .values({name: sa.bindparam(f"new_{name}") for name in names}),
            updates,
        )


def _stored_form(row_id: int, column: str, value: object) -> object:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise RuntimeError(f"videos.{column} of row {row_id} is not an ISO timestamp: {value!r}") from exc
    # Naive text is taken as UTC: it is what the service itself writes.
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(tzinfo=None).strftime(SQLITE_STORED_FORM)


def downgrade() -> None:
    # Never drops `videos` itself: it may be the bot's own history. An adopted table gets back
    # exactly what it had (see the docstring); one this revision created loses the claim's columns.
    bind = op.get_bind()
    op.drop_table("video_claims")
    op.drop_index("ix_videos_created_at", table_name="videos")
    op.drop_index("ix_videos_user_key_created", table_name="videos")
    if not sa.inspect(bind).has_table(ADOPTION):
        with op.batch_alter_table("videos") as batch:
            for column in claim_columns():
                batch.drop_column(column.name)
        return
    adoption = sa.table(ADOPTION, sa.column("column_name"), sa.column("row_id"), sa.column("original"))
    recorded = bind.execute(sa.select(adoption.c.column_name, adoption.c.row_id, adoption.c.original)).all()
    videos = sa.table("videos", sa.column("id"), *(sa.column(name) for name in {r.column_name for r in recorded}))
    for name in sorted({r.column_name for r in recorded if r.row_id is not None}):
        bind.execute(
            sa.update(videos).where(videos.c.id == sa.bindparam("row")).values({name: sa.bindparam("text")}),
            [{"row": r.row_id, "text": r.original} for r in recorded if r.column_name == name and r.row_id is not None],
        )
    for r in recorded:
        if r.row_id is None:
            # Native DROP COLUMN (SQLite >= 3.35): a batch copy would rewrite the bot's table.
            op.execute(f'ALTER TABLE videos DROP COLUMN "{r.column_name}"')
    op.drop_table(ADOPTION)

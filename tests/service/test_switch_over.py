"""The switch-over on the bot's own table, and the way back (issue 19, part 1).

The bot's table is as the write-up's bot has it (defaults for `created_at` and `status`, a CHECK on
the status, its own `error` column), filled with the incident's history. After the upgrade the old
bot's writes, exactly as the write-up shows them, must still work while the service runs beside it;
after a downgrade to base the table must be what it was: same columns, types, constraints,
defaults and indexes (read from the catalog), and the same rows (a checksum) with the bot's
writes in them.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import sqlalchemy as sa

from service.prompt_key import prompt_key
from service.stores.engine import downgrade, make_engine, migrate
from tests.stores import migrated_store

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "videos.csv"
COLUMNS = ("id", "tg_user_id", "prompt", "enhanced_prompt", "duration_seconds", "category", "status",
           "video_url", "thumbnail_url", "error", "created_at")

PG_BOT_TABLE = """
CREATE TABLE videos (
    id bigserial PRIMARY KEY,
    tg_user_id bigint NOT NULL,
    prompt text NOT NULL,
    enhanced_prompt text,
    duration_seconds integer DEFAULT 6,
    category varchar(64),
    status varchar(16) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'generating', 'ready', 'failed')),
    video_url text,
    thumbnail_url text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now()
)"""
SQLITE_BOT_TABLE = """
CREATE TABLE videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tg_user_id BIGINT NOT NULL,
    prompt TEXT NOT NULL,
    enhanced_prompt TEXT,
    duration_seconds INTEGER DEFAULT 6,
    category VARCHAR(64),
    status VARCHAR(16) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'generating', 'ready', 'failed')),
    video_url TEXT,
    thumbnail_url TEXT,
    error TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""
# The write-up's pending row, then its status updates (supabase-py's insert/update, as SQL).
BOT_INSERT = ("INSERT INTO videos (tg_user_id, prompt, enhanced_prompt, duration_seconds, category, status,"
              " video_url, thumbnail_url) VALUES (:user, :prompt, :enhanced, 6, NULL, 'pending', NULL, NULL)"
              " RETURNING id")
BOT_GENERATING = "UPDATE videos SET status = 'generating' WHERE id = :id"
BOT_READY = "UPDATE videos SET status = 'ready', video_url = :url WHERE id = :id"
BOT_FAILED = "UPDATE videos SET status = 'failed', error = 'provider error' WHERE id = :id"


def bot_history(engine: sa.Engine) -> None:
    with FIXTURES.open() as f:
        rows = [{"id": int(row["id"]), "user": int(row["tg_user_id"]), "prompt": row["prompt"],
                 "enhanced": row["enhanced_prompt"] or None, "category": row["category"] or None,
                 "status": row["status"], "url": row["video_url"] or None,
                 "thumb": row["thumbnail_url"] or None, "at": row["created_at"]} for row in csv.DictReader(f)]
    with engine.begin() as conn:
        conn.execute(sa.text(PG_BOT_TABLE if engine.dialect.name == "postgresql" else SQLITE_BOT_TABLE))
        conn.execute(sa.text(
            "INSERT INTO videos (id, tg_user_id, prompt, enhanced_prompt, category, status, video_url,"
            " thumbnail_url, created_at) VALUES (:id, :user, :prompt, :enhanced, :category, :status, :url,"
            " :thumb, :at)"), rows)
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('videos', 'id'), max(id)) FROM videos"))


def table_schema(engine: sa.Engine) -> list:
    """Everything the catalog says about `videos`: columns (order, type, nullability, default),
    constraints, indexes, triggers and row level security."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return [
                conn.execute(sa.text("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'videos'"
                                     " ORDER BY name")).all(),
                conn.execute(sa.text("PRAGMA table_xinfo(videos)")).all(),
            ]
        return [conn.execute(sa.text(query)).all() for query in (
            "SELECT ordinal_position, column_name, data_type, character_maximum_length, numeric_precision,"
            " is_nullable, column_default FROM information_schema.columns WHERE table_name = 'videos'"
            " ORDER BY ordinal_position",
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'videos'::regclass ORDER BY conname",
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'videos' ORDER BY indexname",
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'videos'::regclass AND NOT tgisinternal",
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'videos'::regclass",
        )]


def rows_of(engine: sa.Engine) -> list[tuple]:
    """The bot's columns of every row, by id, as the database hands them back."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(f"SELECT {', '.join(COLUMNS)} FROM videos ORDER BY id"))]


def checksum(rows: list[tuple]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_old_bot_keeps_writing_after_the_upgrade_and_the_downgrade_gives_its_table_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        bot_history(engine)
        schema_before, rows_before = table_schema(engine), rows_of(engine)

        migrate(engine)
        # The old bot, still running during the switch-over, writes as it always has.
        with engine.begin() as conn:
            new_id = conn.execute(sa.text(BOT_INSERT), {"user": 777, "prompt": "A cat surfing at dawn!",
                                                        "enhanced": "A cinematic cat surfing"}).scalar_one()
            conn.execute(sa.text(BOT_GENERATING), {"id": new_id})
            conn.execute(sa.text(BOT_READY), {"id": new_id, "url": "https://cdn.example/cat.mp4"})
            conn.execute(sa.text(BOT_FAILED), {"id": 56})
            new_row = conn.execute(sa.text(f"SELECT {', '.join(COLUMNS)} FROM videos WHERE id = :id"),
                                   {"id": new_id}).one()
        # The service reads the bot's row as one of its own: the key it did not write is computed.
        with migrated_store(engine.url.render_as_string(hide_password=False)) as store:
            seen = store.get(new_id)
        assert (seen.prompt_key, seen.attempt, seen.status) == (prompt_key("A cat surfing at dawn!"), 1, "ready")
        assert seen.updated_at >= seen.created_at

        downgrade(engine, "base")
        status = COLUMNS.index("status")
        expected = [row[:status] + ("failed",) + row[status + 1:COLUMNS.index("error")] + ("provider error",)
                    + row[COLUMNS.index("error") + 1:] if row[0] == 56 else row for row in rows_before]
        expected.append(tuple(new_row))
        assert table_schema(engine) == schema_before
        after = rows_of(engine)
        assert after[:3] == expected[:3]  # a readable diff first, when it fails
        assert checksum(after) == checksum(expected)
        assert not sa.inspect(engine).has_table("video_claims")
        assert not sa.inspect(engine).has_table("claimfirst_adoption")
    finally:
        engine.dispose()


def test_upgrade_then_downgrade_at_once_is_the_identity(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        bot_history(engine)
        before = (table_schema(engine), checksum(rows_of(engine)))
        migrate(engine)
        downgrade(engine, "base")
        migrate(engine)  # and adopting again works: nothing of the first adoption was left behind
        downgrade(engine, "base")
        assert (table_schema(engine), checksum(rows_of(engine))) == before
    finally:
        engine.dispose()

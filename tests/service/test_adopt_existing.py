"""Pointing the service at the bot's existing store: the migration adopts its `videos` table.

The stand-in is the reconstructed incident history (`data/fixtures/videos.csv`) in a table with
only the incident's columns, as the bot's Supabase table has.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.claim import ClaimRule, ClaimTicket, Holder, NewVideo
from service.stores.models import UTCDateTime, Video, VideoClaim
from service.prompt_key import prompt_key
from service.stores.engine import downgrade, make_engine, migrate
from tests.stores import age, migrated_store

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "videos.csv"
RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))
INCIDENT_USER, INCIDENT_PROMPT = 6891234507, "Smart wallets as digital assistants..."


def bot_table(metadata: sa.MetaData) -> sa.Table:
    """The bot's table: the incident's columns and nothing the claim needs."""
    return sa.Table(
        "videos", metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("tg_user_id", sa.BigInteger(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("enhanced_prompt", sa.Text()),
        sa.Column("duration_seconds", sa.Integer()),
        sa.Column("category", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("video_url", sa.Text()),
        sa.Column("thumbnail_url", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


@pytest.fixture
def history(db_url: str):
    engine = make_engine(db_url)
    table = bot_table(sa.MetaData())
    table.create(engine)
    with FIXTURES.open() as f:
        rows = [
            {**{k: row[k] or None for k in ("prompt", "enhanced_prompt", "category", "status", "video_url",
                                             "thumbnail_url")},
             "id": int(row["id"]), "tg_user_id": int(row["tg_user_id"]),
             "duration_seconds": int(row["duration_seconds"]) if row["duration_seconds"] else None,
             "created_at": datetime.fromisoformat(row["created_at"])}
            for row in csv.DictReader(f)
        ]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
        if engine.dialect.name == "postgresql":  # rows came with ids: move the sequence past them
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('videos', 'id'), max(id)) FROM videos"))
    yield engine, rows
    engine.dispose()


def test_existing_history_is_adopted_keyed_and_claimed(history) -> None:
    engine, rows = history
    migrate(engine)
    migrate(engine)  # idempotent: a second start finds the schema current

    with engine.connect() as conn:
        keyed = dict(conn.execute(sa.select(Video.id, Video.prompt_key)).all())
        claims = conn.execute(sa.select(sa.func.count()).select_from(VideoClaim)).scalar_one()
    assert keyed == {row["id"]: prompt_key(row["prompt"]) for row in rows}
    live_keys = {(row["tg_user_id"], prompt_key(row["prompt"])) for row in rows if row["status"] != "failed"}
    assert claims == len(live_keys)

    with migrated_store(store_url(engine)) as store:
        video_56 = store.get(56)
        assert (video_56.attempt, video_56.updated_at) == (1, video_56.created_at)
        request = NewVideo(INCIDENT_USER, INCIDENT_PROMPT, prompt_key(INCIDENT_PROMPT))
        # Seen from inside the window, the first request after the switch is already a duplicate of
        # the history ...
        history_age = datetime.now(UTC) - video_56.created_at
        age(store_url(engine), seconds=-(history_age - timedelta(hours=1)).total_seconds())
        holder = store.claim(request, RULE)
        assert isinstance(holder, Holder) and holder.blocks and holder.video.id == 56
        # ... and once the window has passed, a new video gets an id past the history's (on
        # PostgreSQL the claim draws ids from the sequence, so duplicates leave gaps).
        age(store_url(engine), hours=25)
        ticket = store.claim(request, RULE)
        assert isinstance(ticket, ClaimTicket) and ticket.video_id > max(row["id"] for row in rows)
        assert store.get(ticket.video_id).prompt_key == request.prompt_key


def store_url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_a_table_that_is_not_the_bots_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE videos (id INTEGER PRIMARY KEY, title TEXT)"))
    try:
        with pytest.raises(RuntimeError, match="lacks created_at, prompt, status, tg_user_id"):
            migrate(engine)
    finally:
        engine.dispose()


def test_downgrade_removes_only_what_the_claim_added(history) -> None:
    engine, rows = history
    migrate(engine)
    downgrade(engine, "base")
    inspector = sa.inspect(engine)
    assert not inspector.has_table("video_claims")
    columns = {column["name"] for column in inspector.get_columns("videos")}
    # Exactly the bot's columns: `updated_at` was added by the adoption, so it goes too (the
    # byte-for-byte comparison is tests/service/test_switch_over.py).
    assert columns == {c.name for c in bot_table(sa.MetaData()).columns}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sa.table("videos"))).scalar_one() == len(rows)


def test_sqlite_iso_text_timestamps_are_rewritten_so_the_window_compares_as_time(sqlite_url: str) -> None:
    """The bot wrote `…T12:37:15+00:00`; compared as text against the service's own
    `… 12:37:15.000000`, a video 24 h 05 min old still blocked and answered a confusing 409."""
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE videos (id INTEGER PRIMARY KEY, tg_user_id BIGINT NOT NULL, prompt TEXT NOT NULL,"
            " enhanced_prompt TEXT, duration_seconds INTEGER, category VARCHAR(64), status VARCHAR(16) NOT NULL,"
            " video_url TEXT, thumbnail_url TEXT, created_at TEXT NOT NULL, updated_at TEXT)"))
        conn.execute(sa.text(
            "INSERT INTO videos (id, tg_user_id, prompt, status, created_at, updated_at) VALUES (1, 7, 'Old prompt', 'ready', '2025-10-15T12:37:15+00:00', NULL),"
            " (2, 7, 'Other prompt', 'ready', '2025-10-15T14:37:15.250000+02:00', '2025-10-15T12:40:00Z'),"
            " (3, 8, 'Naive prompt', 'ready', '2025-10-15 12:37:15', NULL)"))
    try:
        migrate(engine)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT id, created_at, updated_at FROM videos ORDER BY id")).all()
            claimed = conn.execute(sa.text("SELECT claimed_at FROM video_claims ORDER BY video_id")).scalars().all()
        assert [tuple(row) for row in stored] == [
            # The bot's own NULL `updated_at` stays NULL (the downgrade must give it back as it
            # was); the service reads it as `created_at`.
            (1, "2025-10-15 12:37:15.000000", None),
            (2, "2025-10-15 12:37:15.250000", "2025-10-15 12:40:00.000000"),
            (3, "2025-10-15 12:37:15.000000", None),
        ]
        assert claimed == [row[1] for row in stored]

        with migrated_store(sqlite_url) as store:
            request = NewVideo(7, "Old prompt", prompt_key("Old prompt"))
            # Bring the history forward until video 1 is 23 h 55 min old: it still blocks ...
            history_age = datetime.now(UTC) - store.get(1).created_at
            assert store.get(1).updated_at == store.get(1).created_at  # the NULL read as created_at
            age(sqlite_url, seconds=-(history_age - timedelta(hours=23, minutes=55)).total_seconds())
            assert isinstance(store.claim(request, RULE), Holder)
            # ... and ten minutes later it no longer does.
            age(sqlite_url, minutes=10)
            ticket = store.claim(request, RULE)
            assert isinstance(ticket, ClaimTicket) and ticket.attempt == 2
    finally:
        engine.dispose()


def test_an_adopted_timestamp_that_is_not_a_time_stops_the_migration(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE videos (id INTEGER PRIMARY KEY, tg_user_id BIGINT, prompt TEXT,"
                             " status TEXT, created_at TEXT)"))
        conn.execute(sa.text("INSERT INTO videos VALUES (4, 7, 'p', 'ready', 'yesterday')"))
    try:
        with pytest.raises(RuntimeError, match="videos.created_at of row 4 is not an ISO timestamp: 'yesterday'"):
            migrate(engine)
        assert not sa.inspect(engine).has_table("video_claims")  # rolled back: nothing half-adopted
    finally:
        engine.dispose()

"""Supabase-safe objects (issue 19, part 2), on a real PostgreSQL.

Supabase exposes `public` to anyone with the anon key under default grants: every table the
service creates has row level security on and no policy, so `anon` sees nothing while the
service (the owner) works as before. Behind the transaction pooler prepared statements must be
off (`CLAIMFIRST_DB_PREPARE=false`): the claim runs with none prepared on the server.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from service.claim import ClaimRule, ClaimTicket, Holder, NewVideo
from service.prompt_key import prompt_key
from service.stores.engine import make_engine, migrate
from tests.service.test_switch_over import bot_history
from tests.stores import migrated_store

pytestmark = pytest.mark.postgres
RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))
SERVICE_TABLES = {"videos", "video_claims", "idempotency_keys", "telegram_updates", "telegram_poll_offsets",
                  "alembic_version", "video_callbacks"}


def row_security(engine: sa.Engine) -> dict[str, bool]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'")).all())


def test_every_table_the_service_creates_has_row_level_security_and_no_policy(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        migrate(engine)
        assert row_security(engine) == {table: True for table in SERVICE_TABLES}
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pg_policy")).scalar_one() == 0
    finally:
        engine.dispose()


def test_an_adopted_table_keeps_its_own_setting_and_anon_reads_no_claim(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        bot_history(engine)
        migrate(engine)
        security = row_security(engine)
        assert security.pop("videos") is False  # the bot's table: its policies are the operator's
        assert security == {table: True for table in SERVICE_TABLES - {"videos"} | {"claimfirst_adoption"}}
        with engine.begin() as conn:
            claims = conn.execute(sa.text("SELECT count(*) FROM video_claims")).scalar_one()
            assert claims > 0  # the owner (the service) sees the seeded claims
            # Supabase's default grants give anon everything on public's tables.
            conn.execute(sa.text("DO $$ BEGIN CREATE ROLE anon NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL;"
                                 " END $$"))
            conn.execute(sa.text("GRANT ALL ON ALL TABLES IN SCHEMA public TO anon"))
            conn.execute(sa.text("SET LOCAL ROLE anon"))
            assert conn.execute(sa.text("SELECT count(*) FROM video_claims")).scalar_one() == 0
            assert conn.execute(sa.text("DELETE FROM video_claims")).rowcount == 0
            conn.execute(sa.text("RESET ROLE"))
            assert conn.execute(sa.text("SELECT count(*) FROM video_claims")).scalar_one() == claims
    finally:
        engine.dispose()


def prepared_statements(store) -> tuple[object, int]:  # type: ignore[no-untyped-def]
    """The request connection's prepare_threshold and how many statements its session prepared."""
    async def look() -> tuple[object, int]:
        async with store._requests.connection() as conn:
            cursor = await conn.execute("SELECT count(*) AS n FROM pg_prepared_statements")
            return conn.prepare_threshold, (await cursor.fetchone())["n"]
    return store._runner.run(look())


@pytest.mark.parametrize(("prepare", "threshold"), [(False, None), (True, 5)], ids=["pooler", "default"])
def test_the_claim_runs_without_prepared_statements_for_the_transaction_pooler(
        pg_url: str, prepare: bool, threshold: object) -> None:
    with migrated_store(pg_url, db_prepare=prepare, db_pool_size=1, db_max_overflow=0) as store:
        # One request connection, the same statements ten times over: past psycopg's threshold
        # (5) they are prepared on the server unless preparing is off.
        for n in range(10):
            request = NewVideo(42, f"A cat surfing, take {n}", prompt_key(f"A cat surfing, take {n}"))
            ticket = store.claim(request, RULE)
            assert isinstance(ticket, ClaimTicket)
            assert isinstance(store.claim(request, RULE), Holder)
            assert store.get(ticket.video_id).status == "generating"
        seen_threshold, prepared = prepared_statements(store)
        assert seen_threshold == threshold
        assert (prepared == 0) is (not prepare)


def tables_by_schema(engine: sa.Engine) -> dict[str, set[str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT schemaname, tablename FROM pg_tables"
                                    " WHERE schemaname IN ('public', 'claimfirst')")).all()
    found: dict[str, set[str]] = {}
    for schema, table in rows:
        found.setdefault(schema, set()).add(table)
    return found


def test_db_schema_puts_the_service_tables_beside_the_bots_table(pg_url: str) -> None:
    from service import Settings
    from service.stores import open_store
    from service.stores.engine import downgrade
    from tests.stores import SyncStore

    settings = Settings(database_url=pg_url, db_schema="claimfirst")
    plain = make_engine(pg_url)
    engine = make_engine(settings.connect_url)
    try:
        bot_history(plain)
        migrate(engine)
        assert tables_by_schema(plain) == {
            "public": {"videos"},  # adopted where it is, nothing added beside it
            "claimfirst": {"video_claims", "idempotency_keys", "telegram_updates", "telegram_poll_offsets", "alembic_version",
                           "claimfirst_adoption", "video_callbacks"},
        }
        with plain.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM claimfirst.video_claims")).scalar_one() > 0
            assert conn.execute(sa.text("SELECT count(*) FROM public.videos WHERE prompt_key IS NULL")).scalar_one() == 0
        store = SyncStore(open_store(settings))
        try:
            request = NewVideo(42, "A cat surfing", prompt_key("A cat surfing"))
            ticket = store.claim(request, RULE)
            assert isinstance(ticket, ClaimTicket) and isinstance(store.claim(request, RULE), Holder)
        finally:
            store.close()
        with plain.connect() as conn:  # the claim went to the service's schema, the video to the bot's table
            assert conn.execute(sa.text("SELECT count(*) FROM claimfirst.video_claims WHERE video_id = :id"),
                                {"id": ticket.video_id}).scalar_one() == 1
        downgrade(engine, "base")
        assert tables_by_schema(plain) == {"public": {"videos"}}
    finally:
        engine.dispose()
        plain.dispose()

"""`service.housekeeping`: old Idempotency-Keys and Telegram deliveries are deleted by the
running service, on SQLite and PostgreSQL, in batches; one chore failing does not stop the other,
and a stopped PostgreSQL fails each chore as a warning."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from service import Runtime, Settings, StorageUnavailable
from service.housekeeping import UPDATE_MEMORY, Chore, forget_once
from service.stores.models import IdempotencyKey, TelegramUpdate
from tests.service.app_client import running_app, video_count
from tests.service.failures import count, own_postgres
from tests.service.live import wait_until
from tests.stores import age, migrated_store


def test_the_service_forgets_old_keys_and_deliveries_when_it_starts(db_url: str) -> None:
    with migrated_store(db_url) as store:
        begun = store.begin_key("user:1", "k1", "f" * 64, timedelta(hours=24), timedelta(seconds=20))
        store.finish_key("user:1", "k1", begun.token, 202, "{}")
        store.record_update(1)
        age(db_url, hours=49)
        store.record_update(2)  # received just now: kept
    with running_app(db_url) as client:
        wait_until(lambda: video_count(client, IdempotencyKey) == 0 and video_count(client, TelegramUpdate) == 1,
                   what=lambda: f"{video_count(client, IdempotencyKey)} keys and "
                                f"{video_count(client, TelegramUpdate)} deliveries left")


def test_a_chore_that_fails_is_logged_and_the_next_still_runs_in_batches(db_url: str, caplog) -> None:
    with migrated_store(db_url) as store:
        for update_id in range(7):
            store.record_update(update_id)
    age(db_url, hours=49)
    # A runtime without its lifespan: no hourly loop of its own to race this one.
    service = Runtime.build(Settings(database_url=db_url))

    async def unreachable() -> int:
        raise StorageUnavailable("database unavailable")

    async def scenario() -> None:
        await service.store.open()
        try:
            await forget_once(service, [Chore("the first", unreachable),
                                        Chore("old deliveries", lambda: service.store.forget_updates(UPDATE_MEMORY, 3), 3)])
        finally:
            await service.store.close()

    with caplog.at_level(logging.INFO, logger="claimfirst.housekeeping"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.name == "claimfirst.housekeeping"] == [
        "forgetting the first failed after 0 rows: database unavailable", "forgot 7 old deliveries"]
    assert count(db_url, TelegramUpdate) == 0


def test_with_postgresql_stopped_each_chore_is_logged_and_nothing_raises(caplog) -> None:
    """The hourly loop must outlive an outage: a stopped server fails each chore within the
    request bound, as a warning, and the loop goes on to its next hour."""
    with own_postgres() as pg:
        with migrated_store(pg.url):
            pass
        service = Runtime.build(Settings(database_url=pg.url, request_timeout_seconds=1))
        pg.stop()

        async def scenario() -> None:
            await service.store.open()
            try:
                await forget_once(service, [
                    Chore("old keys", lambda: service.store.forget_keys(timedelta(hours=24))),
                    Chore("old deliveries", lambda: service.store.forget_updates(UPDATE_MEMORY, 3), 3)])
            finally:
                await service.store.close()

        with caplog.at_level(logging.WARNING, logger="claimfirst.housekeeping"):
            asyncio.run(asyncio.wait_for(scenario(), 30))  # a hang fails here, not the suite
        pg.start()  # own_postgres stops it again
    warnings = [r.getMessage() for r in caplog.records if r.name == "claimfirst.housekeeping"]
    assert [w.split(":")[0] for w in warnings] == ["forgetting old keys failed after 0 rows",
                                                  "forgetting old deliveries failed after 0 rows"], warnings
    assert all("database unavailable" in w for w in warnings), warnings

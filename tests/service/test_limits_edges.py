"""Each way to reach the claim answers a limit as the others do: the embeddable API and the
Python client raise `LimitReached` (a `Throttled`), the Telegram bot says it in words, OpenAPI
documents the 429s, and a setting that can never fit is refused at start.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from service import ClaimFirst, DuplicateRequest, LimitReached, Settings, Throttled, create_app
from service.client import Client
from service.runtime import limits_of
from tests.service.live import live_service
from tests.service.telegram_app import bot_app, deliver, rows
from tests.stand_ins.telegram import StandInTelegram, message_update


def test_the_embeddable_api_raises_the_limit_and_still_the_duplicate(db_url: str) -> None:
    async def scenario() -> None:
        async with ClaimFirst(Settings(database_url=db_url, sim_seconds="30", user_daily_limit=1)) as cf:
            first = await cf.create(42, "A cat surfing")
            with pytest.raises(LimitReached) as refused:
                await cf.create(42, "A dog surfing")
            assert refused.value.limit == "user_daily" and refused.value.retry_after > 23 * 3600
            with pytest.raises(DuplicateRequest) as dup:  # over the limit, still the duplicate
                await cf.create(42, "a CAT surfing!")
            assert dup.value.existing.id == first.video_id

    asyncio.run(scenario())


def test_the_client_raises_the_limit_with_its_retry_after(sqlite_url: str, tmp_path) -> None:
    with live_service(sqlite_url, tmp_path, sim_seconds="30", user_concurrent_limit=1) as service, \
            Client(service.url) as client:
        client.create(7, "a harbour at dawn")
        with pytest.raises(LimitReached) as refused:
            client.create(7, "a harbour at dusk")
        error = refused.value
        assert isinstance(error, Throttled) and error.status_code == 429
        assert error.limit == "user_concurrent" and error.problem == "/problems/user-concurrent-limit"
        assert 1 <= error.retry_after <= 30  # a simulated generation takes 30 s here


def test_the_bot_says_which_limit_in_words_and_claims_nothing(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram, sim_seconds="30", user_daily_limit=1) as client:
        deliver(client, message_update("/create one"))
        deliver(client, message_update("/create two"))
        client.portal.call(client.app.state.telegram.drain)
        started, limited = telegram.sent("sendMessage")
        assert limited["text"] == ("You have asked for as many new videos as allowed in 24 hours. Nothing was "
                                   "started; you can ask again in about 24 hours.")
        assert [v["prompt"] for v in rows(client)[0]] == ["one"]


def test_openapi_documents_the_429s(sqlite_url: str) -> None:
    too_many = create_app(Settings(database_url=sqlite_url)).openapi()["paths"]["/create"]["post"]["responses"]["429"]
    assert "Retry-After" in too_many["headers"]
    problem = too_many["content"]["application/problem+json"]["schema"]
    assert {"type", "limit", "retry_after"} <= set(problem["properties"])
    for kind in ("/problems/user-daily-limit", "/problems/user-concurrent-limit", "/problems/daily-budget"):
        assert kind in too_many["description"]


def test_limits_are_off_unless_set_and_a_budget_below_one_video_is_refused() -> None:
    assert limits_of(Settings()) is None
    limits = limits_of(Settings(user_daily_limit=5, daily_budget_usd=100, cost_per_video_usd=4))
    assert limits is not None and (limits.user_daily, limits.user_concurrent, str(limits.budget_usd),
                                   str(limits.reserve_usd)) == (5, None, "100.0", "4.0")
    with pytest.raises(ValidationError, match="below CLAIMFIRST_COST_PER_VIDEO_USD"):
        Settings(daily_budget_usd=3, cost_per_video_usd=4)
    with pytest.raises(ValidationError):
        Settings(user_daily_limit=0)

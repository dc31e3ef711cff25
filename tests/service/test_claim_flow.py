"""`claim_video`'s retry when the key changes hands between the lost claim and the read.

That window is narrower than one statement on a real database and cannot be hit on purpose,
so the flow is driven here through the `ClaimStore` protocol with a scripted store.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from service import ClaimContention
from service.claim import (
    FAILED, MAX_CLAIM_RETRIES, ClaimRule, ClaimState, ClaimTicket, Holder, NewVideo, claim_video,
)

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))
REQUEST = NewVideo(1, "p", "p")
NOW = datetime(2025, 10, 15, 5, 32, 11, tzinfo=UTC)


class FlappingStore:
    """Loses every claim, yet shows a holder that no longer blocks (it failed meanwhile);
    every other time the claim's own statement could not see the holder at all."""

    def __init__(self, win_on_try: int | None = None) -> None:
        self.win_on_try, self.tries, self.reads = win_on_try, 0, 0

    async def claim(self, request, rule, deadline=None):  # type: ignore[no-untyped-def]
        self.tries += 1
        if self.tries == self.win_on_try:
            return ClaimTicket(99, request.tg_user_id, request.prompt_key, self.tries, NOW)
        return None if self.tries % 2 else self._freed()

    async def holder(self, request, rule):  # type: ignore[no-untyped-def]
        self.reads += 1
        return self._freed()

    def _freed(self) -> Holder:
        return Holder(ClaimState(FAILED, self.tries, NOW, None), video=None, blocks=False)  # type: ignore[arg-type]


def test_a_holder_that_freed_up_is_claimed_on_the_next_try() -> None:
    store = FlappingStore(win_on_try=2)
    assert asyncio.run(claim_video(store, RULE, REQUEST)).video_id == 99
    assert (store.tries, store.reads) == (2, 1)  # the first loss saw no holder and read it once


def test_a_key_that_keeps_flapping_gives_up_after_the_retry_budget() -> None:
    store = FlappingStore()
    with pytest.raises(ClaimContention):
        asyncio.run(claim_video(store, RULE, REQUEST))
    assert store.tries == 1 + MAX_CLAIM_RETRIES

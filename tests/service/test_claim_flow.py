"""`claim_video`'s retry when the key changes hands between the lost claim and the read.

That window is two statements wide on a real database and cannot be hit on purpose, so the
flow is driven here through the `ClaimStore` protocol with a scripted store.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.claim import FAILED, MAX_CLAIM_RETRIES, ClaimRule, ClaimState, ClaimTicket, Holder, NewVideo, claim_video
from service.errors import ClaimContention
from tests.service.clock import ManualClock

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))
REQUEST = NewVideo(1, "p", "p")


class FlappingStore:
    """Loses every claim, yet shows a holder that no longer blocks (it failed meanwhile)."""

    def __init__(self, clock: ManualClock, win_on_try: int | None = None) -> None:
        self.clock, self.win_on_try, self.tries = clock, win_on_try, 0

    def try_claim(self, request, *, now, rule):  # type: ignore[no-untyped-def]
        self.tries += 1
        if self.tries == self.win_on_try:
            return ClaimTicket(99, request.tg_user_id, request.prompt_key, self.tries, now)
        return None

    def holder(self, tg_user_id, prompt_key):  # type: ignore[no-untyped-def]
        return Holder(ClaimState(FAILED, self.tries, self.clock.now, None), video=None)


def test_a_holder_that_freed_up_is_claimed_on_the_next_try() -> None:
    store = FlappingStore(ManualClock(), win_on_try=2)
    assert claim_video(store, RULE, REQUEST, store.clock).video_id == 99
    assert store.tries == 2


def test_a_key_that_keeps_flapping_gives_up_after_the_retry_budget() -> None:
    store = FlappingStore(ManualClock())
    with pytest.raises(ClaimContention):
        claim_video(store, RULE, REQUEST, store.clock)
    assert store.tries == 1 + MAX_CLAIM_RETRIES

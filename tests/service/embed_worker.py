"""One bot process using `from service import ClaimFirst`: N identical creates at once, then
prints how many were admitted and how many were duplicates (tests/service/test_embed.py)."""

from __future__ import annotations

import asyncio
import json
import sys

from service import ClaimFirst, DuplicateRequest


async def main(count: int) -> None:
    ended = asyncio.Event()

    async def on_outcome(_outcome: object) -> None:
        ended.set()

    async with ClaimFirst.from_env() as cf:
        outcomes = await asyncio.gather(*(cf.create(6891234507, "Smart wallets as digital assistants...",
                                                    on_outcome=on_outcome)
                                          for _ in range(count)), return_exceptions=True)
        admitted = [o.video_id for o in outcomes if not isinstance(o, BaseException)]
        duplicates = [o.existing.id for o in outcomes if isinstance(o, DuplicateRequest)]
        other = [repr(o) for o in outcomes if isinstance(o, BaseException) and not isinstance(o, DuplicateRequest)]
        if admitted:  # leaving would cancel the generation (and fail its video): let it end first
            await asyncio.wait_for(ended.wait(), timeout=60)
        print(json.dumps({"admitted": admitted, "duplicates": duplicates, "other": other}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

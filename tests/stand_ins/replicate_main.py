"""`python -m tests.stand_ins.replicate --port P [--seconds 10] [--state PATH]`: the stand-in
Replicate as a process of its own, for a harness (bench/nemesis.py) that kills and restarts
the services around it while the provider, and its bill, must carry on.

Every prediction runs `--seconds` (then succeeds; every `--fail-every`-th fails instead). While
it runs, `GET /_standin/bill` answers `StandInReplicate.state()`; on SIGTERM or SIGINT the same
state is written to `--state`. The first line on stdout is `{"base_url": …}`.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from tests.stand_ins.replicate import DEFAULT_MODEL, DEFAULT_PRICE_USD, DEFAULT_TOKEN, PAGE_SIZE, Fate, StandInReplicate

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stand_ins.replicate", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long every prediction runs")
    parser.add_argument("--fail-every", type=int, default=0, help="every n-th prediction ends failed (0: none)")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--price", type=float, default=DEFAULT_PRICE_USD)
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE)
    parser.add_argument("--state", type=Path, help="where the state is written on exit (JSON)")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stand_in = StandInReplicate(
        token=args.token, model=args.model, port=args.port, price_usd=args.price, page_size=args.page_size,
        default_fate=Fate(seconds=args.seconds), fail_every=args.fail_every,
    )
    with stand_in:
        print(json.dumps({"base_url": stand_in.base_url}), flush=True)
        # Bounded by the harness, which sends SIGTERM; the wait wakes at once on the signal.
        while not stopping.wait(1.0):
            pass
        state = stand_in.state()
    if args.state is not None:
        args.state.write_text(json.dumps(state, indent=1))
    return 0

"""``python -m audit replay``: read the CSVs, replay, write ``summary.json`` and ``requests.csv``.

Exit 0 when the replay ran; 2 with one line ``audit: error: …`` (a missing or malformed CSV,
a service that cannot be started or reached, a refused API key) and nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from audit.oneline import OneLineParser, non_negative as _non_negative, one_line, positive as _positive
from audit.frames import AuditError, normalise_requests, normalise_videos
from audit.replay.schedule import DEFAULT_MAX_GAP, DEFAULT_SPEEDUP, POLICIES
from audit.sources import files
from audit.words import spreadsheet_safe

if TYPE_CHECKING:
    from audit.replay.run import ReplayResult

__all__ = ["API_KEY_ENV", "read_csv", "write_outputs", "add_arguments", "run", "register", "main"]

# The environment variable --api-key defaults to: a key on the command line shows up in `ps`
# and in shell history, one in the environment does not.
API_KEY_ENV = "CLAIMFIRST_API_KEY"
DESCRIPTION = "Replay a request log against the service: how many generations would each policy have started?"


def read_csv(path: Path, *, kind: str) -> pd.DataFrame:
    """Load a fixture-style CSV (``kind``: ``requests`` or ``videos``) into the canonical frame."""
    normalise = normalise_requests if kind == "requests" else normalise_videos
    return normalise(files.read_csv(path, what=kind), source=str(path))


def write_outputs(result: ReplayResult, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path, requests_path = out_dir / "summary.json", out_dir / "requests.csv"
    summary_path.write_text(json.dumps(result.summary, indent=2) + "\n")
    frame = result.requests.copy()
    frame["received_at"] = frame["received_at"].map(lambda t: t.isoformat())
    spreadsheet_safe(frame.round({"offset_seconds": 6, "sim_seconds": 6, "lag_ms": 3, "response_ms": 3})).to_csv(
        requests_path, index=False
    )
    return summary_path, requests_path


def _max_gap(text: str) -> float | None:
    value = _positive(text)
    return None if value == float("inf") else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=Path, required=True, help="request log CSV (request_id, received_at, …)")
    parser.add_argument("--videos", type=Path, help="videos CSV: gives each request its historical duration")
    parser.add_argument("--policy", required=True, choices=POLICIES,
                        help="admission policy to replay (none/check/pending are for incident replay only)")
    parser.add_argument("--speedup", type=_positive, default=DEFAULT_SPEEDUP,
                        help="divide recorded times and durations by this (default: %(default)g)")
    parser.add_argument("--max-gap", type=_max_gap, default=DEFAULT_MAX_GAP, metavar="SECONDS",
                        help="shorten idle gaps longer than this (replay seconds) to it; bursts, the order "
                        "of requests and saves, and the window keep history's timing (default: %(default)g; "
                        "'inf' replays the original timing)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar on a terminal: one line with the replay's length instead")
    parser.add_argument("--url", help="replay against this running service (started with "
                        "CLAIMFIRST_SIM_HINTS=true and the same policy) instead of starting one")
    parser.add_argument("--api-key", default=None,
                        help=f"with --url: sent as 'Authorization: Bearer <key>' on every request "
                        f"(default: ${API_KEY_ENV})")
    parser.add_argument("--db-latency-ms", type=_non_negative, default=0.0,
                        help="delay per database round trip of the started service, imitating "
                        "Supabase over HTTP (default: %(default)g)")
    parser.add_argument("--seed", type=int, default=0, help="seed for durations drawn without history")
    parser.add_argument("--out", type=Path, required=True, help="directory for summary.json and requests.csv")


def run(args: argparse.Namespace) -> int:
    """The ``replay`` command. Nothing is written unless the replay succeeds."""
    # Here, not at the top: `python -m audit` registers this command for every run, and the
    # replay's HTTP client and progress bar (httpx, rich: 0.08 s) serve this one only.
    from audit.replay.progress import progress_for
    from audit.replay.run import replay

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    if args.api_key is not None and args.url is None:
        print("audit: error: --api-key goes with --url (the service replay starts needs no key)", file=sys.stderr)
        return 2
    try:
        requests = read_csv(args.requests, kind="requests")
        videos = read_csv(args.videos, kind="videos") if args.videos else None
        result = replay(requests, videos, policy=args.policy, speedup=args.speedup, url=args.url,
                        db_latency_ms=args.db_latency_ms, seed=args.seed,
                        api_key=api_key if args.url is not None else None,
                        max_gap=args.max_gap, progress=progress_for(not args.no_progress))
        summary_path, requests_path = write_outputs(result, args.out)
    except (AuditError, OSError) as exc:
        print(f"audit: error: {one_line(exc)}", file=sys.stderr)
        return 2
    s = result.summary
    print(f"replay {s['policy']}: {s['requests']} requests, {s['generations_started']} generations started, "
          f"{s['duplicates_blocked']} blocked, {s['duplicates_generated']} duplicates generated; "
          f"send lag p50 {s['send_lag_p50_ms']:.1f} ms, p99 {s['send_lag_p99_ms']:.1f} ms")
    print(f"wrote {summary_path} and {requests_path}")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand to ``python -m audit``."""
    parser = subparsers.add_parser(
        "replay", help="replay a request log against the service under a policy", description=DESCRIPTION
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="audit replay", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))

"""``python -m audit reconcile``: the service's attempts against the provider's bill.

Exit codes, as the sweep's: 0 the books and the bill agree; 1 a finding (a leak, an unknown
job, a double payment or a cost mismatch); 2 it could not run (a missing file or column, no
token, a refused token, an unreachable API), one line ``audit: error: …``; 3 a bug
(``reconcile.json`` is written before ``reconcile.html``, and the line says so).
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from audit.cli_args import InternalError, _add_period, _one_line, _out, _period
from audit.frames import AuditError
from audit.oneline import non_negative as _non_negative
from audit.pipeline import DEFAULT_COST_PER_VIDEO
from audit.sources.replicate import DEFAULT_BASE_URL

__all__ = ["register"]


def _base_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("reconcile", help="the service's attempts against the provider's bill (Replicate)")
    books = parser.add_mutually_exclusive_group(required=True)
    books.add_argument("--videos", type=Path, help="the service's videos (with provider_job_id, cost_usd): CSV or Parquet")
    books.add_argument("--database-url", help="SQLAlchemy URL of the service's database")
    parser.add_argument("--predictions", type=Path,
                        help="an export of Replicate's predictions list (JSON or CSV); without it the list is "
                             "read from the API with REPLICATE_API_TOKEN")
    parser.add_argument("--replicate-base-url", type=_base_url, default=DEFAULT_BASE_URL,
                        help=f"where the predictions API is (default {DEFAULT_BASE_URL})")
    _add_period(parser)
    parser.add_argument("--cost-per-video", type=_non_negative, default=DEFAULT_COST_PER_VIDEO,
                        help="USD billed per prediction that started (default 4)")
    parser.add_argument("--price-per-second", type=_non_negative, default=None,
                        help="bill each prediction its metrics.predict_time times this (models billed by time)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default ./reports)")
    parser.set_defaults(handler=_reconcile)


def _predictions(args: argparse.Namespace, since):
    from audit.sources.replicate import fetch_predictions, predictions_frame, read_predictions_file

    if args.predictions is not None:
        return predictions_frame(read_predictions_file(args.predictions), source=str(args.predictions)), str(args.predictions)
    token = os.environ.get("REPLICATE_API_TOKEN", "").strip()
    if not token:
        raise AuditError("REPLICATE_API_TOKEN is not set: give the token, or an export with --predictions FILE")
    records = fetch_predictions(args.replicate_base_url, token, since=since)
    return predictions_frame(records, source="Replicate's predictions list"), f"{args.replicate_base_url}/predictions"


def _reconcile(args: argparse.Namespace) -> int:
    from audit.reconcile import Pricing, reconcile
    from audit.reconcile_page import reconcile_text, write_reconcile_data, write_reconcile_page
    from audit.sources.attempts import load_attempts_database, load_attempts_file

    # Files hold what they hold; a database or the API is read for the last week by default.
    period = _period(args, is_database=args.database_url is not None or args.predictions is None)
    if args.videos is not None:
        attempts, books = load_attempts_file(args.videos, period=period), str(args.videos)
    else:
        from audit.sources.database import redacted_url

        attempts, books = load_attempts_database(args.database_url, period=period), f"database {redacted_url(args.database_url)}"
    predictions, bill = _predictions(args, period.load_from)
    pricing = Pricing(cost_per_video=args.cost_per_video, price_per_second=args.price_per_second)
    result = reconcile(attempts, predictions, since=period.since, until=period.until,
                       window=timedelta(hours=args.window_hours), pricing=pricing)
    source = f"{books} against {bill}"
    try:
        data = write_reconcile_data(result, args.out, source=source)
    except OSError as exc:
        raise AuditError(f"cannot write reports to {args.out}: {exc.strerror or exc}") from exc
    _out(reconcile_text(result))
    try:
        page = write_reconcile_page(result, args.out, source=source)
    except Exception as exc:
        raise InternalError(f"reconcile.html not written ({_one_line(exc)}); {data} was written") from exc
    _out(f"Wrote {data}, {page}.")
    return 1 if result.findings else 0

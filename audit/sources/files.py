"""CSV files: ``videos.csv`` (required) and the bot's request log ``requests.csv`` (optional)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audit.frames import normalise_requests, normalise_videos
from audit.sources.base import Loaded, Period, SourceError, in_period

__all__ = ["load_files", "read_csv"]


def read_csv(path: str | Path, *, what: str) -> pd.DataFrame:
    """Read a CSV as strings (types are the canonical frame's job), or raise `SourceError`."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{what} file not found: {path}")
    try:
        # Only an empty cell is missing: pandas' default NA words ("None", "NA", "null", "nan",
        # …) are ordinary prompts a user may type, and must stay text.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"{what} file {path} is not a readable CSV: {exc}") from exc


def load_files(videos_path: str | Path, requests_path: str | Path | None = None, *, period: Period | None = None) -> Loaded:
    """Load the CSVs; with a ``period``, keep its videos, their look-back and every
    ``generating`` row (files default to everything)."""
    videos = normalise_videos(read_csv(videos_path, what="videos"), source=str(videos_path))
    requests = None
    if requests_path is not None:
        requests = normalise_requests(read_csv(requests_path, what="requests"), source=str(requests_path))
    if period is not None:
        # Stuck claims are current state: generating rows stay whatever the period, as in
        # every source.
        keep = in_period(videos["created_at"], period.load_from, period.until) | (videos["status"] == "generating")
        videos = videos.loc[keep].reset_index(drop=True)
    description = f"{videos_path}" + (f" + {requests_path}" if requests_path else " (no request log)")
    return Loaded(videos=videos, requests=requests, description=description)

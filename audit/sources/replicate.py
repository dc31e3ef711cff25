"""The provider's record of jobs: Replicate's predictions list, from the API or an exported file.

``GET {base}/predictions`` answers one page, newest first::

    {"previous": null, "next": "https://api.replicate.com/v1/predictions?cursor=cD0y…",
     "results": [{"id": "gm3qorzdhgbfurvjtvhg6dckhu", "created_at": "2023-09-08T16:19:34.907244Z",
                  "status": "succeeded", "metrics": {"predict_time": 0.012683},
                  "input": {...}, "model": "replicate/hello-world", "source": "api", ...}, ...]}

`fetch_predictions` follows ``next`` page by page and stops at the first page whose oldest
prediction is older than ``since`` (the list is newest first, so every later page is older
still). Only the ``cursor`` of ``next`` is used, against the base URL we were given: the
bearer token is never sent to a host named by a response.

Each request is retried on what certainly did no harm (a read-only GET): a connection error
or timeout, 429 (after its ``Retry-After``, capped) and 5xx, up to `MAX_TRIES` tries with
backoff. A 401 is the token: one clear line, no retry. Pages are bounded (`MAX_PAGES`) and so
is the whole walk (`DEADLINE_SECONDS`).

`read_predictions_file` reads an export of the same list: JSON (an array of predictions, or a
page ``{"results": […]}`` as saved from the API) or CSV (``id, created_at``, and any of
``status``, ``predict_time`` or ``metrics.predict_time``, ``cost``, ``prompt`` or
``input.prompt``, ``model``). `predictions_frame` turns either into the canonical frame.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

from audit.frames import SchemaError, _utc
from audit.sources.base import SourceError
from audit.sources.files import read_csv

if TYPE_CHECKING:
    import httpx  # imported where a request is made: the CLI imports this module for its default URL

__all__ = ["PREDICTION_COLUMNS", "DEFAULT_BASE_URL", "fetch_predictions", "read_predictions_file", "predictions_frame"]

DEFAULT_BASE_URL = "https://api.replicate.com/v1"
PREDICTION_COLUMNS = ["job_id", "created_at", "status", "predict_time", "cost_usd", "prompt", "model"]
# 100 predictions a page (Replicate's page size): 10,000 pages is a million jobs, more than
# any week of this bot; a walk that needs more is a loop, not a bill.
MAX_PAGES = 10_000
DEADLINE_SECONDS = 900.0
MAX_TRIES = 5
RETRY_AFTER_CAP = 30.0
_RETRIED_STATUSES = {429, 500, 502, 503, 504}


def _problem(response: httpx.Response) -> str:
    """Replicate's own words for a refusal: ``title: detail`` of its problem JSON, else the text."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return " ".join(str(body).split())[:200]


def _wait(response: httpx.Response | None, attempt: int) -> float:
    if response is not None and response.status_code == 429:
        try:
            return min(float(response.headers.get("retry-after", "1")), RETRY_AFTER_CAP)
        except ValueError:
            return 1.0
    return min(0.5 * 2**attempt, 8.0)


def _get_page(
    client: httpx.Client, url: str, params: dict, *, deadline: float, sleep: Callable[[float], None]
) -> dict:
    import httpx

    response: httpx.Response | None = None
    for attempt in range(MAX_TRIES):
        error = ""
        try:
            response = client.get(url, params=params)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            response, error = None, f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no answer'}"
        if response is not None:
            if response.status_code == 401:
                raise SourceError(
                    f"Replicate refused the token (401 {_problem(response)}): check REPLICATE_API_TOKEN"
                )
            if response.status_code == 200:
                try:
                    page = response.json()
                except ValueError as exc:
                    raise SourceError(f"Replicate's predictions list is not JSON: {exc}") from exc
                if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                    raise SourceError("Replicate's predictions list has no 'results' list")
                return page
            if response.status_code not in _RETRIED_STATUSES:
                raise SourceError(f"Replicate answered {response.status_code} to GET {url}: {_problem(response)}")
            error = f"{response.status_code} {_problem(response)}"
        pause = _wait(response, attempt)
        if attempt == MAX_TRIES - 1 or time.monotonic() + pause > deadline:
            break
        sleep(pause)
    raise SourceError(f"cannot read Replicate's predictions list at {url} after {attempt + 1} tries: {error}")


def _cursor(next_url: str) -> str | None:
    values = parse_qs(urlsplit(next_url).query).get("cursor")
    return values[0] if values else None


def fetch_predictions(
    base_url: str,
    token: str,
    *,
    since: datetime | None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_pages: int = MAX_PAGES,
) -> list[dict[str, Any]]:
    """Every prediction from the newest back to the first page older than ``since`` (all of
    them when None), as Replicate's dicts. Raises `SourceError` with one line."""
    import httpx

    own = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0))
    url = base_url.rstrip("/") + "/predictions"
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + DEADLINE_SECONDS
    cutoff = None if since is None else pd.Timestamp(since)
    results: list[dict[str, Any]] = []
    params: dict[str, str] = {}
    try:
        client.headers.update(headers)
        for _ in range(max_pages):
            page = _get_page(client, url, params, deadline=deadline, sleep=sleep)
            results.extend(page["results"])
            oldest = [r.get("created_at") for r in page["results"] if r.get("created_at")]
            if cutoff is not None and oldest and pd.Timestamp(min(oldest)) < cutoff:
                return results
            cursor = _cursor(page["next"]) if page.get("next") else None
            if cursor is None:
                return results
            if time.monotonic() > deadline:
                raise SourceError(f"Replicate's predictions list: still paging after {DEADLINE_SECONDS:g} s")
            params = {"cursor": cursor}
        raise SourceError(f"Replicate's predictions list: more than {max_pages} pages; narrow it with --since")
    finally:
        if own:
            client.close()


def read_predictions_file(path: str | Path) -> list[dict[str, Any]] | pd.DataFrame:
    """An export of the list: JSON records, or a CSV as a frame of text columns."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return read_csv(path, what="predictions")
    if not path.is_file():
        raise SourceError(f"predictions file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"predictions file {path} is not JSON: {' '.join(str(exc).split())}") from exc
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise SourceError(f"predictions file {path}: expected a list of predictions or a page with 'results'")
    return data


def _flat(records: list[dict[str, Any]]) -> pd.DataFrame:
    def get(record: dict, *path: str) -> Any:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return pd.DataFrame(
        {
            "id": [r.get("id") for r in records],
            "created_at": [r.get("created_at") for r in records],
            "status": [r.get("status") for r in records],
            "predict_time": [get(r, "metrics", "predict_time") for r in records],
            "cost": [r.get("cost") for r in records],
            "prompt": [get(r, "input", "prompt") for r in records],
            "model": [r.get("model") for r in records],
        },
        dtype=object,
    )


def _first(frame: pd.DataFrame, *names: str) -> pd.Series:
    for name in names:
        if name in frame.columns:
            return frame[name]
    return pd.Series(None, index=frame.index, dtype=object)


def _numbers(values: pd.Series, column: str, source: str) -> np.ndarray:
    try:
        return pd.to_numeric(values.astype(object).where(values.notna(), None), errors="raise").astype(float).to_numpy()
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"{source}: {column} must hold numbers: {exc}") from exc


def predictions_frame(records: list[dict[str, Any]] | pd.DataFrame, *, source: str = "predictions") -> pd.DataFrame:
    """The canonical frame `PREDICTION_COLUMNS`, oldest first; `SchemaError` on bad values."""
    raw = _flat(records) if isinstance(records, list) else records
    if "id" not in raw.columns or "created_at" not in raw.columns:
        raise SchemaError(f"{source}: missing column(s) id, created_at (have: {', '.join(map(str, raw.columns))})")
    ids = raw["id"]
    if ids.isna().any():
        raise SchemaError(f"{source}: a prediction has no id")
    ids = ids.astype(str)
    if ids.duplicated().any():
        raise SchemaError(f"{source}: prediction {ids[ids.duplicated()].iloc[0]} is listed twice")
    created = _utc(raw["created_at"].astype(object).where(raw["created_at"].notna(), None), "created_at", source)
    if created.isna().any():
        raise SchemaError(f"{source}: a prediction has no created_at")
    frame = pd.DataFrame(
        {
            "job_id": ids.to_numpy(dtype=object),
            "created_at": created.array,
            "status": _first(raw, "status").astype(object).where(_first(raw, "status").notna(), "unknown").to_numpy(),
            "predict_time": _numbers(_first(raw, "predict_time", "metrics.predict_time"), "predict_time", source),
            "cost_usd": _numbers(_first(raw, "cost", "cost_usd"), "cost", source),
            "prompt": _first(raw, "prompt", "input.prompt").astype(object).to_numpy(),
            "model": _first(raw, "model").astype(object).to_numpy(),
        }
    )
    return frame.sort_values(["created_at", "job_id"], kind="stable").reset_index(drop=True)

"""Replay a request log against the service: how many generations would each policy have started?

`replay` sends each request's ``POST /create`` at its recorded time after the first, divided
by the speedup, with its historical generation time and outcome as simulation hints
(`audit.replay.schedule`). Without a URL it starts the reference service itself
(`audit.replay.service`) under the policy asked for, waits until every generation has
finished, and reads the service's own counters. The CLI (``python -m audit replay``,
`audit.replay.cli`) and the notebooks both call it.

What the summary's numbers mean:

- ``generations_started``: from the service's ``/stats`` when the replay started the service
  (``generations_source: "service_stats"``); against a service given by URL, which other
  clients may share, the number of 202 answers (``"accepted_responses"``).
- ``duplicates_blocked``: 409 answers.
- ``duplicates_generated``: accepted requests that the audit's rule (`audit.detect`) calls
  duplicates, applied to the accepted requests in send order: an accepted request is one when
  an earlier accepted request of the same user and prompt key, within the window, did not
  fail. Under ``claim`` it must be 0.
- ``send_lag_*_ms``: how late each request left versus its schedule (client side).
- ``max_gap_seconds``, ``schedule_seconds``, ``window_seconds``: idle gaps longer than the first
  were skipped (`audit.replay.compress`), the schedule lasts the second, and the started
  service ran the third as its duplicate window (replay seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

from audit.detect import DEFAULT_WINDOW, mark_duplicates
from audit.frames import AuditError, normalise_videos
from audit.replay.client import run_sync, send_schedule
from audit.replay.progress import ReplayProgress
from audit.replay.schedule import DEFAULT_DURATION_RANGE, DEFAULT_SPEEDUP, POLICIES, build_schedule
from audit.replay.service import ServiceConfig, ServiceUnavailable, check_service, started_service

__all__ = ["POLICIES", "REQUEST_COLUMNS_OUT", "ReplayResult", "replay"]

REQUEST_COLUMNS_OUT = [
    "request_id", "received_at", "tg_user_id", "prompt", "prompt_key", "video_id", "offset_seconds", "duration_source",
    "duration_seconds", "sim_seconds", "sim_fail", "status_code", "outcome", "replay_video_id", "lag_ms", "response_ms", "error",
]


@dataclass
class ReplayResult:
    """``requests``: one row per request (schedule + outcome); ``summary``: what summary.json holds."""

    requests: pd.DataFrame
    summary: dict[str, Any]

    def windows(self) -> pd.DataFrame:
        """The race windows this replay reconstructs, in the history's time: each accepted
        request's generation from its recorded request time to request time + its duration in
        history's clock (a skipped idle gap shortens only the replayed one). Blocked requests
        keep a row with no ``saved_at``: nothing was generated."""
        out = self.requests[["request_id", "video_id", "tg_user_id", "received_at", "outcome", "sim_fail"]]
        out = out.rename(columns={"video_id": "history_video_id", "received_at": "requested_at"})
        seconds = pd.to_timedelta(self.requests["duration_seconds"], unit="s").dt.round("1s")
        saved_at = out["requested_at"] + seconds
        out = out.assign(saved_at=saved_at.where(self.requests["outcome"] == "accepted"))
        return out.reset_index(drop=True)


def replay(
    requests: pd.DataFrame,
    videos: pd.DataFrame | None = None,
    *,
    policy: str,
    speedup: float = DEFAULT_SPEEDUP,
    url: str | None = None,
    db_latency_ms: float = 0.0,
    seed: int = 0,
    duration_range: tuple[float, float] = DEFAULT_DURATION_RANGE,
    window: timedelta = DEFAULT_WINDOW,
    api_key: str | None = None,
    max_gap: float | None = None,
    progress: ReplayProgress | None = None,
) -> ReplayResult:
    """Replay canonical ``requests`` (with ``videos`` for durations) under ``policy``.

    With ``url``, the service there must run ``policy`` with ``CLAIMFIRST_SIM_HINTS=true``
    (``db_latency_ms`` is then the service's business, not ours) and ``api_key``, when given,
    is sent to it as ``Authorization: Bearer <key>`` on every request. The service replay
    starts itself listens on loopback only and needs no key. ``max_gap`` (replay seconds)
    skips idle time; a service given by URL runs its own window, so there only gaps that
    leave ``window / speedup`` faithful are shortened. ``progress`` is told the schedule and
    each send. Raises `AuditError`
    (`ServiceUnavailable` when the service cannot be started or reached).
    """
    if policy not in POLICIES:
        raise AuditError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if db_latency_ms < 0:
        raise AuditError("--db-latency-ms must be 0 or more")
    if url is not None and db_latency_ms:
        raise AuditError("--db-latency-ms applies to the service replay starts; a service given by --url "
                         "takes its own CLAIMFIRST_DB_LATENCY_MS")
    if requests.empty:
        raise AuditError("the request log is empty: nothing to replay")
    try:
        schedule = build_schedule(requests, videos, speedup=speedup, duration_range=duration_range, seed=seed,
                                  max_gap=max_gap, window=window, fixed_window=url is not None)
    except ValueError as exc:
        raise AuditError(str(exc)) from exc
    last_finish = float((schedule["offset_seconds"] + schedule["sim_seconds"]).max())
    progress = progress or ReplayProgress()

    if url is None:
        config = ServiceConfig(
            policy=policy,
            db_latency_ms=db_latency_ms,
            duplicate_window_hours=schedule.attrs["window_seconds"] / 3600,
            # Longer than the longest replayed generation, so no lease runs out during a
            # replay even if heartbeats stall behind a queue of slow statements.
            lease_seconds=max(30.0, 2 * float(schedule["sim_seconds"].max())),
            timeout_seconds=max(600.0, 2 * float(schedule["sim_seconds"].max())),
            max_concurrent=max(4, len(schedule)),
            seed=seed,
        )
        with started_service(config) as started_url:
            outcomes, stats = _send(started_url, schedule, last_finish, progress, max_gap)
        source = "service_stats"
    else:
        url = url.rstrip("/")
        check_service(url, policy, api_key=api_key)
        outcomes, stats = _send(url, schedule, last_finish, progress, max_gap, api_key=api_key)
        source = "accepted_responses"

    # Outcomes come back in schedule order (one task per row, gathered in order); joining by
    # position keeps a log with repeated request ids intact.
    answers = pd.DataFrame(outcomes, index=schedule.index).drop(columns="request_id")
    frame = pd.concat([schedule, answers], axis=1)[REQUEST_COLUMNS_OUT]
    summary = _summarise(frame, stats, source, window=window)
    summary.update(
        policy=policy, speedup=speedup, db_latency_ms=db_latency_ms if url is None else None, seed=seed,
        duration_range_seconds=list(duration_range),
        durations_from_history=int((frame["duration_source"] == "history").sum()),
        durations_drawn=int((frame["duration_source"] == "drawn").sum()),
        service="started" if url is None else url,
        max_gap_seconds=max_gap, schedule_seconds=round(last_finish, 3),
        window_seconds=round(float(schedule.attrs["window_seconds"]), 3),
    )
    return ReplayResult(frame, _ordered(summary))


def _send(url: str, schedule: pd.DataFrame, last_finish: float, progress: ReplayProgress,
          max_gap: float | None, *, api_key: str | None = None) -> tuple[list[dict], dict]:
    progress.begin(len(schedule), last_finish, max_gap)
    try:
        return run_sync(send_schedule(url, schedule, last_finish, api_key=api_key, progress=progress.sent))
    finally:
        progress.end()


def _summarise(frame: pd.DataFrame, stats: dict[str, Any], source: str, *, window: timedelta) -> dict[str, Any]:
    accepted = frame[frame["outcome"] == "accepted"]
    lag = frame["lag_ms"].astype(float)
    summary: dict[str, Any] = {
        "requests": len(frame),
        "accepted": len(accepted),
        "duplicates_blocked": int((frame["outcome"] == "blocked").sum()),
        "errors": int((frame["outcome"] == "error").sum()),
        "generations_started": int(stats["generations_started"]) if source == "service_stats" else len(accepted),
        "generations_source": source,
        "duplicates_generated": _duplicates_generated(accepted, window=window),
        "distinct_prompts": int(frame[["tg_user_id", "prompt_key"]].drop_duplicates().shape[0]),
        "send_lag_p50_ms": round(float(lag.quantile(0.5)), 3),
        "send_lag_p99_ms": round(float(lag.quantile(0.99)), 3),
        "send_lag_max_ms": round(float(lag.max()), 3),
    }
    if source == "service_stats":
        summary.update(ready=int(stats["ready"]), failed=int(stats["failed"]), lost=int(stats["lost"]))
    return summary


def _duplicates_generated(accepted: pd.DataFrame, *, window: timedelta) -> int:
    """The audit's duplicate rule over the accepted requests, request time standing for save time."""
    if accepted.empty:
        return 0
    as_videos = pd.DataFrame({
        "id": range(1, len(accepted) + 1),
        "tg_user_id": accepted["tg_user_id"].to_numpy(),
        "prompt": accepted["prompt"].to_numpy(),
        "status": ["failed" if fail else "ready" for fail in accepted["sim_fail"]],
        "created_at": accepted["received_at"].to_numpy(),
    })
    return int(mark_duplicates(normalise_videos(as_videos, source="replay"), window=window)["is_duplicate"].sum())


_SUMMARY_ORDER = ["policy", "requests", "accepted", "generations_started", "generations_source",
                  "duplicates_blocked", "duplicates_generated"]


def _ordered(summary: dict[str, Any]) -> dict[str, Any]:
    return {**{k: summary[k] for k in _SUMMARY_ORDER}, **{k: v for k, v in summary.items() if k not in _SUMMARY_ORDER}}

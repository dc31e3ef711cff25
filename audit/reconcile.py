"""The books against the provider's bill: every job Replicate billed against every attempt the
service recorded, joined on the prediction id (``videos.provider_job_id``).

Four findings, each with the job ids behind it, in dollars and counts, by UTC day:

- **leaks**: predictions billed that no attempt knows. Money spent with no row to show for
  it: a worker that died between creating the job and recording its id, a create that timed
  out after the provider accepted it, a script or a second deployment using the same token.
  A prediction that cost nothing (``aborted``: it never started) is not a leak.
- **unknown jobs**: attempts whose job the provider does not list. A job id from another
  account or token, or a corrupted id: the books claim money the bill does not show.
- **double payments**: jobs billed for a (user, prompt key) that an earlier job, at most the
  window before it, had already paid for. The duplicate rule of `audit.detect`, applied to
  billed jobs (keyed from their attempt, with `service.prompt_key`) instead of videos: an
  earlier job that ``failed``, was ``canceled`` or ``aborted`` delivered nothing, so the job
  after it is a retry, not a double (as a failed video is never an original). Several
  attempts sharing one job (a takeover that adopted it) are one payment.
- **cost mismatches**: jobs on both sides whose recorded cost (the sum over the attempts that
  name it) is not what was billed: a failed generation recorded at $0, an adopted job
  recorded by both attempts.

**What a prediction was billed** (`Pricing`), first that applies:

1. a ``cost`` the export gives per prediction (the provider's own figure);
2. with ``price_per_second``: ``metrics.predict_time`` × that price, for every status
   (models billed by time charge failed and canceled runs for the time they ran);
3. else ``cost_per_video`` (the sweep's ``--cost-per-video``, the service's
   ``CLAIMFIRST_COST_PER_VIDEO_USD``) for every prediction that started: ``succeeded``,
   ``failed``, ``canceled``, and those still ``starting``/``processing`` (money being spent).
   ``aborted`` (never started) costs nothing, as Replicate documents. The service records the
   same price on failed and cancelled generations, so the two sides compare like with like;
   a model billed per output that does not charge failures shows them as cost mismatches.

Scope: predictions and attempts *created* in ``[since, until]`` are judged; the inputs should
reach one window further back so a double's earlier payment, and an attempt's job, are found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from audit.detect import DEFAULT_WINDOW, mark_duplicates
from audit.sources.base import in_period
from audit.words import iso_utc

__all__ = ["Pricing", "Reconciliation", "NOT_BILLED", "DELIVERED_NOTHING", "billed_usd", "reconcile"]

# Replicate's prediction lifecycle: "aborted" never started and is not charged.
NOT_BILLED = frozenset({"aborted"})
# Ended without a video: the job after it for the same key is a retry, not a double payment.
DELIVERED_NOTHING = frozenset({"failed", "canceled", "aborted"})
# Half a cent: costs are stored to the cent (Numeric(10, 2)).
_CENT = 0.005


@dataclass(frozen=True)
class Pricing:
    cost_per_video: float = 4.0
    price_per_second: float | None = None

    def describe(self) -> str:
        if self.price_per_second is not None:
            return f"metrics.predict_time × ${self.price_per_second:g}/s (a per-job cost in the export wins)"
        return f"${self.cost_per_video:g} per prediction that started (a per-job cost in the export wins)"


@dataclass
class Reconciliation:
    jobs: pd.DataFrame  # every prediction with its attempts (video_ids), billed and recorded USD
    leaks: pd.DataFrame
    unknown: pd.DataFrame
    doubles: pd.DataFrame
    mismatches: pd.DataFrame
    by_day: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def findings(self) -> int:
        return len(self.leaks) + len(self.unknown) + len(self.doubles) + len(self.mismatches)


def billed_usd(predictions: pd.DataFrame, pricing: Pricing) -> np.ndarray:
    """What each prediction was billed, by the rule in the module docstring."""
    if pricing.price_per_second is not None:
        rated = predictions["predict_time"].fillna(0.0).to_numpy(dtype=float) * pricing.price_per_second
    else:
        started = ~predictions["status"].isin(NOT_BILLED).to_numpy()
        rated = np.where(started, float(pricing.cost_per_video), 0.0)
    explicit = predictions["cost_usd"].to_numpy(dtype=float)
    return np.round(np.where(np.isnan(explicit), rated, explicit), 6)


def _per_job(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per job id the attempts name: its attempts, key and recorded cost."""
    named = attempts.loc[attempts["provider_job_id"].notna()].sort_values("id")
    grouped = named.groupby("provider_job_id", sort=False)
    return pd.DataFrame(
        {
            "video_ids": grouped["id"].agg(lambda ids: [int(i) for i in ids]),
            "tg_user_id": grouped["tg_user_id"].first().astype("Int64"),  # stays an integer beside unmatched jobs
            "prompt_key": grouped["prompt_key"].first(),
            "recorded_usd": grouped["cost_usd"].sum(min_count=0),
        }
    ).rename_axis("job_id").reset_index()


def _doubles(jobs: pd.DataFrame, *, window: timedelta) -> pd.DataFrame:
    """Billed jobs with a known key that an earlier delivering job of the key paid for."""
    paid = jobs.loc[jobs["video_ids"].notna() & (jobs["billed_usd"] > 0)]
    # Two jobs created in the same instant (a double tap): the attempt recorded first came first.
    paid = paid.assign(_first=[ids[0] for ids in paid["video_ids"]]).sort_values(["created_at", "_first", "job_id"])
    frame = pd.DataFrame(
        {
            "id": np.arange(1, len(paid) + 1, dtype=np.int64),
            "tg_user_id": paid["tg_user_id"].astype("int64").to_numpy(),
            "prompt_key": paid["prompt_key"].to_numpy(dtype=object),
            "status": np.where(paid["status"].isin(DELIVERED_NOTHING), "failed", "ready"),
            "created_at": paid["created_at"].array,
        }
    )
    marked = mark_duplicates(frame, window=window)
    by_number = pd.Series(paid["job_id"].to_numpy(), index=frame["id"].to_numpy())
    hit = marked.loc[marked["is_duplicate"]]
    out = paid.set_index("job_id").loc[by_number.loc[hit["id"].to_numpy()].to_numpy()].reset_index()
    out["earlier_job_id"] = by_number.loc[hit["previous_id"].astype("int64").to_numpy()].to_numpy()
    earlier = paid.set_index("job_id")["created_at"].reindex(out["earlier_job_id"])
    out["gap_seconds"] = (out["created_at"] - pd.Series(earlier.array, index=out.index)).dt.total_seconds()
    return out.drop(columns="_first")


def _day(times: pd.Series) -> pd.Series:
    return times.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")


def _by_day(predictions: pd.DataFrame, attempts: pd.DataFrame, found: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = [
        predictions.groupby(_day(predictions["created_at"])).agg(
            billed_jobs=("billed_usd", lambda v: int((v > 0).sum())), billed_usd=("billed_usd", "sum")
        ),
        attempts.groupby(_day(attempts["created_at"])).agg(recorded_usd=("cost_usd", "sum")),
    ]
    for name, frame, money, when in (
        ("leaks", found["leaks"], "billed_usd", "created_at"),
        ("unknown_jobs", found["unknown"], "cost_usd", "created_at"),
        ("double_payments", found["doubles"], "billed_usd", "created_at"),
        ("cost_mismatches", found["mismatches"], "difference_usd", "created_at"),
    ):
        usd = {"leaks": "leak_usd", "unknown_jobs": "unknown_usd", "double_payments": "double_usd",
               "cost_mismatches": "mismatch_usd"}[name]
        parts.append(frame.groupby(_day(frame[when])).agg(**{name: (money, "size"), usd: (money, "sum")}))
    table = pd.concat(parts, axis=1).fillna(0).sort_index().rename_axis("day").reset_index()
    for column in table.columns:
        if column.endswith("_usd"):
            table[column] = table[column].astype(float).round(2)
        elif column != "day":
            table[column] = table[column].astype("int64")
    table.insert(4, "difference_usd", (table["billed_usd"] - table["recorded_usd"]).round(2))
    return table


def reconcile(
    attempts: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
    pricing: Pricing = Pricing(),
) -> Reconciliation:
    """Join the attempts (`audit.sources.attempts`) with the provider's predictions
    (`audit.sources.replicate.predictions_frame`) and list what does not agree."""
    predictions = predictions.assign(billed_usd=billed_usd(predictions, pricing))
    jobs = predictions.merge(_per_job(attempts), on="job_id", how="left")
    judged = in_period(jobs["created_at"], since, until).to_numpy()
    known = jobs["video_ids"].notna().to_numpy()
    attempts_in = attempts.loc[in_period(attempts["created_at"], since, until)]

    leaks = jobs.loc[judged & ~known & (jobs["billed_usd"] > 0).to_numpy()].reset_index(drop=True)
    listed = set(predictions["job_id"])
    unknown = attempts_in.loc[
        attempts_in["provider_job_id"].notna() & ~attempts_in["provider_job_id"].isin(listed)
    ].reset_index(drop=True)
    doubles = _doubles(jobs, window=window)
    doubles = doubles.loc[in_period(doubles["created_at"], since, until)].reset_index(drop=True)
    both = jobs.loc[judged & known].assign(recorded_usd=lambda f: f["recorded_usd"].fillna(0.0))
    both = both.assign(difference_usd=(both["billed_usd"] - both["recorded_usd"]).round(2))
    mismatches = both.loc[both["difference_usd"].abs() > _CENT].reset_index(drop=True)

    found = {"leaks": leaks, "unknown": unknown, "doubles": doubles, "mismatches": mismatches}
    by_day = _by_day(predictions.loc[judged], attempts_in.assign(cost_usd=attempts_in["cost_usd"].fillna(0.0)), found)
    summary = _summary(jobs.loc[judged], attempts_in, found, since=since, until=until, window=window, pricing=pricing)
    return Reconciliation(jobs=jobs, by_day=by_day, summary=summary, **found)


def _summary(jobs, attempts, found, *, since, until, window, pricing) -> dict[str, Any]:
    def money(values: pd.Series) -> float:
        return round(float(values.fillna(0.0).sum()), 2)

    leaks, unknown, doubles, mismatches = (found[k] for k in ("leaks", "unknown", "doubles", "mismatches"))
    return {
        "since": None if since is None else pd.Timestamp(since).isoformat(),
        "until": None if until is None else pd.Timestamp(until).isoformat(),
        "window_hours": window.total_seconds() / 3600,
        "pricing": pricing.describe(),
        "predictions": len(jobs),
        "billed_usd": money(jobs["billed_usd"]),
        "attempts": len(attempts),
        "attempts_without_job": int(attempts["provider_job_id"].isna().sum()),
        "recorded_usd": money(attempts["cost_usd"]),
        "leaks": {"count": len(leaks), "usd": money(leaks["billed_usd"])},
        "unknown_jobs": {"count": len(unknown), "usd": money(unknown["cost_usd"])},
        "double_payments": {"count": len(doubles), "usd": money(doubles["billed_usd"])},
        "cost_mismatches": {"count": len(mismatches), "usd": money(mismatches["difference_usd"])},
        "leak_jobs": [
            {"job_id": j, "created_at": t, "status": s, "billed_usd": float(b), "prompt": p}
            for j, t, s, b, p in zip(leaks["job_id"], iso_utc(leaks["created_at"]), leaks["status"],
                                     leaks["billed_usd"], leaks["prompt"], strict=True)
        ],
        "unknown_job_attempts": [
            {"video_id": int(v), "job_id": j, "created_at": t, "status": s, "cost_usd": None if pd.isna(c) else float(c)}
            for v, j, t, s, c in zip(unknown["id"], unknown["provider_job_id"], iso_utc(unknown["created_at"]),
                                     unknown["status"], unknown["cost_usd"], strict=True)
        ],
        "double_payment_jobs": [
            {"job_id": j, "earlier_job_id": e, "video_ids": v, "tg_user_id": int(u), "created_at": t,
             "gap_seconds": round(float(g), 3), "billed_usd": float(b)}
            for j, e, v, u, t, g, b in zip(doubles["job_id"], doubles["earlier_job_id"], doubles["video_ids"],
                                           doubles["tg_user_id"], iso_utc(doubles["created_at"]),
                                           doubles["gap_seconds"], doubles["billed_usd"], strict=True)
        ],
        "cost_mismatch_jobs": [
            {"job_id": j, "video_ids": v, "billed_usd": float(b), "recorded_usd": float(r)}
            for j, v, b, r in zip(mismatches["job_id"], mismatches["video_ids"], mismatches["billed_usd"],
                                  mismatches["recorded_usd"], strict=True)
        ],
    }

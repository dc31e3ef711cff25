"""The nemesis's checker: the service's promises, read from the database, the provider's bill
and what the clients saw, once the run is over, healed and quiet.

Mapping a provider job (a stand-in prediction) to its (user, prompt key), explicitly:
1. `db job`: a `videos` row carries its id in `provider_job_id`: that row's user and key;
2. `db prompt`: else its input prompt's key (`service.prompt_key`) is on rows of exactly one
   user: that user (every nemesis prompt names its user, so this is unambiguous);
3. `client log`: else the client that sent that very prompt;
4. otherwise it is counted unmapped.
A job whose id is on no row is a job unknown to the database, whichever way it was mapped.
Every job falls in one window: a run lasts minutes, the window is 24 h (the database's clock).

Double payment: a (user, key) with more than one job, not counting a job created after the
previous one *failed at the provider* (nothing was delivered, so asking again may pay again).
A job the service cancelled is no excuse: the service chose to throw it away.

With limits (`bench/nemesis.py --limits`): no user has more billed jobs than the daily limit
(the run is shorter than its 24 h, and every billed job took a place: a place is given back
only by a claim that never asked for a job), and the bill is not over the budget. The
concurrent limit is exercised but not checked here (its documented gap: a worker cut off past
its lease may resume beside a newer generation of the same user).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from nemesis_faults import Window
from nemesis_traffic import Sent
from service.prompt_key import prompt_key

__all__ = ["check", "Verdict", "ALLOWED_STATUSES", "VIOLATIONS"]

ALLOWED_STATUSES = frozenset({202, 409, 422, 429, 503})
# A request overlapping its own service's kill/freeze/restart by this margin is excused.
WINDOW_MARGIN_SECONDS = 1.0
EXAMPLES = 5
# The columns that must be zero for the run to pass (exit 0).
VIOLATIONS = (
    "extra_paid_jobs", "jobs_not_ended_recorded", "rows_still_generating", "bad_http_statuses",
    "slow_answers", "conn_errors_shared_fault", "conn_errors_no_fault", "jobs_unknown_to_db",
    "cost_gap_usd", "cost_rows_beyond_jobs", "unmapped_jobs", "users_over_daily_limit", "budget_overrun_usd",
)

VIDEOS_SQL = """SELECT id, tg_user_id, prompt_key, status, attempt, cost_usd, provider_job_id, error
                  FROM videos ORDER BY id"""


@dataclass
class Verdict:
    columns: dict[str, Any]
    examples: dict[str, list[Any]]

    @property
    def passed(self) -> bool:
        return all(not self.columns[name] for name in VIOLATIONS)


def read_videos(conninfo: str) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        cursor = conn.execute(VIDEOS_SQL)
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def check(*, videos: list[dict[str, Any]], provider: dict[str, Any], sent: list[Sent], windows: list[Window],
          host_names: dict[str, str], bound_seconds: float, limits: dict[str, float] | None = None) -> Verdict:
    columns: dict[str, Any] = {}
    examples: dict[str, list[Any]] = defaultdict(list)

    def example(column: str, item: Any) -> None:
        if len(examples[column]) < EXAMPLES:
            examples[column].append(item)

    billed = {charge["id"]: charge for charge in provider["bill"]}
    jobs = [p for p in provider["predictions"] if p["id"] in billed]  # creation order
    rows_of_job: dict[str, list[dict]] = defaultdict(list)
    users_of_key: dict[str, set[int]] = defaultdict(set)
    for row in videos:
        users_of_key[row["prompt_key"]].add(row["tg_user_id"])
        if row["provider_job_id"]:
            rows_of_job[row["provider_job_id"]].append(row)
    client_user = {s.prompt: s.user for s in sent}

    # -- one paid job per (user, key, window) ----------------------------------------------
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    sources: Counter[str] = Counter()
    unmapped = unknown = 0
    for job in jobs:
        rows = rows_of_job.get(job["id"])
        key = prompt_key(job["input"]["prompt"])
        if rows:
            owner, source = (rows[0]["tg_user_id"], rows[0]["prompt_key"]), "db job"
        elif len(users_of_key[key]) == 1:
            owner, source = (next(iter(users_of_key[key])), key), "db prompt"
        elif job["input"]["prompt"] in client_user:
            owner, source = (client_user[job["input"]["prompt"]], key), "client log"
        else:
            owner, source = None, "unmapped"
        sources[source] += 1
        if not rows:
            unknown += 1
            example("jobs_unknown_to_db", {"job": job["id"], "prompt": job["input"]["prompt"],
                                           "provider_status": job["status"], "mapped_by": source})
        if owner is None:
            unmapped += 1
            example("unmapped_jobs", job["id"])
            continue
        groups[owner].append(job)
    extra = 0
    for (user, key), group in groups.items():
        excess = [later for earlier, later in zip(group, group[1:]) if earlier["status"] != "failed"]
        extra += len(excess)
        if excess:
            example("extra_paid_jobs", {"user": user, "key": key, "jobs": [
                f"{j['id']} ({j['status']}; rows: {statuses(rows_of_job.get(j['id'], []))})" for j in group]})
    columns["provider_jobs"] = len(jobs)
    columns["jobs_mapped_by"] = dict(sources)
    columns["groups_paid_twice"] = sum(1 for g in groups.values() if len(g) > 1)
    columns["extra_paid_jobs"] = extra
    columns["unmapped_jobs"] = unmapped
    columns["jobs_unknown_to_db"] = unknown

    # -- every started job ends recorded, without anyone asking again ------------------------
    not_recorded = undelivered = 0
    for job in jobs:
        rows = rows_of_job.get(job["id"], [])
        if not any(r["status"] == "ready" or (r["status"] == "failed" and r["cost_usd"] is not None) for r in rows):
            not_recorded += 1
            example("jobs_not_ended_recorded", {"job": job["id"], "provider_status": job["status"],
                                                "rows": statuses(rows)})
        if job["status"] == "succeeded" and not any(r["status"] == "ready" for r in rows):
            undelivered += 1
            example("info_paid_results_not_delivered", {"job": job["id"], "rows": statuses(rows)})
    columns["jobs_not_ended_recorded"] = not_recorded
    columns["info_paid_results_not_delivered"] = undelivered
    generating = [row["id"] for row in videos if row["status"] == "generating"]
    columns["rows_still_generating"] = len(generating)
    examples["rows_still_generating"] = generating[:EXAMPLES]

    # -- what the clients saw ------------------------------------------------------------------
    slow_limit = bound_seconds + 2.0
    statuses_seen = Counter(str(s.status) if s.status is not None else (s.error or "?") for s in sent)
    columns["requests"] = len(sent)
    columns["answers"] = dict(sorted(statuses_seen.items()))
    bad = [s for s in sent if s.status is not None and s.status not in ALLOWED_STATUSES]
    columns["bad_http_statuses"] = len(bad)
    for s in bad:
        example("bad_http_statuses", {"status": s.status, "host": host_names[s.host], "kind": s.kind})
    slow = {"own": 0, "shared": 0, "none": 0}
    conn = {"own": 0, "shared": 0, "none": 0}
    for s in sent:
        timed_out = s.error is not None and s.error.startswith("timeout")
        if s.seconds > slow_limit or timed_out:
            where = fault_at(s, windows, host_names[s.host])
            slow[where] += 1
            if where != "own":
                example("slow_answers", {"seconds": round(s.seconds, 2), "status": s.status, "error": s.error,
                                         "host": host_names[s.host], "during": where})
        elif s.status is None:
            where = fault_at(s, windows, host_names[s.host])
            conn[where] += 1
            if where != "own":
                example(f"conn_errors_{'shared_fault' if where == 'shared' else 'no_fault'}",
                        {"error": s.error, "host": host_names[s.host]})
    columns["slow_answers"] = slow["shared"] + slow["none"]
    columns["info_slow_answers_own_fault"] = slow["own"]
    columns["conn_errors_own_fault_excused"] = conn["own"]
    columns["conn_errors_shared_fault"] = conn["shared"]
    columns["conn_errors_no_fault"] = conn["none"]

    # -- money -------------------------------------------------------------------------------
    price = Decimal(str(provider["price_usd"]))
    billed_usd = price * len(jobs)
    recorded_usd = sum((row["cost_usd"] for row in videos if row["cost_usd"] is not None), Decimal(0))
    columns["billed_usd"] = float(billed_usd)
    columns["recorded_usd"] = float(recorded_usd)
    columns["cost_gap_usd"] = float(billed_usd - recorded_usd)
    jobless = [row for row in videos if row["cost_usd"] is not None and not row["provider_job_id"]]
    beyond = len(jobless)
    for row in jobless:
        example("cost_rows_beyond_jobs", {"row": row["id"], "status": row["status"], "error": (row["error"] or "")[:120]})
    for job_id, rows in rows_of_job.items():
        costed = [r for r in rows if r["cost_usd"] is not None]
        if len(costed) > 1:
            beyond += len(costed) - 1
            example("cost_rows_beyond_jobs", {"job": job_id, "rows": statuses(costed)})
    columns["cost_rows_beyond_jobs"] = beyond

    # -- limits ------------------------------------------------------------------------------
    columns["users_over_daily_limit"] = 0  # without limits, nothing to exceed
    columns["budget_overrun_usd"] = 0.0
    if limits is not None:
        per_user: Counter[int] = Counter()
        for (user, _key), group in groups.items():
            per_user[user] += len(group)
        over = {user: n for user, n in per_user.items() if n > limits["daily"]}
        columns["info_users_at_daily_limit"] = sum(1 for n in per_user.values() if n == limits["daily"])
        columns["users_over_daily_limit"] = len(over)
        for user, n in sorted(over.items())[:EXAMPLES]:
            example("users_over_daily_limit", {"user": user, "billed_jobs": n, "limit": limits["daily"]})
        columns["budget_overrun_usd"] = max(0.0, float(billed_usd) - limits["budget_usd"])
    return Verdict(columns, dict(examples))


def statuses(rows: list[dict]) -> str:
    return ", ".join(f"#{r['id']} a{r['attempt']} {r['status']}{' $' if r['cost_usd'] is not None else ''}"
                     for r in rows) or "none"


def fault_at(sent: Sent, windows: list[Window], host: str) -> str:
    """'own': the request overlapped a kill/freeze/restart of the service it was sent to;
    'shared': a fault of PostgreSQL, the network or the other service; 'none': no fault."""
    found = "none"
    for window in windows:
        if sent.start <= window.end + WINDOW_MARGIN_SECONDS and sent.end >= window.start:
            if window.host == host:
                return "own"
            found = "shared"
    return found

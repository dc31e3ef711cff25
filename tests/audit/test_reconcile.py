"""The reconciliation's rules (`audit.reconcile`), on small planted histories and the fixture."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from audit.frames import SchemaError
from audit.reconcile import Pricing, reconcile
from audit.sources.attempts import attempts_frame, load_attempts_file
from audit.sources.base import Period
from audit.sources.replicate import predictions_frame, read_predictions_file
from tests.audit.conftest import EXPECTED_DUPLICATES, FIXTURES

T0 = datetime(2025, 10, 14, 9, 0, tzinfo=UTC)
RECORDED_PAGE = FIXTURES.parents[1] / "tests" / "audit" / "recordings" / "replicate_list_predictions.json"


def attempts(*rows: tuple) -> pd.DataFrame:
    """(id, user, prompt, status, minutes after T0, job id or None, cost or None)."""
    frame = pd.DataFrame(
        [
            {"id": i, "tg_user_id": u, "prompt": p, "status": s, "created_at": (T0 + timedelta(minutes=m)).isoformat(),
             "provider_job_id": j, "cost_usd": c}
            for i, u, p, s, m, j, c in rows
        ]
    )
    return attempts_frame(frame, source="attempts")


def predictions(*rows: tuple) -> pd.DataFrame:
    """(job id, minutes after T0, status[, extra fields])."""
    records = []
    for row in rows:
        job, minutes, status, *extra = row
        record = {"id": job, "created_at": (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                  "status": status, "metrics": {"predict_time": 100.0}, "input": {"prompt": "p"}}
        record.update(extra[0] if extra else {})
        records.append(record)
    return predictions_frame(records)


def test_a_clean_week_has_no_findings():
    books = attempts((1, 7, "A cat", "ready", 0, "j1", 4.0), (2, 8, "A dog", "ready", 5, "j2", 4.0),
                     (3, 7, "A cat", "failed", 30 * 60, None, None))  # no job: nothing billed, nothing to find
    bill = predictions(("j1", 0.1, "succeeded"), ("j2", 5.1, "succeeded"))
    result = reconcile(books, bill)
    assert result.findings == 0
    assert result.summary["billed_usd"] == result.summary["recorded_usd"] == 8.0
    assert result.summary["attempts_without_job"] == 1


def test_each_finding_is_found_with_its_job_ids_and_nothing_else():
    books = attempts(
        (1, 7, "A cat", "ready", 0, "j1", 4.0),
        (2, 7, "a cat!", "ready", 60, "j2", 4.0),  # same key an hour later: a double payment
        (3, 8, "A dog", "ready", 10, "j3", 4.0),
        (4, 8, "A bird", "ready", 20, "staging-9", 4.0),  # the provider never heard of it
        (5, 9, "A fox", "failed", 30, "j5", None),  # billed, recorded at no cost
    )
    bill = predictions(("j1", 0.1, "succeeded"), ("j2", 60.1, "succeeded"), ("j3", 10.1, "succeeded"),
                       ("j5", 30.1, "failed"), ("orphan", 40, "succeeded"))
    result = reconcile(books, bill)
    assert list(result.leaks["job_id"]) == ["orphan"]
    assert list(result.unknown["id"]) == [4] and list(result.unknown["provider_job_id"]) == ["staging-9"]
    assert list(result.doubles["job_id"]) == ["j2"] and list(result.doubles["earlier_job_id"]) == ["j1"]
    assert result.doubles["gap_seconds"].tolist() == [3600.0]
    assert list(result.mismatches["job_id"]) == ["j5"] and result.mismatches["difference_usd"].tolist() == [4.0]
    assert result.findings == 4
    s = result.summary
    assert (s["billed_usd"], s["recorded_usd"]) == (20.0, 16.0)
    assert s["leaks"] == {"count": 1, "usd": 4.0} and s["unknown_jobs"] == {"count": 1, "usd": 4.0}
    assert [d["video_ids"] for d in s["double_payment_jobs"]] == [[2]]
    day = result.by_day.set_index("day").loc["2025-10-14"]
    assert (day["billed_usd"], day["recorded_usd"], day["difference_usd"]) == (20.0, 16.0, 4.0)
    assert (day["leaks"], day["unknown_jobs"], day["double_payments"], day["cost_mismatches"]) == (1, 1, 1, 1)


def test_a_job_adopted_by_a_takeover_is_paid_once_and_its_double_recording_is_a_mismatch():
    # The first worker died; the attempt that took the claim over adopted its prediction, and
    # both rows recorded the cost.
    books = attempts((1, 7, "A cat", "failed", 0, "j1", 4.0), (2, 7, "A cat", "ready", 2, "j1", 4.0))
    result = reconcile(books, predictions(("j1", 0.1, "succeeded")))
    assert result.leaks.empty and result.unknown.empty and result.doubles.empty
    assert result.mismatches[["job_id", "billed_usd", "recorded_usd"]].values.tolist() == [["j1", 4.0, 8.0]]
    assert result.mismatches["video_ids"].tolist() == [[1, 2]]


@pytest.mark.parametrize("first", ["failed", "canceled", "aborted"])
def test_a_retry_after_a_job_that_delivered_nothing_is_not_a_double_payment(first):
    books = attempts((1, 7, "A cat", "failed", 0, "j1", 4.0 if first != "aborted" else 0.0),
                     (2, 7, "A cat", "ready", 10, "j2", 4.0))
    result = reconcile(books, predictions(("j1", 0.1, first), ("j2", 10.1, "succeeded")))
    assert result.findings == 0


def test_a_still_running_job_makes_the_next_one_a_double_payment():
    books = attempts((1, 7, "A cat", "generating", 0, "j1", None), (2, 7, "A cat", "ready", 1, "j2", 4.0))
    result = reconcile(books, predictions(("j1", 0.1, "processing"), ("j2", 1.1, "succeeded")), pricing=Pricing(4.0))
    assert list(result.doubles["job_id"]) == ["j2"]
    assert list(result.mismatches["job_id"]) == ["j1"]  # billed as it runs; the books record it when it ends


def test_an_aborted_prediction_costs_nothing_and_is_no_leak():
    result = reconcile(attempts((1, 7, "A cat", "ready", 0, "j1", 4.0)),
                       predictions(("j1", 0.1, "succeeded"), ("never-started", 5, "aborted")))
    assert result.findings == 0 and result.summary["billed_usd"] == 4.0


def test_pricing_by_the_second_and_a_cost_in_the_export():
    bill = predictions(("j1", 0, "succeeded", {"metrics": {"predict_time": 200.0}}),
                       ("j2", 1, "failed", {"metrics": {"predict_time": 30.0}}),
                       ("j3", 2, "succeeded", {"cost": "0.37"}))
    books = attempts((1, 7, "A", "ready", 0, "j1", 1.0), (2, 8, "B", "failed", 1, "j2", 0.15), (3, 9, "C", "ready", 2, "j3", 0.37))
    result = reconcile(books, bill, pricing=Pricing(price_per_second=0.005))
    assert result.jobs.set_index("job_id")["billed_usd"].to_dict() == {"j1": 1.0, "j2": 0.15, "j3": 0.37}
    assert result.findings == 0
    by_video = reconcile(books, bill, pricing=Pricing(cost_per_video=4.0)).jobs.set_index("job_id")["billed_usd"]
    assert by_video.to_dict() == {"j1": 4.0, "j2": 4.0, "j3": 0.37}


def test_only_the_period_is_judged_but_a_double_finds_its_earlier_payment_before_it():
    books = attempts((1, 7, "A cat", "ready", 0, "j1", 4.0), (2, 7, "A cat", "ready", 120, "j2", 4.0),
                     (3, 8, "Old", "ready", -600, "gone", 4.0))  # before the period: not judged
    bill = predictions(("j1", 0.1, "succeeded"), ("j2", 120.1, "succeeded"), ("old-orphan", -300, "succeeded"))
    result = reconcile(books, bill, since=T0 + timedelta(minutes=60))
    assert list(result.doubles["job_id"]) == ["j2"] and list(result.doubles["earlier_job_id"]) == ["j1"]
    assert result.leaks.empty and result.unknown.empty
    assert result.summary["predictions"] == 1 and result.summary["billed_usd"] == 4.0


def test_the_fixture_shows_exactly_what_make_billing_planted():
    books = load_attempts_file(FIXTURES / "attempts.csv", period=Period())
    bill = predictions_frame(read_predictions_file(FIXTURES / "predictions.json"))
    result = reconcile(books, bill)
    with open(FIXTURES / "attempts.csv", newline="") as f:
        job_of = {int(r["id"]): r["provider_job_id"] for r in csv.DictReader(f)}
    no_video = {"Mountain lake timelapse at dawn", "Glass city floating above the clouds"}
    leak_jobs = {p["id"] for p in json.loads((FIXTURES / "predictions.json").read_text())
                 if p["input"]["prompt"] in no_video and p["id"] not in job_of.values()}
    assert set(result.leaks["job_id"]) == leak_jobs and len(leak_jobs) == 2
    assert list(result.unknown["id"]) == [21]
    assert set(result.doubles["job_id"]) == {job_of[v] for v in EXPECTED_DUPLICATES}  # the sweep's duplicates
    assert {v for ids in result.doubles["video_ids"] for v in ids} == EXPECTED_DUPLICATES
    assert result.mismatches["video_ids"].tolist() == [[8]]
    assert result.findings == 2 + 1 + 11 + 1
    totals = result.by_day[["billed_usd", "recorded_usd", "leak_usd", "double_usd"]].sum().to_dict()
    assert totals == {"billed_usd": 228.0, "recorded_usd": 220.0, "leak_usd": 8.0, "double_usd": 44.0}


def test_the_recorded_list_page_reads_as_replicate_documents_it():
    page = json.loads(RECORDED_PAGE.read_text())["response"]["body"]
    frame = predictions_frame(page["results"])
    row = frame.iloc[0]
    assert (row["job_id"], row["status"], row["predict_time"], row["model"]) == (
        "gm3qorzdhgbfurvjtvhg6dckhu", "succeeded", 0.012683, "replicate/hello-world")
    assert row["created_at"] == pd.Timestamp("2023-09-08T16:19:34.907244Z")
    assert row["prompt"] is None  # its input has no prompt: a leak is listed without one


def test_a_csv_export_reads_like_the_json_one(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("id,created_at,status,metrics.predict_time,input.prompt\n"
                    "j1,2025-10-14T09:00:00Z,succeeded,12.5,A cat\n")
    frame = predictions_frame(read_predictions_file(path))
    assert frame[["job_id", "status", "predict_time", "prompt"]].values.tolist() == [["j1", "succeeded", 12.5, "A cat"]]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"id": "j1", "created_at": "2025-10-14T09:00:00"}], "without a UTC offset"),
        ([{"id": "j1", "created_at": "2025-10-14T09:00:00Z"}, {"id": "j1", "created_at": "2025-10-14T09:00:00Z"}],
         "listed twice"),
        ([{"id": "j1", "created_at": "2025-10-14T09:00:00Z", "metrics": {"predict_time": "soon"}}], "predict_time"),
        ([{"created_at": "2025-10-14T09:00:00Z"}], "has no id"),
    ],
)
def test_bad_predictions_are_refused_with_one_line(records, message):
    with pytest.raises(SchemaError, match=message):
        predictions_frame(records)


def test_books_without_provider_job_id_cannot_be_reconciled():
    with pytest.raises(SchemaError, match=r"missing column\(s\) provider_job_id, cost_usd"):
        load_attempts_file(FIXTURES / "videos.csv", period=Period())

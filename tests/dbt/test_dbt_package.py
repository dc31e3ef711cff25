"""The rule as a dbt package: the committed files are `python -m audit dbt`'s output, and
``dbt build`` on DuckDB and PostgreSQL finds what the sweep finds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from audit.cli import main
from audit.dbt_package import package_files

from .conftest import ID_OFFSET, PACKAGE, Build, History


def _shift(frame: pd.DataFrame, columns: list[str], history: History) -> pd.DataFrame:
    out = frame[columns].astype("int64")
    return out + ID_OFFSET if history.name == "synthetic" else out


def _expected(histories: list[History], attribute: str, columns: list[str]) -> set[tuple]:
    rows = set()
    for history in histories:
        frame = getattr(history.audit, attribute)
        ids = _shift(frame, columns, history)
        rows |= set(ids.itertuples(index=False, name=None))
    return rows


def test_committed_package_is_what_audit_dbt_writes(tmp_path, capsys):
    assert main(["dbt", "--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    written = {p.relative_to(tmp_path / "claimfirst_rule").as_posix(): p.read_text()
               for p in (tmp_path / "claimfirst_rule").rglob("*") if p.is_file()}
    committed = {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in PACKAGE.rglob("*") if p.is_file()}
    assert written == package_files()
    assert committed == written, "dbt/claimfirst_rule is stale: run `python -m audit dbt --out dbt`"


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["dbt", "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.startswith("audit: error: cannot write the dbt package")


def test_duplicates_are_the_sweeps(build: Build, histories):
    got = set(build.tables["duplicates"][["video_id", "previous_id", "original_id"]]
              .astype("int64").itertuples(index=False, name=None))
    expected = _expected(histories, "duplicates", ["video_id", "previous_id", "original_id"])
    assert got == expected
    assert len(expected) > 100 and any(v < ID_OFFSET for v, _, _ in expected)  # both histories have some


def test_fixture_duplicates_are_the_incidents_eleven(build: Build):
    fixture = build.tables["duplicates"]
    ids = sorted(int(v) for v in fixture["video_id"] if v < ID_OFFSET)
    assert len(ids) == 11 and {54, 55, 56} & set(ids) == {55, 56}


def test_race_windows_are_the_sweeps(build: Build, histories):
    windows = build.tables["race_windows"]
    got = set()
    for row in windows.itertuples(index=False):
        got.add((int(row.chain_id), int(row.video_id), row.role, pd.Timestamp(row.requested_at).tz_convert("UTC"),
                 pd.Timestamp(row.saved_at).tz_convert("UTC"), row.basis))
    expected = set()
    for history in histories:
        frame = history.audit.race_windows
        ids = _shift(frame, ["chain_id", "video_id"], history)
        for (chain, video), row in zip(ids.itertuples(index=False, name=None), frame.itertuples(index=False)):
            expected.add((chain, video, row.role, pd.Timestamp(row.requested_at), pd.Timestamp(row.saved_at),
                          row.basis))
    assert got == expected


def test_waste_per_day_is_the_sweeps(build: Build, histories):
    waste = build.tables["waste"]
    got = {(pd.Timestamp(r.day).date(), int(r.duplicates), float(r.wasted_usd)) for r in waste.itertuples()}
    days = pd.concat([h.audit.duplicates["created_at"] for h in histories]).dt.tz_convert("UTC").dt.date
    expected = {(day, int(n), 4.0 * int(n)) for day, n in days.value_counts().items()}
    assert got == expected
    total = sum(h.audit.summary["wasted_usd"] for h in histories)
    assert float(waste["wasted_usd"].sum()) == pytest.approx(total)


def _test_result(build: Build, model: str) -> dict:
    # e.g. test.claimfirst_check.claimfirst_rule_no_duplicate_generation_videos_all_24.3996fe5254
    (result,) = [r for uid, r in build.results.items()
                 if uid.startswith("test.claimfirst_check.") and f"no_duplicate_generation_{model}_" in uid]
    return result


def test_generic_test_flags_every_duplicate_and_passes_a_clean_model(build: Build, histories):
    planted = _test_result(build, "videos_all")
    assert planted["status"] == "warn"
    assert planted["failures"] == sum(len(h.audit.duplicates) for h in histories)
    clean = _test_result(build, "videos_clean")
    assert (clean["status"], clean["failures"]) == ("pass", 0)

"""Inputs as users really have them: PostgreSQL's text timestamps, prompts that look like
missing values, out-of-range ids, wrong URLs and paths. Every refusal is one line, exit 2,
nothing written."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from audit.cli import main
from audit.frames import SchemaError, normalise_videos
from tests.audit.conftest import VIDEOS_CSV, seed_service_db

AS_OF = "2025-10-16T00:00:00+00:00"


def sweep(*args: str) -> int:
    return main(["sweep", "--as-of", AS_OF, "--no-progress", *args])


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def _csv(tmp_path, rows: list[dict]) -> str:
    path = tmp_path / "videos.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def _row(id_: int, prompt: str, created_at: str, **extra) -> dict:
    return {"id": id_, "tg_user_id": 7, "prompt": prompt, "status": "ready", "created_at": created_at, **extra}


@pytest.mark.parametrize(
    "text",
    ["2025-10-15 10:00:00+00", "2025-10-15T10:00:00+00:00", "2025-10-15T10:00:00Z", "2025-10-15 15:30:00.25+0530",
     "2025-10-15 05:00:00-05"],
)
def test_timestamps_with_any_iso_offset_are_accepted(text):
    frame = normalise_videos(pd.DataFrame([_row(1, "p", text)]))
    assert frame.loc[0, "created_at"].tz is not None
    assert frame.loc[0, "created_at"].floor("h") == pd.Timestamp("2025-10-15T10:00:00Z")


@pytest.mark.parametrize("text", ["2025-10-15", "2025-10-15 10:00:00", "2025-10-15T10:00"])
def test_timestamps_without_an_offset_are_refused(text):
    with pytest.raises(SchemaError, match="without a UTC offset"):
        normalise_videos(pd.DataFrame([_row(1, "p", text)]))


def test_a_column_is_checked_whole_and_padded_offsets_are_offsets():
    # The check runs on the whole Arrow column first: one naive value among many is still
    # found and quoted, and whitespace around an offset time is not taken for a missing offset.
    times = [f"2025-10-15T{h:02d}:00:00+00:00" for h in range(20)]
    naive = normalise_videos_of([*times[:10], "2025-10-15 10:30:00", *times[10:]])
    with pytest.raises(SchemaError, match=r"without a UTC offset \('2025-10-15 10:30:00'\)"):
        naive()
    padded = normalise_videos_of([*times[:10], "  2025-10-15T10:30:00+00:00 \t", *times[10:]])()
    assert padded.set_index("id").loc[11, "created_at"] == pd.Timestamp("2025-10-15T10:30:00Z")


def normalise_videos_of(created: list[str]):
    frame = pd.DataFrame([_row(i + 1, "p", text) for i, text in enumerate(created)])
    return lambda: normalise_videos(frame)


def test_postgres_text_export_sweeps_like_iso(tmp_path, capsys):
    # `\copy videos TO … CSV HEADER` writes timestamptz as "2025-10-15 05:37:00+00".
    frame = pd.read_csv(VIDEOS_CSV, dtype=str)
    for column in ("created_at", "updated_at"):
        frame[column] = frame[column].str.replace("T", " ").str.replace("+00:00", "+00")
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    assert sweep("--videos", str(path), "--out", str(tmp_path / "out")) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["duplicate_count"] == 11 and summary["videos_scanned"] == 56


def test_prompts_that_look_like_missing_values_are_prompts(tmp_path):
    words = ["None", "NA", "null", "nan", "N/A"]
    rows = [_row(i + 1, word, f"2025-10-15T0{i}:00:00+00:00") for i, word in enumerate(words)]
    rows.append(_row(9, "None", "2025-10-15T09:00:00+00:00"))  # a resend of "None"
    out = tmp_path / "out"
    assert sweep("--videos", _csv(tmp_path, rows), "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos_scanned"] == 6
    assert [(d["video_id"], d["original_id"]) for d in summary["duplicates"]] == [(9, 1)]


def test_an_empty_prompt_cell_is_still_refused(tmp_path, capsys):
    rows = [_row(1, "", "2025-10-15T00:00:00+00:00")]
    assert sweep("--videos", _csv(tmp_path, rows), "--out", str(tmp_path / "out")) == 2
    assert "column 'prompt' has empty values" in _one_error_line(capsys)


@pytest.mark.parametrize("user", [str(2**70), str(2**63), "-" + str(2**63 + 1)])
def test_ids_outside_64_bits_are_refused_in_one_line(tmp_path, capsys, user):
    rows = [_row(1, "p", "2025-10-15T00:00:00+00:00") | {"tg_user_id": user}]
    out = tmp_path / "out"
    assert sweep("--videos", _csv(tmp_path, rows), "--out", str(out)) == 2
    line = _one_error_line(capsys)
    assert line.startswith("audit: error: ") and "outside the 64-bit integer range" in line and user in line
    assert not out.exists()


def test_the_largest_telegram_like_ids_are_kept_exact(tmp_path):
    big = 2**63 - 1
    frame = normalise_videos(pd.DataFrame([_row(1, "p", "2025-10-15T00:00:00+00:00") | {"tg_user_id": str(big)}]))
    assert int(frame.loc[0, "tg_user_id"]) == big


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:secret@localhost/db", "unsupported database 'mysql': use SQLite or PostgreSQL"),
        ("mysql+pymysql://u:secret@localhost/db", "unsupported database 'mysql'"),
        ("not a url", "bad database URL"),
    ],
)
def test_unsupported_database_urls_are_one_line(tmp_path, capsys, url, message):
    assert sweep("--database-url", url, "--out", str(tmp_path / "out")) == 2
    line = _one_error_line(capsys)
    assert line.startswith("audit: error: ") and message in line and "secret" not in line
    assert main(["cleanup", "--database-url", url, "--as-of", AS_OF]) == 2
    assert message in _one_error_line(capsys)


def test_a_malformed_csv_is_one_line(tmp_path, capsys):
    path = tmp_path / "broken.csv"
    path.write_text('id,tg_user_id,prompt,status,created_at\n1,2,"p",ready,2025-10-15T00:00:00+00:00\n3,4,5,6,7,8,9\n')
    assert sweep("--videos", str(path), "--out", str(tmp_path / "out")) == 2
    assert "is not a readable CSV" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "args",
    [["sweep", "--window-hours", "abc", "--videos", "x.csv"], ["sweep", "--as-of", "yesterday", "--videos", "x.csv"],
     ["sweep"], ["nonsense"]],
)
def test_bad_arguments_are_one_line_exit_2(capsys, args):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    line = _one_error_line(capsys)
    assert line.startswith("audit") and ": error: " in line and "--help" in line


def test_backup_dir_that_is_a_file_changes_nothing(sqlite_url, tmp_path, capsys):
    seed_service_db(sqlite_url, pd.read_csv(VIDEOS_CSV, dtype=str))
    afile = tmp_path / "backups"
    afile.write_text("not a directory")
    args = ["cleanup", "--database-url", sqlite_url, "--as-of", AS_OF, "--apply", "--backup-dir", str(afile)]
    assert main(args) == 2
    assert "is not a directory" in _one_error_line(capsys)
    # Nested under a file: the directory cannot even be created.
    args[-1] = str(afile / "nested")
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert "not a directory" in line.lower() or "cannot create" in line
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM videos WHERE duplicate_of IS NOT NULL")).scalar_one() == 0
    engine.dispose()
    assert afile.read_text() == "not a directory"


def test_a_filtered_frame_of_text_keeps_every_time_and_id():
    """Arrow's fast casts must relabel, not align: a filtered frame's index is not 0..n-1."""
    from audit.frames import normalise_videos

    text = pd.DataFrame({"id": ["1", "2", "3", "4"], "tg_user_id": ["7"] * 4, "prompt": ["p"] * 4,
                         "status": ["ready"] * 4,
                         "created_at": [f"2025-10-15T0{h}:00:00+00:00" for h in range(4)]}, dtype="str")
    kept = text.iloc[[1, 3]]
    frame = normalise_videos(kept, source="videos")
    assert frame["id"].tolist() == [2, 4] and frame["created_at"].notna().all()


@pytest.mark.parametrize("head, size, why", [
    (b"id,tg_user_id,prompt,status,created_at", 2 * 1024**3, "its first line is longer than 65536 bytes"),
    (b"id,tg_user_id,prompt,status,created_at\n1,7,", 300 * 1024**2, "a row is longer than 4194304 bytes"),
], ids=["2 GB first line", "300 MB row"])
def test_a_line_that_never_ends_is_refused_at_once(tmp_path, capsys, head: bytes, size: int, why: str) -> None:
    # Sparse files: the sizes cost no disk, and the reader sees bytes it must not keep.
    path = tmp_path / "videos.csv"
    with path.open("wb") as file:
        file.write(head)
        file.truncate(size)
    for args in (["--videos", str(path)], ["--videos", str(VIDEOS_CSV), "--requests", str(path)]):
        assert sweep(*args, "--out", str(tmp_path / "out")) == 2
        line = _one_error_line(capsys)
        assert line.startswith("audit: error: ") and why in line
    assert not (tmp_path / "out").exists()

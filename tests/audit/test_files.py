"""File sources: Arrow's CSV reader and Parquet give the pandas path's frames and results."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from audit.cli import main
from audit.frames import normalise_requests, normalise_videos
from audit.pipeline import run_audit
from audit.sources.files import load_files
from audit.synthetic import synthetic_requests, synthetic_videos, to_iso_text
from tests.audit.conftest import AS_OF, EXPECTED_DUPLICATES, REQUESTS_CSV, VIDEOS_CSV


def test_csv_reader_gives_the_frames_pandas_gives(fixture_videos, fixture_requests):
    loaded = load_files(VIDEOS_CSV, REQUESTS_CSV)
    pd.testing.assert_frame_equal(loaded.videos, normalise_videos(fixture_videos), check_dtype=False)
    pd.testing.assert_frame_equal(loaded.requests, normalise_requests(fixture_requests), check_dtype=False)


def test_parquet_input_gives_the_same_sweep(tmp_path, capsys):
    videos = synthetic_videos(3_000, seed=5, users=40, days=5)
    requests = synthetic_requests(videos, seed=6)
    to_iso_text(videos).to_csv(tmp_path / "v.csv", index=False)
    to_iso_text(requests).to_csv(tmp_path / "r.csv", index=False)
    videos.to_parquet(tmp_path / "v.parquet", index=False)
    requests.to_parquet(tmp_path / "r.pq", index=False)
    outs = {}
    for name, v, r in (("csv", "v.csv", "r.csv"), ("parquet", "v.parquet", "r.pq")):
        out = tmp_path / name
        code = main(["sweep", "--videos", str(tmp_path / v), "--requests", str(tmp_path / r), "--out", str(out),
                     "--as-of", "2025-01-10T00:00:00+00:00", "--no-progress"])
        assert code == 0
        outs[name] = out
    summaries = [json.loads((o / "summary.json").read_text()) for o in outs.values()]
    for s in summaries:
        s.pop("source")
    assert summaries[0] == summaries[1] and summaries[0]["duplicate_count"] > 100
    assert (outs["csv"] / "duplicates.csv").read_text() == (outs["parquet"] / "duplicates.csv").read_text()
    capsys.readouterr()


def test_parquet_with_naive_timestamps_is_refused_in_one_line(tmp_path, capsys):
    videos = synthetic_videos(10, seed=1)
    videos["created_at"] = videos["created_at"].dt.tz_localize(None)
    videos.to_parquet(tmp_path / "naive.parquet", index=False)
    assert main(["sweep", "--videos", str(tmp_path / "naive.parquet"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit: error: ") and "naive timestamps" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", [b"", b"PAR1 this is not parquet"])
def test_unreadable_parquet_is_exit_2(tmp_path, capsys, content):
    (tmp_path / "bad.parquet").write_bytes(content)
    assert main(["sweep", "--videos", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit: error: videos file") and "not a readable Parquet file" in err and err.count("\n") == 1


def test_prompts_that_look_like_missing_values_are_text(tmp_path):
    frame = pd.read_csv(VIDEOS_CSV, dtype=str)
    frame.loc[frame["id"].isin(["54", "55"]), "prompt"] = "None"
    frame.to_csv(tmp_path / "v.csv", index=False)
    result = run_audit(load_files(tmp_path / "v.csv").videos, as_of=AS_OF)
    videos = result.videos.set_index("id")
    assert videos.loc[54, "prompt"] == "None" and videos.loc[54, "prompt_key"] == "none"
    # 55 repeats 54 ("None" both), 56 (the original text) repeats neither any more.
    assert set(result.duplicates["video_id"]) == EXPECTED_DUPLICATES - {56}
    assert result.duplicates.set_index("video_id").loc[55, "original_id"] == 54


@pytest.mark.parametrize(
    "content",
    [
        b"id,tg_user_id,prompt,status,created_at\n1,2,a,ready,2025-10-15T00:00:00+00:00\n2,3\n",  # ragged
        b"\xff\xfe,x\n",  # a header that is not UTF-8
        b"id,tg_user_id,prompt,status,created_at\n1,2,\xff\xfe,ready,2025-10-15T00:00:00+00:00\n",
        b"",
    ],
)
def test_unreadable_csv_is_exit_2_with_one_line(tmp_path, capsys, content):
    (tmp_path / "bad.csv").write_bytes(content)
    assert main(["sweep", "--videos", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit: error: videos file") and "not a readable CSV" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags", [[], ["--in-memory"]], ids=["streamed", "in-memory"])
def test_a_parquet_written_from_a_normalised_frame_is_checked_again(tmp_path, capsys, flags):
    # pandas writes `attrs`, normalisation's mark among them, into the file and reads them back:
    # the mark must not vouch for values written, or edited, since.
    videos = normalise_videos(synthetic_videos(200, seed=7, users=5, days=2))
    videos.loc[3, "status"] = "archived"  # what no status may be; the frame keeps its mark
    videos.to_parquet(tmp_path / "v.parquet", index=False)
    code = main(["sweep", "--videos", str(tmp_path / "v.parquet"), "--out", str(tmp_path / "out"),
                 "--as-of", "2025-01-10T00:00:00+00:00", "--no-progress", *flags])
    assert code == 2
    assert "column 'status' has unknown value(s) ['archived']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

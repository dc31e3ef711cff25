"""CLAIMFIRST_KEY_PARAMS in the audit: the sweep, the cleanup's plan and `audit sql` group videos
as the service's claim does, on files, SQLite and PostgreSQL (pushdown included)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from audit.cli import main
from audit.detect import mark_duplicates
from audit.frames import SchemaError, normalise_videos
from audit.sources import load_database, load_files
from audit.sources.base import Period
from service.prompt_key import key_with_params, prompt_key
from service.stores.engine import make_engine, migrate
from service.stores.models import Video
from tests.service.app_client import running_app

PROMPT = "A lighthouse in a storm at night"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NAMES = ("duration_seconds",)
# The history of one user's requests, each of which made a video (the old bot checked nothing).
# The numbers are written as clients and jsonb write them: 5 and 5.0, 1e300 and its long form.
HISTORY = [
    {"duration_seconds": 5, "scale": 1e300},
    {"duration_seconds": 10},
    {"seed": 1, "duration_seconds": 5.0},
    None,
    {"seed": 2},
    {"duration_seconds": 4.733933995704578e16},
    {"duration_seconds": 47339339957045780, "seed": 3},
]
WITH_PARAMS = {3, 5, 7}  # ids: 3 repeats 1 (5 s), 5 repeats 4 (no duration), 7 repeats 6
WITHOUT_PARAMS = {2, 3, 4, 5, 6, 7}  # one prompt: every video after the first


def history_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": range(1, len(HISTORY) + 1), "tg_user_id": 42, "prompt": PROMPT, "status": "ready",
        "created_at": [(T0 + timedelta(minutes=i)).isoformat() for i in range(len(HISTORY))],
        "params": [None if p is None else json.dumps(p) for p in HISTORY],
    })


def duplicates(videos: pd.DataFrame) -> set[int]:
    marked = mark_duplicates(videos)
    return {int(i) for i in marked.loc[marked["is_duplicate"], "id"]}


def test_the_audit_flags_exactly_what_the_service_refuses(sqlite_url: str) -> None:
    with running_app(sqlite_url, key_params="duration_seconds") as client:
        answers = [client.post("/create", json={"tg_user_id": 42, "prompt": PROMPT,
                                                **({} if p is None else {"params": p})}) for p in HISTORY]
    refused = {i for i, answer in enumerate(answers, start=1) if answer.status_code == 409}
    assert refused == WITH_PARAMS, [a.text for a in answers]
    videos = normalise_videos(history_frame(), key_params=NAMES)
    assert duplicates(videos) == WITH_PARAMS
    # And each row's key is the one the service claimed with.
    keys = [key_with_params(prompt_key(PROMPT), p, NAMES) for p in HISTORY]
    assert list(videos.sort_values("id")["prompt_key"]) == keys
    assert duplicates(normalise_videos(history_frame())) == WITHOUT_PARAMS


def test_files_swept_with_and_without_key_params(tmp_path) -> None:
    path = tmp_path / "videos.csv"
    history_frame().to_csv(path, index=False)
    assert duplicates(load_files(path, period=Period(key_params=NAMES)).videos) == WITH_PARAMS
    assert duplicates(load_files(path, period=Period()).videos) == WITHOUT_PARAMS


def test_a_params_value_that_is_not_an_object_is_a_schema_error() -> None:
    frame = history_frame()
    frame.loc[1, "params"] = "[5]"
    with pytest.raises(SchemaError, match="column 'params' has a value that is not a JSON object"):
        normalise_videos(frame, key_params=NAMES)


def seed(url: str, *, stored_keys: tuple[str, ...]) -> None:
    """The history in the service's schema, each row's key stored as a service with
    CLAIMFIRST_KEY_PARAMS=`stored_keys` stored it."""
    engine = make_engine(url)
    try:
        migrate(engine)
        sqlite = engine.dialect.name == "sqlite"
        rows = [{"id": i, "tg_user_id": 42, "prompt": PROMPT, "enhanced_prompt": PROMPT, "status": "ready",
                 "created_at": T0 + timedelta(minutes=i - 1), "updated_at": T0 + timedelta(minutes=i - 1),
                 "prompt_key": key_with_params(prompt_key(PROMPT), p, stored_keys), "attempt": 1,
                 "cost_usd": Decimal("4.00"), "params": json.dumps(p) if sqlite and p is not None else p}
                for i, p in enumerate(HISTORY, start=1)]
        with engine.begin() as conn:
            conn.execute(sa.insert(Video), rows)
    finally:
        engine.dispose()


def test_a_service_database_swept_with_its_key_params(db_url: str) -> None:
    seed(db_url, stored_keys=NAMES)
    loaded = load_database(db_url, period=Period(key_params=NAMES))
    # On PostgreSQL the stored keys (jsonb read back: 1e300 comes back written out in full)
    # check out against the service's rule, so the search runs in SQL.
    assert loaded.pushed_down == db_url.startswith("postgresql") and not loaded.notes
    assert duplicates(loaded.videos) == WITH_PARAMS
    # Swept without them, the stored keys disagree with the plain rule: recomputed, and said so.
    plain = load_database(db_url, period=Period())
    assert duplicates(plain.videos) == WITHOUT_PARAMS
    assert not plain.pushed_down
    if db_url.startswith("postgresql"):
        assert "stored prompt_key differs" in plain.notes[0]


def test_the_cli_takes_key_params_from_the_flag_or_the_services_variable(db_url: str, tmp_path, monkeypatch,
                                                                          capsys) -> None:
    seed(db_url, stored_keys=NAMES)
    common = ["sweep", "--database-url", db_url, "--since", "2026-11-30", "--as-of", "2026-12-01", "--no-progress"]
    assert main([*common, "--key-params", "duration_seconds", "--out", str(tmp_path / "flag")]) == 0
    monkeypatch.setenv("CLAIMFIRST_KEY_PARAMS", "duration_seconds")
    assert main([*common, "--out", str(tmp_path / "env")]) == 0
    for run in ("flag", "env"):
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        assert {d["video_id"] for d in summary["duplicates"]} == WITH_PARAMS
    monkeypatch.setenv("CLAIMFIRST_KEY_PARAMS", "")
    assert main([*common, "--out", str(tmp_path / "none")]) == 0
    assert json.loads((tmp_path / "none" / "summary.json").read_text())["duplicate_count"] == len(WITHOUT_PARAMS)
    # The cleanup's plan follows the same rule.
    capsys.readouterr()
    assert main(["cleanup", "--database-url", db_url, "--since", "2026-11-30", "--as-of", "2026-12-01",
                 "--no-progress", "--key-params", "duration_seconds"]) == 0
    assert capsys.readouterr().out.startswith(f"{len(WITH_PARAMS)} duplicate(s) to mark")


def test_a_bad_key_params_flag_is_exit_2_in_one_line(capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sql", "--dialect", "sqlite", "--key-params", "duration seconds"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a parameter name" in err
    monkeypatch.setenv("CLAIMFIRST_KEY_PARAMS", "prompt")
    with pytest.raises(SystemExit):
        main(["sql", "--dialect", "sqlite"])
    assert "'prompt' is always the key" in capsys.readouterr().err


def test_audit_sql_on_the_services_keys_finds_what_the_service_would_refuse(sqlite_url: str, capsys) -> None:
    seed(sqlite_url, stored_keys=NAMES)
    assert main(["sql", "--dialect", "sqlite", "--key-params", "duration_seconds"]) == 0
    sql = capsys.readouterr().out
    assert "key_with_params(prompt_key(prompt), params, KEY_PARAMS)" in sql and "duration_seconds" in sql
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        found = {row[0] for row in conn.execute(sql)}
    assert found == WITH_PARAMS


def test_keys_stored_without_params_are_rekeyed_for_a_sweep_with_them(db_url: str) -> None:
    # A service that ran without the setting stored plain keys; swept with it (a period, so the
    # generating rows are read beside it), the keys are recomputed with the params.
    seed(db_url, stored_keys=())
    loaded = load_database(db_url, period=Period(since=T0, until=T0 + timedelta(hours=1), key_params=NAMES))
    assert not loaded.pushed_down and duplicates(loaded.videos) == WITH_PARAMS

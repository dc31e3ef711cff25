"""``python -m audit sql`` prints the rule; that printed text, run on real PostgreSQL, DuckDB and
SQLite over a table with prompt keys, finds exactly what pandas finds."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.cli import main
from audit.detect import mark_duplicates
from audit.frames import normalise_videos
from audit.synthetic import synthetic_videos
from tests.audit.conftest import VIDEOS_CSV


def printed_sql(capsys, *args: str) -> str:
    assert main(["sql", *args]) == 0
    return capsys.readouterr().out


def pandas_answer(videos: pd.DataFrame, window: timedelta) -> list[tuple[int, int, int]]:
    marked = mark_duplicates(videos, window=window)
    dups = marked[marked["is_duplicate"]]
    return [(int(r.id), int(r.previous_id), int(r.original_id)) for r in dups.itertuples(index=False)]


def keyed(videos: pd.DataFrame) -> pd.DataFrame:
    """The table the SQL expects: the rule's columns, prompt keys computed by the audit."""
    return normalise_videos(videos)[["id", "tg_user_id", "prompt_key", "status", "created_at"]]


def _fixture_and_volume() -> list[pd.DataFrame]:
    return [keyed(pd.read_csv(VIDEOS_CSV, dtype=str)), keyed(synthetic_videos(20_000, seed=4, users=300, days=10))]


def run_duckdb(table: pd.DataFrame, sql: str) -> list[tuple]:
    with duckdb.connect() as conn:
        conn.register("frame", table)
        conn.execute("CREATE TABLE videos AS SELECT * FROM frame")
        return [tuple(int(v) for v in row[:3]) for row in conn.execute(sql).fetchall()]


def run_sqlite(table: pd.DataFrame, sql: str) -> list[tuple]:
    with sqlite3.connect(":memory:") as conn:
        # ISO text in UTC, as the service's SQLite tables store it.
        stored = table.assign(created_at=table["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S.%f"))
        stored.to_sql("videos", conn, index=False)
        return [tuple(int(v) for v in row[:3]) for row in conn.execute(sql).fetchall()]


def test_printed_sql_on_postgresql_matches_pandas(pg_url, capsys):
    engine = sa.create_engine(pg_url)
    try:
        for window_hours in (24, 1.5):
            sql = printed_sql(capsys, "--dialect", "postgresql", "--window-hours", str(window_hours))
            for table in _fixture_and_volume():
                with engine.begin() as conn:
                    conn.execute(sa.text("DROP TABLE IF EXISTS videos"))
                    conn.execute(sa.text(
                        "CREATE TABLE videos (id bigint PRIMARY KEY, tg_user_id bigint, prompt_key text, "
                        "status text, created_at timestamptz)"
                    ))
                    conn.execute(
                        sa.text("INSERT INTO videos VALUES (:id, :tg_user_id, :prompt_key, :status, :created_at)"),
                        [{**r, "created_at": r["created_at"].to_pydatetime()} for r in table.to_dict("records")],
                    )
                    got = [tuple(int(v) for v in row[:3]) for row in conn.exec_driver_sql(sql)]
                expected = pandas_answer(table, timedelta(hours=window_hours))
                assert got == expected and len(expected) > 0
    finally:
        engine.dispose()


@pytest.mark.parametrize(("dialect", "run"), [("duckdb", run_duckdb), ("sqlite", run_sqlite)])
def test_printed_sql_on_embedded_engines_matches_pandas(capsys, dialect, run):
    sql = printed_sql(capsys, "--dialect", dialect)
    for table in _fixture_and_volume():
        assert run(table, sql) == pandas_answer(table, timedelta(hours=24))


T0 = datetime(2025, 10, 15, tzinfo=UTC)
rows = st.lists(
    st.tuples(
        st.integers(1, 2),
        st.sampled_from(["Cat video", "cat  video.", "Dog video"]),
        st.sampled_from(["ready", "failed", "generating"]),
        st.integers(0, 48),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows, window_hours=st.sampled_from([1, 24]))
def test_duckdb_and_sqlite_agree_with_pandas_on_random_histories(rows, window_hours):
    # Whole hours on a small range: ties on created_at (the id breaks them) and exact window edges.
    frame = pd.DataFrame(
        [{"id": len(rows) - i, "tg_user_id": u, "prompt": p, "status": s, "created_at": T0 + timedelta(hours=h)}
         for i, (u, p, s, h) in enumerate(rows)],
        columns=["id", "tg_user_id", "prompt", "status", "created_at"],
    )
    table = keyed(frame)
    window = timedelta(hours=window_hours)
    from audit.rule_sql import rule_sql

    expected = pandas_answer(table, window)
    assert run_duckdb(table, rule_sql("duckdb", window=window)) == expected
    assert run_sqlite(table, rule_sql("sqlite", window=window)) == expected


def test_bad_dialect_or_table_is_exit_2_with_one_line(capsys):
    assert main(["sql", "--dialect", "duckdb", "--table", "videos; DROP TABLE videos"]) == 2
    err = capsys.readouterr().err
    assert err == "audit: error: not a table name: 'videos; DROP TABLE videos'\n"
    with pytest.raises(SystemExit) as exit_:
        main(["sql", "--dialect", "mysql"])
    assert exit_.value.code == 2


def test_the_window_is_written_exactly():
    from audit.rule_sql import rule_sql

    assert "<= INTERVAL '86400 seconds'" in rule_sql("postgresql")
    assert "<= INTERVAL '90500000 microseconds'" in rule_sql("duckdb", window=timedelta(seconds=90.5))
    assert "<= 5400000" in rule_sql("sqlite", window=timedelta(hours=1.5))  # epoch milliseconds

"""The stores' Idempotency-Key primitives on SQLite and PostgreSQL: begin, finish, release, forget."""

from __future__ import annotations

from datetime import timedelta

from tests.stores import age

WINDOW = timedelta(hours=24)
IN_PROGRESS = timedelta(seconds=20)


def begin(store, key: str = "k1", fingerprint: str = "f" * 64, scope: str = "user:1"):
    return store.begin_key(scope, key, fingerprint, WINDOW, IN_PROGRESS)


def test_a_new_key_is_taken_then_seen_in_progress_then_finished(store) -> None:
    first = begin(store)
    assert first.token is not None
    held = begin(store)
    assert (held.token, held.fingerprint, held.status_code, held.response_body) == (None, "f" * 64, None, None)
    assert store.finish_key("user:1", "k1", first.token, 202, '{"video_id": 1}')
    done = begin(store)
    assert (done.token, done.status_code, done.response_body) == (None, 202, '{"video_id": 1}')
    assert begin(store, fingerprint="e" * 64).fingerprint == "f" * 64  # the caller compares


def test_keys_are_per_scope(store) -> None:
    assert begin(store, scope="user:1").token is not None
    assert begin(store, scope="user:2").token is not None
    assert begin(store, scope="key:0123456789abcdef").token is not None


def test_a_released_key_runs_again(store) -> None:
    first = begin(store)
    store.release_key("user:1", "k1", first.token)
    assert begin(store).token is not None


def test_an_abandoned_in_progress_key_is_taken_over_and_fences_its_old_holder(store) -> None:
    first = begin(store)
    age(store.url, seconds=IN_PROGRESS.total_seconds() - 5)
    assert begin(store).token is None  # a live, slow holder keeps it
    age(store.url, seconds=10)
    second = begin(store)
    assert second.token is not None and second.token != first.token
    assert not store.finish_key("user:1", "k1", first.token, 202, '"stale"')
    store.release_key("user:1", "k1", first.token)  # a no-op: the row is the successor's
    assert store.finish_key("user:1", "k1", second.token, 202, '"fresh"')
    assert begin(store).response_body == '"fresh"'


def test_a_finished_key_lasts_the_window_then_is_new_again_and_forgotten(store) -> None:
    store.finish_key("user:1", "k1", begin(store).token, 202, "{}")
    store.finish_key("user:1", "old", begin(store, key="old").token, 202, "{}")
    age(store.url, hours=23, minutes=59)
    assert begin(store).token is None
    age(store.url, minutes=2)
    assert store.forget_keys(WINDOW) == 2
    assert begin(store, fingerprint="e" * 64).token is not None  # another body, a new request now
    assert store.forget_keys(WINDOW) == 0

"""The rules on generation parameters, without a database: what `service.params` accepts, and
the key `CLAIMFIRST_KEY_PARAMS` makes of them (`service.prompt_key.key_with_params`)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from service import Settings
from service.params import MAX_PARAMS_BYTES, check_params
from service.prompt_key import PARAMS_SEPARATOR, canonical_json, key_with_params, prompt_key

NAMES = ("duration_seconds",)


def test_params_are_copied_as_plain_json() -> None:
    given_params = {"duration_seconds": 5, "aspect_ratio": "16:9", "tags": ["a", {"b": None}], "loop": True}
    checked = check_params(given_params)
    assert checked == given_params and checked is not given_params
    assert check_params(None) is None


@pytest.mark.parametrize(("params", "message"), [
    ([1], "must be a JSON object"),
    ("duration=5", "must be a JSON object"),
    ({"prompt": "another text"}, "'prompt' is the request's own field"),
    ({"1st": 1}, "is not 1-64 of"),
    ({"with space": 1}, "is not 1-64 of"),
    ({"x" * 65: 1}, "is not 1-64 of"),
    ({"x": float("nan")}, "not a JSON number"),
    ({"x": float("inf")}, "not a JSON number"),
    ({"x": "a\x00b"}, "NUL"),
    ({"x": {"a\x00": 1}}, "NUL"),
    ({"x": "\ud800"}, "lone surrogate"),
    ({"x": {"y": {"z": {"w": {}}}}}, "nested deeper than 4"),
    ({"x": [[[[1]]]]}, "nested deeper than 4"),
    ({"x": (1, 2)}, "is not a JSON value"),
    ({"x": {1: "a"}}, "is not text"),
    ({"x": "é" * (MAX_PARAMS_BYTES // 2)}, "over the limit of 4096"),
])
def test_bad_params_are_refused_with_the_reason(params: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_params(params)


def test_the_size_bound_is_on_compact_utf8_json() -> None:
    # {"x":"…"} is 8 bytes around the text.
    assert check_params({"x": "a" * (MAX_PARAMS_BYTES - 8)}) is not None
    with pytest.raises(ValueError, match="4097 bytes"):
        check_params({"x": "a" * (MAX_PARAMS_BYTES - 7)})


def test_without_key_params_the_key_is_exactly_the_prompts() -> None:
    key = prompt_key("A cat surfing!")
    assert key_with_params(key, {"duration_seconds": 5}, ()) == key
    assert key_with_params(key, None, NAMES) == key
    # Named, but not sent: the plain key, so turning the setting on changes no such request's key.
    assert key_with_params(key, {"seed": 1}, NAMES) == key


def test_the_named_params_follow_the_prompt_key_canonically() -> None:
    key = key_with_params("a cat", {"seed": 3, "duration_seconds": 5.0, "fps": 24}, ("fps", "duration_seconds"))
    assert key == 'a cat\x1f{"duration_seconds":5,"fps":24}'
    same = key_with_params("a cat", {"fps": 24.0, "duration_seconds": 5, "seed": 4}, ("duration_seconds", "fps"))
    assert same == key


@pytest.mark.parametrize(("one", "other"), [
    (5, 5.0), (5, 5e0), (0, -0.0), (1e300, 10**300), (0.1, 0.1), (1.5e-7, 0.00000015),
    ({"b": 1, "a": [1, 2]}, {"a": [1.0, 2], "b": 1}), ("é", "é"),
])
def test_equal_values_are_one_key(one: object, other: object) -> None:
    assert canonical_json(one) == canonical_json(other)


@pytest.mark.parametrize(("one", "other"), [
    (1, True), (0, False), (0, None), (5, "5"), ([1, 2], [2, 1]), (0.1, 0.10000000000000002), ({"a": 1}, {"A": 1}),
])
def test_other_values_are_other_keys(one: object, other: object) -> None:
    assert canonical_json(one) != canonical_json(other)


@given(st.text())
def test_a_key_with_params_never_equals_a_plain_prompt_key(text: str) -> None:
    # U+001F is whitespace to Python: prompt_key never keeps it, so no prompt can spell a key with params.
    assert PARAMS_SEPARATOR not in prompt_key(text + PARAMS_SEPARATOR + text)
    assert key_with_params(prompt_key(text), {"duration_seconds": 5}, NAMES) != prompt_key(text)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=10))
def test_a_stored_value_read_back_gives_the_same_key(value: object) -> None:
    # SQLite keeps JSON text (json.dumps, json.loads); jsonb keeps numbers as decimals and writes
    # them out in full (4.733933995704578e+16 comes back as the integer 47339339957045780).
    key = canonical_json(value)
    assert canonical_json(json.loads(json.dumps(value))) == key
    assert canonical_json(json.loads(json.dumps(_as_jsonb_writes(value)))) == key


def _as_jsonb_writes(value: object) -> object:
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        return json.loads(text)
    if isinstance(value, list):
        return [_as_jsonb_writes(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_jsonb_writes(v) for k, v in value.items()}
    return value


def test_key_params_setting_is_a_sorted_set_of_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMFIRST_KEY_PARAMS", " fps, duration_seconds,fps ")
    assert Settings().key_params == ("duration_seconds", "fps")
    monkeypatch.setenv("CLAIMFIRST_KEY_PARAMS", "")
    assert Settings().key_params == ()
    for bad in ("duration seconds", "a,,b", "prompt", "9lives"):
        monkeypatch.setenv("CLAIMFIRST_KEY_PARAMS", bad)
        with pytest.raises(ValidationError, match="key_params"):
            Settings()

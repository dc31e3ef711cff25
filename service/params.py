"""Generation parameters: the JSON object a `/create` may carry beside its prompt.

They go to the provider as they are (Replicate's input is `{"prompt": prompt, **params}`), are
stored on the video (`videos.params`) and come back on `GET /videos/{id}`. They are part of the
duplicate key only for the names `CLAIMFIRST_KEY_PARAMS` lists (`service.prompt_key.key_with_params`).

`check_params` is the one gate, for the HTTP body and for `ClaimFirst.create` alike. The limits,
and why each:

- **an object** of at most `MAX_PARAMS_BYTES` (4 KiB) as compact UTF-8 JSON: a model's inputs
  (duration, aspect ratio, seed, a negative prompt) take a few hundred bytes; the bound keeps a
  row, an Idempotency-Key fingerprint and a provider request small whatever a client sends;
- **top-level names** `[A-Za-z_][A-Za-z0-9_]{0,63}`: Replicate's inputs are a model's Python
  argument names, and `CLAIMFIRST_KEY_PARAMS` lists them comma-separated; never `prompt`, which
  is the request's own field (a param would replace the text the claim was keyed on);
- **nesting** at most `MAX_PARAMS_DEPTH` containers deep, the object itself counted: the
  encoders and the canonical key recurse, and no model input needs more;
- **values** JSON's own: text, finite numbers, true/false, null, arrays, objects. No NaN or
  Infinity (not JSON; PostgreSQL's `jsonb` refuses them), no NUL (U+0000, which `jsonb` and
  `text` refuse) and no lone surrogate (not text) in any string, names included.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_PARAMS_BYTES", "MAX_PARAMS_DEPTH", "PARAM_NAME", "check_params", "params_json"]

MAX_PARAMS_BYTES = 4096
MAX_PARAMS_DEPTH = 4
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_RESERVED = frozenset({"prompt"})


def params_json(params: Mapping[str, Any]) -> str:
    """Compact JSON text of checked params: what is measured against the size bound and what
    SQLite stores."""
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def check_params(params: object) -> dict[str, Any] | None:
    """`params` as a plain JSON object (a copy), None for None; ValueError naming the first
    problem otherwise."""
    if params is None:
        return None
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a JSON object, not {_kind(params)}")
    for name in params:
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            raise ValueError(f"params: name {str(name)[:70]!r} is not 1-64 of A-Z a-z 0-9 _ (not starting with a digit)")
        if name in _RESERVED:
            raise ValueError("params: 'prompt' is the request's own field, not a parameter")
    copied = _checked(params, 1, "params")
    size = len(params_json(copied).encode("utf-8"))
    if size > MAX_PARAMS_BYTES:
        raise ValueError(f"params are {size} bytes as compact JSON, over the limit of {MAX_PARAMS_BYTES}")
    return copied  # type: ignore[no-any-return]


def _checked(value: object, depth: int, where: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} is not a JSON number")
        return value
    if isinstance(value, str):
        return _text(value, where)
    if isinstance(value, (Mapping, list)):
        if depth > MAX_PARAMS_DEPTH:
            raise ValueError(f"{where}: nested deeper than {MAX_PARAMS_DEPTH} levels")
        if isinstance(value, list):
            return [_checked(item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value)]
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: the name {key!r} is not text")
            copied[_text(key, where)] = _checked(item, depth + 1, f"{where}.{key[:64]}")
        return copied
    raise ValueError(f"{where}: {_kind(value)} is not a JSON value")


def _text(value: str, where: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{where}: contains a NUL character (U+0000)")
    if _SURROGATE.search(value):
        raise ValueError(f"{where}: contains a lone surrogate (U+D800..U+DFFF), which is not text")
    return value


def _kind(value: object) -> str:
    return {list: "an array", str: "text", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__)

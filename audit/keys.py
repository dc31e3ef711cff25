"""Prompt keys for a whole column: `service.prompt_key.prompt_key`, in Arrow's kernels.

The key is defined in Python (NFKC, casefold, whitespace runs to one space, strip, trailing
``. ! ? …`` stripped) and the service and audit share that one function. A 1 M-row history
has hundreds of thousands of distinct prompts, and calling it on each took over a second, so
the prompts that are pure ASCII (nearly all of them) are keyed by Arrow's string kernels, a
transcription that holds only for ASCII:

- NFKC leaves ASCII unchanged, and ``casefold`` of ASCII is ``lower``;
- Python's ``\\s`` on ASCII is ``[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f ]`` (`str.isspace`), written
  out because RE2's ``\\s`` omits ``\\x0b`` and ``\\x1c-\\x1f``;
- after the runs become one space, the only whitespace left is ``" "``, so the strip and the
  trailing noise (a trim of ``" .!?"``) need nothing else.

Every other prompt goes through `prompt_key` itself, once per distinct text. A hypothesis test holds the two paths
equal on text drawn from every ASCII character and some that are not.

`keys_with_params` then appends the generation parameters `CLAIMFIRST_KEY_PARAMS` names, with
the service's own `key_with_params`, row by row, but only on the rows whose ``params`` hold one
of those names (a history without params, or without the setting, pays nothing).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from service.prompt_key import key_with_params, prompt_key

__all__ = ["prompt_keys", "prompt_keys_arrow", "keys_with_params"]

_ASCII_WHITESPACE_RUN = r"[\t\n\x0b\x0c\r\x1c-\x1f ]+"
# Trailing noise, ``[ .!?]+$``: a trim by a set of characters, ten times cheaper than RE2.
_ASCII_TRAILING_NOISE = " .!?"


def _to_fold(text: pa.Array) -> pa.Array:
    """The values the whitespace rewrite may change: those holding two spaces in a row or a
    character that is not printable ASCII (every whitespace but ``" "`` is a control
    character; the other controls are rewritten to themselves). Plain kernels, not a regex:
    matching was a fifth of the keying, and a history's prompts have neither on nearly
    every row, so RE2 rewrites only the few."""
    return pc.or_(pc.invert(pc.ascii_is_printable(text)), pc.match_substring(text, "  "))


def _ascii_keys(prompts: pa.Array) -> pa.Array:
    text = pc.ascii_lower(prompts)
    touched = _to_fold(text)
    if pc.any(touched).as_py():
        fixed = pc.replace_substring_regex(pc.filter(text, touched), _ASCII_WHITESPACE_RUN, " ")
        text = pc.replace_with_mask(text, touched, fixed)
    text = pc.ascii_trim(text, " ")
    return pc.ascii_rtrim(text, _ASCII_TRAILING_NOISE)


def prompt_keys(prompts: pd.Series) -> pd.Series:
    """``prompt_key`` of every value of ``prompts`` (text, no missing values), same index.

    Stays in Arrow from end to end (`prompt_keys_arrow`): a 1 M-row column of Python strings
    in between cost as much as the keying.
    """
    values = pa.array(prompts.astype(str), type=pa.string()) if len(prompts) else pa.array([], pa.string())
    keyed = prompt_keys_arrow(values)
    return pd.Series(keyed.to_pandas().array, index=prompts.index, dtype=str)


def prompt_keys_arrow(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`prompt_keys` of an Arrow string array without missing values, as an Arrow array: for
    `audit.stream`, whose frames are Arrow from the CSV reader to the spill.

    ASCII values are keyed row by row: the kernels are linear and cheap, cheaper than the
    dictionary encoding that would key each distinct prompt once (a 500 k-row frame of a
    synthetic history has 300 k distinct prompts; 0.13 s -> 0.03 s). The others, through
    `prompt_key`, once per distinct text."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    keys = _ascii_keys(values)
    other = pc.invert(pc.string_is_ascii(values))
    positions = np.flatnonzero(other.to_numpy(zero_copy_only=False))
    if len(positions):
        known: dict[str, str] = {}
        texts = values.take(pa.array(positions)).to_pylist()
        fixed = [known[text] if text in known else known.setdefault(text, prompt_key(text)) for text in texts]
        keys = pc.replace_with_mask(keys, other, pa.array(fixed, type=pa.string()))
    return keys


def keys_with_params(keys: pd.Series, params: pd.Series, names: Collection[str]) -> pd.Series:
    """``keys`` (from `prompt_keys`) with the ``names`` of each row's ``params`` appended as the
    service appends them. A value of ``params`` is an object, its JSON text (files, SQLite) or
    missing; ValueError for text that is not a JSON object or null."""
    if not names or not len(keys):
        return keys
    values = params.to_numpy(dtype=object)
    present = np.flatnonzero(pd.notna(params).to_numpy(dtype=bool))
    if not len(present):
        return keys
    out = keys.to_numpy(dtype=object).copy()
    for row in present:
        value = values[row]
        if isinstance(value, str):
            value = json.loads(value)
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"not a JSON object: {str(values[row])[:60]!r}")
        out[row] = key_with_params(out[row], value, names)
    return pd.Series(out, index=keys.index, dtype=str)

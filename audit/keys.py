"""Prompt keys for a whole column: `service.prompt_key.prompt_key`, once per distinct prompt.

The key is defined in Python (NFKC, casefold, whitespace runs to one space, strip, trailing
``. ! ? …`` stripped) and the service and audit share that one function. A 1 M-row history
has hundreds of thousands of distinct prompts, and calling it on each took over a second, so
the prompts that are pure ASCII (nearly all of them) are keyed by Arrow's string kernels, a
transcription that holds only for ASCII:

- NFKC leaves ASCII unchanged, and ``casefold`` of ASCII is ``lower``;
- Python's ``\\s`` on ASCII is ``[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f ]`` (`str.isspace`), written
  out because RE2's ``\\s`` omits ``\\x0b`` and ``\\x1c-\\x1f``;
- after the runs become one space, the only whitespace left is ``" "``, so the strip and the
  trailing noise need nothing else.

Every other prompt goes through `prompt_key` itself. A hypothesis test holds the two paths
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

__all__ = ["prompt_keys", "keys_with_params"]

_ASCII_WHITESPACE_RUN = r"[\t\n\x0b\x0c\r\x1c-\x1f ]+"
_ASCII_TRAILING_NOISE = r"[ .!?]+$"


# What the two rewrites can change: a whitespace run that is not one space, a trailing
# noise character. Matching is several times cheaper than rewriting (RE2 allocates every
# output), and a 1 M-row history's keys have neither on nearly every row.
_ASCII_WHITESPACE_TO_FOLD = r"[\t\n\x0b\x0c\r\x1c-\x1f]|  "
_ASCII_ENDS_IN_NOISE = r"[ .!?]$"


def _rewritten(text: pa.Array, probe: str, pattern: str, replacement: str) -> pa.Array:
    """``replace_substring_regex(text, pattern, replacement)``, run only on the values
    ``probe`` matches: ``probe`` matches every value the rewrite would change."""
    touched = pc.match_substring_regex(text, probe)
    if not pc.any(touched).as_py():
        return text
    fixed = pc.replace_substring_regex(pc.filter(text, touched), pattern, replacement)
    return pc.replace_with_mask(text, touched, fixed)


def _ascii_keys(prompts: pa.Array) -> pa.Array:
    text = pc.ascii_lower(prompts)
    text = _rewritten(text, _ASCII_WHITESPACE_TO_FOLD, _ASCII_WHITESPACE_RUN, " ")
    text = pc.ascii_trim(text, " ")
    return _rewritten(text, _ASCII_ENDS_IN_NOISE, _ASCII_TRAILING_NOISE, "")


def prompt_keys(prompts: pd.Series) -> pd.Series:
    """``prompt_key`` of every value of ``prompts`` (text, no missing values), same index.

    Stays in Arrow from end to end (dictionary-encode, key the dictionary, take): a 1 M-row
    column of Python strings in between cost as much as the keying.
    """
    values = pa.array(prompts.astype(str), type=pa.string()) if len(prompts) else pa.array([], pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    distinct = encoded.dictionary
    other = pc.invert(pc.string_is_ascii(distinct))
    keys = _ascii_keys(distinct)
    positions = np.flatnonzero(other.to_numpy(zero_copy_only=False))
    if len(positions):
        fixed = [prompt_key(text) for text in distinct.take(pa.array(positions)).to_pylist()]
        keys = pc.replace_with_mask(keys, other, pa.array(fixed, type=pa.string()))
    keyed = keys.take(encoded.indices)
    return pd.Series(keyed.to_pandas().array, index=prompts.index, dtype=str)


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

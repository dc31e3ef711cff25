"""The canonical DataFrames every source produces and every analysis consumes.

Two frames:

- **videos**: one row per generated video, the incident's columns (``id … updated_at``) plus
  ``prompt_key`` (computed with `service.prompt_key` when the source lacks it: external stores
  such as the user's Supabase only have the incident columns).
- **requests**: the bot's request log, ``request_id, received_at, tg_user_id, prompt,
  video_id`` (``video_id`` missing when the request produced no video).

`normalise_videos` / `normalise_requests` check the columns, coerce the types, and parse every
timestamp to UTC-aware. A naive timestamp is refused rather than assumed UTC: the incident's
data came from a bot running in one zone and a database in another, and guessing the zone
silently shifts every window by hours.

Each is normalised once: the frames they return carry a mark in ``DataFrame.attrs`` (pandas
keeps it through copies and row selections), and a marked frame is returned as it is. A
loader normalises, then `audit.run_audit` normalises again for callers that pass raw frames;
without the mark a 1 M-row sweep spent 42 % of its time doing it twice. Changing a marked
frame's prompts in place would leave its keys stale: re-key by clearing ``frame.attrs``.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audit.keys import keys_with_params, prompt_keys
from service.claim import STATUSES  # the status names live in one place: the claim

__all__ = [
    "AuditError",
    "SchemaError",
    "VIDEO_COLUMNS",
    "REQUIRED_VIDEO_COLUMNS",
    "REQUEST_COLUMNS",
    "STATUSES",
    "normalise_videos",
    "normalise_requests",
    "empty_videos",
    "adopt_canonical",
]


class AuditError(Exception):
    """Base of every error the audit reports to a user (the CLI prints it and exits 2)."""


class SchemaError(AuditError):
    """A source's columns or values do not fit the canonical frame."""


# Order matters only for output: reports and CSVs list columns in this order.
VIDEO_COLUMNS = [
    "id",
    "tg_user_id",
    "prompt",
    "enhanced_prompt",
    "duration_seconds",
    "category",
    "status",
    "video_url",
    "thumbnail_url",
    "created_at",
    "updated_at",
    "prompt_key",
]
# The rule needs only these; the rest are carried through when present.
REQUIRED_VIDEO_COLUMNS = ["id", "tg_user_id", "prompt", "status", "created_at"]
REQUEST_COLUMNS = ["request_id", "received_at", "tg_user_id", "prompt", "video_id"]
_NORMALISED = "audit.normalised"  # the attrs key of the mark (see the module docstring)
# The mark's value carries this process's token: pandas writes ``attrs`` into a Parquet file's
# metadata and reads them back, so a file written from a normalised frame (and edited since,
# or by anyone) would otherwise come back marked, and its values go unchecked.
_TOKEN = secrets.token_hex(8)


def _arrow_text(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"


def _arrow_utc(values: pd.Series) -> pd.Series | None:
    """Arrow's cast of ISO 8601 text with offsets, or None when it refuses any value (then
    pandas parses, and words the error). Where both accept a value they give the same
    instant; Arrow refuses what it cannot hold exactly (nanoseconds, for one). 0.2 s -> 0.02 s
    per column of 1 M rows."""
    if not _arrow_text(values):
        return None
    try:
        cast = pc.cast(pa.array(values), pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # `.array`: relabel with the input's index. A Series would be aligned to it instead, and a
    # filtered frame's index (not 0..n-1) would turn into missing values.
    return pd.Series(cast.to_pandas().array, index=values.index).dt.as_unit("us")


# An ISO 8601 time with a UTC offset: a time of day, then Z or ±HH[:MM]. The short ``+00``
# is how PostgreSQL (and so Supabase's CSV export) writes timestamptz. The time of day is
# required so a bare date's day ("2025-10-15") is not read as an offset of -15 h.
_WITH_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_INT64 = (-(2**63), 2**63 - 1)


def _all_with_offset(values: pd.Series) -> bool:
    """Whether every present value of an Arrow text column carries an offset, checked on the
    Arrow array as it is. `_utc` checks the stripped text; a raw value that matches matches
    stripped too (the pattern starts at a digit and ends the text), so only a column where
    some value does not match (one to refuse, or with whitespace after its offset) needs the
    stripped Python strings: building those cost 0.5 s per 1 M-row column."""
    if not _arrow_text(values):
        return False
    return bool(pc.all(pc.match_substring_regex(pa.array(values), _WITH_OFFSET)).as_py())


def _utc(values: pd.Series, column: str, source: str) -> pd.Series:
    """Parse ISO strings or datetimes to ``datetime64[us, UTC]``; refuse naive or bad values."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.as_unit("us")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        raise SchemaError(f"{source}: column {column!r} has naive timestamps; give a UTC offset")
    present = values.dropna()
    if len(present) and not _all_with_offset(values):
        text = present.astype(str).str.strip()
        # RE2 over the whole column (pandas ran Python's re per value: 2.6 s of a 1 M-row sweep).
        has_offset = pc.match_substring_regex(pa.array(text.to_numpy(dtype=object), type=pa.string()), _WITH_OFFSET)
        naive = pd.Series(~has_offset.to_numpy(zero_copy_only=False), index=text.index)
        if naive.any():
            example = text[naive].iloc[0]
            raise SchemaError(
                f"{source}: column {column!r} has a timestamp without a UTC offset ({example!r}); "
                "write it as ISO 8601 with an offset, e.g. 2025-10-15T05:37:00+00:00"
            )
    fast = _arrow_utc(values)
    if fast is not None:
        return fast
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError) as exc:
        raise SchemaError(f"{source}: column {column!r} has a value that is not a timestamp: {exc}") from exc
    return parsed.dt.as_unit("us")


def _integer_text(values: pd.Series, *, nullable: bool) -> pd.Series | None:
    """Arrow's cast of decimal integer text, or None when any value is something else (then
    `_integers` takes the general path, which also words the error). `pd.to_numeric` on 1 M
    strings took 0.6 s; the cast takes a few milliseconds, and accepts only what
    `pd.to_numeric` turns into the same integer."""
    if not _arrow_text(values):
        return None
    try:
        cast = pc.cast(pa.array(values), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if cast.null_count and not nullable:
        return None
    return pd.Series(cast.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).array, index=values.index).astype(
        "Int64" if nullable else "int64"
    )


def _integers(values: pd.Series, column: str, source: str, *, nullable: bool = False) -> pd.Series:
    if nullable and values.isna().all():  # a column the source lacks (filled with NA)
        return pd.Series(pd.NA, index=values.index, dtype="Int64")
    fast = _integer_text(values, nullable=nullable)
    if fast is not None:
        return fast
    if pd.api.types.is_float_dtype(values.dtype):
        values = values.astype("Float64")  # NaN (a database NULL read as float) becomes NA
    try:
        # Nullable dtypes keep integers exact: a float64 detour would round ids past 2**53.
        converted = pd.to_numeric(values, errors="raise", dtype_backend="numpy_nullable")
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"{source}: column {column!r} must hold integers: {exc}") from exc
    if not nullable and converted.isna().any():
        raise SchemaError(f"{source}: column {column!r} has empty values")
    present = converted.dropna()
    if pd.api.types.is_float_dtype(present.dtype) and (present % 1 != 0).any():
        raise SchemaError(f"{source}: column {column!r} must hold integers")
    # Past 64 bits pandas hands back UInt64, Python ints (object) or huge floats: out of every
    # store's range. Signed 64-bit dtypes are in range by construction, so the common case
    # skips the per-value check.
    if not pd.api.types.is_signed_integer_dtype(present.dtype):
        if pd.api.types.is_object_dtype(present.dtype) and not all(isinstance(v, int) for v in present):
            raise SchemaError(f"{source}: column {column!r} must hold integers")
        outside = [v for v in present if not _INT64[0] <= int(v) <= _INT64[1]]
        if outside:
            raise SchemaError(
                f"{source}: column {column!r} has a value outside the 64-bit integer range: {int(outside[0])}"
            )
    return converted.astype("Int64" if nullable else "int64")


def _sorted(frame: pd.DataFrame, keys: list) -> pd.DataFrame:
    """``frame`` in ascending order of ``keys`` (NumPy or Arrow arrays), stably, like
    ``sort_values(kind="stable")``; as it is when already in order (files usually are).
    Arrow sorts: pandas factorised the request ids (strings) to sort them, 0.4 s per 1 M.
    Keys that are all NumPy arrays are checked for order first: an Arrow sort to find the
    rows already in order was 0.1 s of each 430 k-row shard of the streaming sweep."""
    if all(isinstance(key, np.ndarray) for key in keys) and _ascending(keys):
        return frame.reset_index(drop=True)
    table = pa.table({str(i): key for i, key in enumerate(keys)})
    order = pc.sort_indices(table, sort_keys=[(str(i), "ascending") for i in range(len(keys))]).to_numpy()
    if (order[1:] > order[:-1]).all():
        return frame.reset_index(drop=True)
    return frame.take(order).reset_index(drop=True)


def _ascending(keys: list[np.ndarray]) -> bool:
    """Whether the rows are in ascending order of ``keys`` (ties allowed), compared
    lexicographically from the last key to the first."""
    in_order = np.ones(max(len(keys[0]) - 1, 0), dtype=bool) if keys else np.ones(0, dtype=bool)
    for key in reversed(keys):
        in_order = (key[1:] > key[:-1]) | ((key[1:] == key[:-1]) & in_order)
    return bool(in_order.all())


def _check_columns(frame: pd.DataFrame, required: list[str], source: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing column(s) {', '.join(missing)} (have: {', '.join(map(str, frame.columns))})"
        )


def empty_videos() -> pd.DataFrame:
    """A videos frame with no rows and the canonical dtypes."""
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in VIDEO_COLUMNS})
    frame["created_at"] = frame["created_at"].astype(str)
    return normalise_videos(frame)


def normalise_videos(frame: pd.DataFrame, *, source: str = "videos", key_params: Collection[str] = ()) -> pd.DataFrame:
    """Return the canonical videos frame: checked, typed, keyed, sorted by ``(created_at, id)``.

    ``key_params``: the parameter names `CLAIMFIRST_KEY_PARAMS` gave the service; each row's
    ``params`` column (when the source has one) then enters its key as it entered the claim's.
    Raises `SchemaError` with a one-line message naming the source and the column.
    """
    if frame.attrs.get(_NORMALISED) == f"videos {_TOKEN}":
        return frame
    _check_columns(frame, REQUIRED_VIDEO_COLUMNS, source)
    out = frame.copy()
    for column in VIDEO_COLUMNS:
        if column not in out.columns:
            out[column] = pd.NA
    out["id"] = _integers(out["id"], "id", source)
    if out["id"].duplicated().any():
        dup = out.loc[out["id"].duplicated(), "id"].iloc[0]
        raise SchemaError(f"{source}: column 'id' is not unique (id {dup} appears twice)")
    out["tg_user_id"] = _integers(out["tg_user_id"], "tg_user_id", source)
    out["duration_seconds"] = _integers(out["duration_seconds"], "duration_seconds", source, nullable=True)
    if out["prompt"].isna().any():
        raise SchemaError(f"{source}: column 'prompt' has empty values")
    out["prompt"] = out["prompt"].astype(str)
    out["status"] = out["status"].astype(str)
    unknown = sorted(set(out["status"].unique()) - set(STATUSES))
    if unknown:
        raise SchemaError(f"{source}: column 'status' has unknown value(s) {unknown}; expected {list(STATUSES)}")
    out["created_at"] = _utc(out["created_at"], "created_at", source)
    if out["created_at"].isna().any():
        raise SchemaError(f"{source}: column 'created_at' has empty values")
    out["updated_at"] = _utc(out["updated_at"], "updated_at", source)
    # Always recomputed: a stored key written by an older normalisation must not disagree
    # with the definition the service enforces today.
    # Keyed once per distinct prompt (resends repeat their text), ASCII ones vectorised.
    out["prompt_key"] = prompt_keys(out["prompt"])
    if key_params and "params" in out.columns:
        try:
            out["prompt_key"] = keys_with_params(out["prompt_key"], out["params"], key_params)
        except ValueError as exc:  # json's own errors are ValueErrors too
            raise SchemaError(f"{source}: column 'params' has a value that is not a JSON object: {exc}") from exc
    for column in ("enhanced_prompt", "category", "video_url", "thumbnail_url"):
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    extra = [c for c in out.columns if c not in VIDEO_COLUMNS]
    out = out[VIDEO_COLUMNS + extra]
    out = _sorted(out, [out["created_at"].array.asi8, out["id"].to_numpy()])
    out.attrs[_NORMALISED] = f"videos {_TOKEN}"
    return out


def normalise_requests(frame: pd.DataFrame, *, source: str = "requests", sort: bool = True) -> pd.DataFrame:
    """Return the canonical request log: checked, typed, sorted by ``received_at``. Without
    ``sort``, checked and typed alike but in the frame's order, unmarked: for `audit.stream`,
    which keeps each video's earliest time and nothing of the order (the sort was half the cost)."""
    if frame.attrs.get(_NORMALISED) == f"requests {_TOKEN}":
        return frame
    _check_columns(frame, REQUEST_COLUMNS, source)
    out = frame[REQUEST_COLUMNS].copy()
    out["request_id"] = out["request_id"].astype(str)
    out["received_at"] = _utc(out["received_at"], "received_at", source)
    if out["received_at"].isna().any():
        raise SchemaError(f"{source}: column 'received_at' has empty values")
    out["tg_user_id"] = _integers(out["tg_user_id"], "tg_user_id", source)
    out["prompt"] = out["prompt"].astype(str)
    out["video_id"] = _integers(out["video_id"], "video_id", source, nullable=True)
    if not sort:
        return out
    out = _sorted(out, [out["received_at"].array.asi8, pa.array(out["request_id"])])
    out.attrs[_NORMALISED] = f"requests {_TOKEN}"
    return out


def adopt_canonical(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Mark ``frame`` as a normalised ``"videos"`` or ``"requests"`` frame without checking it
    again: for `audit.stream`, whose shards are rows that `normalise_videos` and
    `normalise_requests` already checked and typed, batch by batch, and were put back in
    their canonical types. Videos are sorted by ``(created_at, id)`` as normalisation sorts them."""
    if kind == "videos":
        frame = _sorted(frame, [frame["created_at"].array.asi8, frame["id"].to_numpy()])
    elif kind != "requests":
        raise ValueError(f"unknown canonical frame {kind!r}")
    frame.attrs[_NORMALISED] = f"{kind} {_TOKEN}"
    return frame

"""The audit: which videos were duplicates, why (race or not), what they cost, and what each
fix would have saved, computed from the data.

Pure functions over DataFrames (normalise → key → window → classify → cost), shared by the
CLI (``python -m audit``) and the notebooks::

    loaded = audit.load_files("data/fixtures/videos.csv", "data/fixtures/requests.csv")
    result = audit.run_audit(loaded.videos, loaded.requests, as_of=AS_OF)
    result.summary["duplicate_count"], result.policies, result.race_windows

Modules: `frames` (canonical schema), `detect` (the rule), `visible` (what a check at an
instant saw), `classify` (sequential / race, in-flight windows), `policies`, `stuck`, `near`,
`pipeline` (`run_audit`), `sources` (CSV, SQLAlchemy, Supabase), `report`, `cleanup`, `cli`,
`synthetic`, `replay` (the request log against the service).
"""

import importlib

# Every public name is loaded on first use (PEP 562): `import audit.stream.shard` in a sweep's
# worker process runs this file first, and importing all of these here gave each worker the
# whole audit (plotly, rapidfuzz, the replay's httpx) for the few modules a shard runs.
_LAZY = {
    "audit.classify": ("DEFAULT_GENERATION_RANGE", "classify_duplicates", "race_windows", "request_times"),
    "audit.detect": ("DEFAULT_WINDOW", "duplicate_pairs", "mark_duplicates"),
    "audit.frames": ("AuditError", "SchemaError", "normalise_requests", "normalise_videos"),
    "audit.near": ("DEFAULT_SIMILARITY", "near_duplicates"),
    "audit.pipeline": ("DEFAULT_COST_PER_VIDEO", "AuditResult", "run_audit"),
    "audit.policies": ("DEFAULT_PENDING_GAP", "POLICIES", "POLICY_ROWS", "compare_policies", "prevented_by"),
    # The database and Supabase loaders are themselves loaded on first use (see `audit.sources`).
    "audit.sources": ("Loaded", "SourceError", "load_files", "detect_duplicates_sql", "load_database", "load_supabase"),
    "audit.sources.base": ("Period",),
    "audit.stuck": ("DEFAULT_LEASE", "stuck_claims"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "AuditError",
    "AuditResult",
    "DEFAULT_COST_PER_VIDEO",
    "DEFAULT_GENERATION_RANGE",
    "DEFAULT_LEASE",
    "DEFAULT_PENDING_GAP",
    "DEFAULT_SIMILARITY",
    "DEFAULT_WINDOW",
    "Loaded",
    "POLICIES",
    "POLICY_ROWS",
    "Period",
    "SchemaError",
    "SourceError",
    "classify_duplicates",
    "compare_policies",
    "detect_duplicates_sql",
    "duplicate_pairs",
    "load_database",
    "load_files",
    "load_supabase",
    "mark_duplicates",
    "near_duplicates",
    "normalise_requests",
    "normalise_videos",
    "prevented_by",
    "race_windows",
    "request_times",
    "run_audit",
    "stuck_claims",
]

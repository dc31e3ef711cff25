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

from audit.classify import DEFAULT_GENERATION_RANGE, classify_duplicates, race_windows, request_times
from audit.detect import DEFAULT_WINDOW, duplicate_pairs, mark_duplicates
from audit.frames import AuditError, SchemaError, normalise_requests, normalise_videos
from audit.near import DEFAULT_SIMILARITY, near_duplicates
from audit.pipeline import DEFAULT_COST_PER_VIDEO, AuditResult, run_audit
from audit.policies import DEFAULT_PENDING_GAP, POLICIES, POLICY_ROWS, compare_policies, prevented_by
from audit.sources import Loaded, SourceError, load_files
from audit.sources.base import Period
from audit.stuck import DEFAULT_LEASE, stuck_claims

# The database and Supabase loaders load on first use (see `audit.sources`).
_LAZY_SOURCES = ("detect_duplicates_sql", "load_database", "load_supabase")


def __getattr__(name: str):
    if name in _LAZY_SOURCES:
        import audit.sources

        return getattr(audit.sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

"""The defaults the audit shares with the service, as plain numbers.

The service's own are in `service.settings`, beside the pydantic models that read its
environment. Importing that module loads pydantic and SQLAlchemy (0.25 s of CPU), and every
worker process of a streaming sweep imports the rule's modules afresh, so the audit reads the
three numbers from here; ``tests/audit/test_defaults.py`` holds them equal to the service's,
so the two still apply one rule.
"""

from __future__ import annotations

__all__ = ["DEFAULT_DUPLICATE_WINDOW_HOURS", "DEFAULT_LEASE_SECONDS", "DEFAULT_COST_PER_VIDEO_USD"]

DEFAULT_DUPLICATE_WINDOW_HOURS = 24.0
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_COST_PER_VIDEO_USD = 4.0

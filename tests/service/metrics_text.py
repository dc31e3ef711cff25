"""Read a `/metrics` answer the way Prometheus does (prometheus_client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def creates(text: str) -> dict[str, float]:
    """claimfirst_create_total by outcome."""
    return {dict(labels)["outcome"]: v for (name, labels), v in samples(text).items()
            if name == "claimfirst_create_total"}

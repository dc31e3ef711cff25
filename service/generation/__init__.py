"""Generation: what turns a won claim into a video, and the runner that keeps its lease.

    generators.py  the `Generator` protocol, the job, the simulated generator
    replicate.py   the real provider (Replicate's predictions API)
    runner.py      background generations: bounded slots, heartbeats, fenced outcome writes

May import the core (`service.claim`, `service.records`, `service.errors`), `service.policies`,
`service.stores` and the foundation (settings, logs, metrics, deadlines); nothing above it.
`make_generator` is here, above both generators, so neither imports the other.
"""

from __future__ import annotations

from service.generation.generators import (
    GenerationJob,
    GenerationResult,
    Generator,
    SimHints,
    SimulatedGenerator,
    usd,
)
from service.generation.replicate import ReplicateGenerator
from service.settings import Settings

__all__ = [
    "GenerationJob", "GenerationResult", "Generator", "SimulatedGenerator", "ReplicateGenerator", "SimHints",
    "make_generator", "usd",
]


def make_generator(settings: Settings) -> Generator:
    """The generator the settings name (`CLAIMFIRST_GENERATOR`)."""
    if settings.generator == "replicate":
        assert settings.replicate_model and settings.replicate_api_token  # the settings validated it
        return ReplicateGenerator(
            model=settings.replicate_model,
            api_token=settings.replicate_api_token.get_secret_value(),
            base_url=settings.replicate_base_url,
            poll_seconds=settings.replicate_poll_seconds,
            request_timeout_seconds=settings.replicate_request_timeout_seconds,
            cost_usd=settings.cost_per_video_usd,
        )
    return SimulatedGenerator(
        seconds=settings.sim_seconds,
        failure_rate=settings.sim_failure_rate,
        seed=settings.sim_seed,
        cost_usd=settings.cost_per_video_usd,
    )

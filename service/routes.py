"""HTTP routes. Routes stay thin: parse, call `Runtime`, shape the answer.

`install` also sets what guards every route: the body limit (CLAIMFIRST_MAX_BODY_BYTES,
`service.limits`), the API-key guard (`service.auth`), and the error handlers
(`service.http_errors`). Each route's `responses` lists every error status it can answer.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security.utils import get_authorization_scheme_param

from service.app import Runtime
from service.auth import caller_guard
from service.claim import NewVideo
from service.errors import InvalidRequest
from service.generators import SimHints
from service.http_errors import install_error_handlers
from service.idempotency import MAX_KEY_CHARS, KeyedRequest, answer_once, caller_scope, fingerprint, parse_key
from service.limits import ContentLengthLimit
from service.logs import RequestId
from service.metrics import CONTENT_TYPE_LATEST, CreateMetrics
from service.prompt_key import prompt_key
from service.schemas import (
    MAX_ID, CreateAccepted, CreateRequest, ErrorOut, HealthOut, StatsOut, VideoOut, error_responses,
    idempotency_responses,
)

__all__ = ["install", "CreateRequest"]


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
    # per request (it was a tenth of /create's time under load).
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
VideoId = Annotated[int, Path(ge=1, le=MAX_ID, description="a video id from a 202 or 409 answer")]
# Checked by `parse_key` (a bad key is 400, not FastAPI's 422); the schema only documents it.
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key",
    description="optional; the same key with the same body replays the first answer (see the README)",
    json_schema_extra={"minLength": 1, "maxLength": MAX_KEY_CHARS, "pattern": "^[ -~]+$"},
)]


def _sim_hints(runtime: Runtime, seconds: str | None, fail: str | None) -> SimHints | None:
    if not runtime.settings.sim_hints or (seconds is None and fail is None):
        return None
    try:
        return SimHints(
            seconds=None if seconds is None else float(seconds),
            fail=None if fail is None else fail.strip().lower() in ("1", "true", "yes"),
        )
    except ValueError as exc:
        raise InvalidRequest(f"X-Sim-Seconds must be a number: {exc}") from exc


async def _accept(runtime: Runtime, request: NewVideo, hints: SimHints | None) -> CreateAccepted:
    admission = await runtime.create(request, hints)
    detail = (
        f"Generating video {admission.video_id}; GET /videos/{admission.video_id} for its status."
        if admission.video_id is not None
        else f"Generating (policy {runtime.settings.policy}: the row is written when the video is done)."
    )
    return CreateAccepted(
        video_id=admission.video_id, status="generating", prompt_key=request.prompt_key,
        attempt=admission.attempt, created_at=admission.created_at, detail=detail,
    )


def _api_key(http: Request) -> str | None:
    # The guard has already checked it; this only names the caller (service.idempotency).
    scheme, credentials = get_authorization_scheme_param(http.headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else None


def install(app: FastAPI) -> None:
    settings = app.state.runtime.settings
    # An announced oversized body is refused before routing; a chunked one is counted by
    # FastAPI's per-route `max_body_size` below (its app-level one would answer in plain text).
    app.add_middleware(ContentLengthLimit, max_body_bytes=settings.max_body_bytes)
    # Added last, so they run first: the 413 above is counted, and has a request id.
    app.add_middleware(CreateMetrics, metrics=app.state.runtime.metrics)
    app.add_middleware(RequestId)
    install_error_handlers(app, max_body_bytes=settings.max_body_bytes)
    guarded = caller_guard(settings)
    # With keys, every route but /healthz answers 401 without one; anonymous, none does.
    auth_errors = (401,) if guarded else ()

    @app.post("/create", status_code=202, response_model=CreateAccepted, dependencies=guarded,
              max_body_size=settings.max_body_bytes,
              responses=idempotency_responses(error_responses(*auth_errors, 409, 413, 422, 429, 503)))
    async def create(
        body: CreateRequest,
        runtime: RuntimeDep,
        http: Request,
        idempotency_key: IdempotencyKey = None,
        x_sim_seconds: Annotated[str | None, Header()] = None,
        x_sim_fail: Annotated[str | None, Header()] = None,
    ) -> CreateAccepted | JSONResponse:
        request = NewVideo(body.tg_user_id, body.prompt, prompt_key(body.prompt), body.category)
        hints = _sim_hints(runtime, x_sim_seconds, x_sim_fail)
        if idempotency_key is None:
            # Already the response model: answered as it is, not validated again on the way out.
            return JSONResponse((await _accept(runtime, request, hints)).model_dump(mode="json"), status_code=202)
        keyed = KeyedRequest(caller_scope(_api_key(http) if guarded else None, body.tg_user_id),
                             parse_key(idempotency_key), fingerprint(body.model_dump()))
        return await answer_once(runtime, keyed, lambda: _accept(runtime, request, hints))

    @app.get("/videos/{video_id}", response_model=VideoOut, dependencies=guarded,
             responses=error_responses(*auth_errors, 404, 422, 503))
    async def get_video(video_id: VideoId, runtime: RuntimeDep) -> VideoOut:
        record = await runtime.bounded(runtime.store.get(video_id))
        fields = {k: v for k, v in record.__dict__.items() if k != "id"}
        return VideoOut(video_id=record.id, **fields)

    @app.get("/healthz", response_model=HealthOut, responses={503: {"model": ErrorOut,
             "description": "the database did not answer"}})
    async def healthz(runtime: RuntimeDep) -> HealthOut:
        await runtime.bounded(runtime.store.ping())
        return HealthOut(status="ok", database=runtime.store.dialect)

    @app.get("/metrics", response_class=Response, dependencies=guarded,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format, summed over every worker process"},
                        **error_responses(*auth_errors)})
    async def metrics(runtime: RuntimeDep) -> Response:
        """Prometheus metrics (see the README's Monitoring section)."""
        return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/stats", response_model=StatsOut, dependencies=guarded, responses=error_responses(*auth_errors))
    async def stats(runtime: RuntimeDep) -> StatsOut:
        """This worker process's generation counters (a multi-process deployment sums them)."""
        s = runtime.runner.stats
        return StatsOut(pid=os.getpid(), policy=runtime.settings.policy, submitted=s.submitted,
                        generations_started=s.started, ready=s.ready, failed=s.failed, lost=s.lost,
                        unrecorded=s.unrecorded, in_flight=s.in_flight, backlog=runtime.runner.backlog)

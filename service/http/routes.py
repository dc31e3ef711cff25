"""HTTP routes. Routes stay thin: parse, call `Runtime`, shape the answer.

`install` also sets what guards every route: the edge layer (request id, body limit,
/create metrics: `service.http.edge`), the API-key guard (`service.http.auth`), and the error handlers
(`service.http.errors`). Each route's `responses` lists every error status it can answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from service.runtime import Runtime
from service.http.auth import EVERYONE, api_key_check, bearer_token, caller_guard, caller_of, openapi_security, require
from service.callbacks import check_callback_url
from service.claim import NewVideo
from service.deadlines import deadline_scope
from service.http.edge import Edge
from service.errors import DuplicateRequest, InvalidRequest, VideoNotFound
from service.generation.generators import SimHints
from service.settings import Scope
from service.http.docs import install_docs
from service.http.errors import error_response, install_error_handlers, parsed_body
from service.http.idempotency import KeyedRequest, answer_once, caller_scope, fingerprint, parse_key
from service.metrics import CONTENT_TYPE_LATEST
from service.prompt_key import key_with_params
from service.http.schemas import (
    CREATE_OPERATION, MAX_ID, CallbackOut, CreateAccepted, CreateRequest, ErrorOut, HealthOut, StatsOut, VideoOut, error_responses,
    idempotency_responses,
)

__all__ = ["install", "CreateRequest", "DirectRoute"]


class DirectRoute(APIRoute):
    """A route whose endpoint takes the `Request` and returns the `Response` itself.

    FastAPI's own handler solves the endpoint's signature and dependencies, then validates and
    serialises what it returns. For /create, the hot path, that was about a tenth of the
    process's CPU per request, as much as the claim's own Python side (bench/create_throughput.py,
    in-process and under wrk). The declaration still documents the route in OpenAPI, and
    errors still reach the exception handlers. It may list no dependencies, since none would
    run: the endpoint makes its checks itself.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.dependant.dependencies:
            raise TypeError(f"{path}: a DirectRoute runs no dependencies; make the check in the endpoint")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint  # type: ignore[return-value]


def _runtime(http: Request) -> Runtime:
    # Not a FastAPI dependency: solving one costs /create more than reading an attribute.
    return http.app.state.runtime  # type: ignore[no-any-return]


VideoId = Annotated[int, Path(ge=1, le=MAX_ID, description="a video id from a 202 or 409 answer")]


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


async def _answer(runtime: Runtime, request: NewVideo, hints: SimHints | None, idempotency_key: str | None,
                  api_key: str | None, body: CreateRequest) -> Response:
    if idempotency_key is None:
        try:
            accepted = await _accept(runtime, request, hints)
        except DuplicateRequest as exc:
            # The common answer, not a fault: answered here rather than raised through
            # every layer to the exception handlers (same body, see service.http.errors).
            return error_response(exc)
        # Already the response model: written as it is (pydantic's JSON, the bytes
        # json.dumps gave), not validated again on the way out.
        return Response(accepted.model_dump_json(), status_code=202, media_type="application/json")
    # Whose Idempotency-Key it is: the API key's when keys are set, else the Telegram user's.
    keyed = KeyedRequest(caller_scope(api_key, body.tg_user_id),
                         parse_key(idempotency_key),
                         fingerprint(body.fingerprinted()))
    return await answer_once(runtime, keyed, lambda: _accept(runtime, request, hints))


def install(app: FastAPI) -> None:
    settings = app.state.runtime.settings
    app.add_middleware(Edge, metrics=app.state.runtime.metrics, max_body_bytes=settings.max_body_bytes)
    install_error_handlers(app, max_body_bytes=settings.max_body_bytes)
    install_docs(app)
    check_key, keys = api_key_check(settings)

    def auth_errors(scope: Scope) -> tuple[int, ...]:
        # With keys, every route but /healthz answers 401 without one; anonymous, none does.
        # 403 only where some configured key lacks the scope (or is held to some users).
        if check_key is None:
            return ()
        return (401, 403) if keys.may_refuse(scope) else (401,)

    async def create(http: Request) -> Response:
        # A DirectRoute: the key, body and headers are read here, not by FastAPI from the
        # signature (documented by CREATE_OPERATION instead; the 422s are the same, see
        # service.http.errors). The key first, as the guard's dependency does on other routes.
        headers = http.headers
        token = bearer_token(headers.get("authorization"))
        caller = EVERYONE
        if check_key is not None:
            caller = check_key(token)
            require(caller, "create")
        body = parsed_body(CreateRequest, await http.body())
        require(caller, "create", body.tg_user_id)
        runtime = _runtime(http)
        if body.callback_url is not None:  # before the Idempotency-Key too: a refused one writes nothing
            check_callback_url(body.callback_url, runtime.settings)
        key = key_with_params(body.key, body.params, runtime.settings.key_params)
        request = NewVideo(body.tg_user_id, body.prompt, key, body.category, body.params, callback_url=body.callback_url)
        hints = _sim_hints(runtime, headers.get("x-sim-seconds"), headers.get("x-sim-fail"))
        # From here on one deadline for every database call the request makes (service.deadlines).
        with deadline_scope(runtime.settings.request_timeout_seconds):
            return await _answer(runtime, request, hints, headers.get("idempotency-key"),
                                 token if check_key is not None else None, body)

    app.router.add_api_route(
        "/create", create, methods=["POST"], route_class_override=DirectRoute,
        status_code=202, response_model=CreateAccepted,
        responses=idempotency_responses(error_responses(*auth_errors("create"), 409, 413, 422, 429, 503)),
        openapi_extra={**CREATE_OPERATION, **openapi_security(check_key)},
    )

    @app.get("/videos/{video_id}", response_model=VideoOut, dependencies=caller_guard(check_key, "read"),
             responses=error_responses(*auth_errors("read"), 404, 422, 503))
    async def get_video(video_id: VideoId, http: Request) -> VideoOut:
        runtime = _runtime(http)
        record = await runtime.bounded(runtime.store.get(video_id))
        if not caller_of(http).sees(record.tg_user_id):
            # As an unknown id, so a key held to some users cannot probe for the others' videos.
            raise VideoNotFound(f"no video with id {video_id}")
        fields = {k: v for k, v in record.__dict__.items() if k != "id"}
        callback = await runtime.bounded(runtime.store.callback_state(video_id))
        return VideoOut(video_id=record.id, **fields,
                        callback=None if callback is None else CallbackOut(**callback.__dict__))

    @app.get("/healthz", response_model=HealthOut, responses={503: {"model": ErrorOut,
             "description": "the database did not answer"}})
    async def healthz(http: Request) -> HealthOut:
        runtime = _runtime(http)
        await runtime.bounded(runtime.store.ping())
        return HealthOut(status="ok", database=runtime.store.dialect, generator=http.app.state.generator)

    @app.get("/metrics", response_class=Response, dependencies=caller_guard(check_key, "metrics"),
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format, summed over every worker process"},
                        **error_responses(*auth_errors("metrics"))})
    async def metrics(http: Request) -> Response:
        """Prometheus metrics (see the README's Monitoring section)."""
        runtime = _runtime(http)
        return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/stats", response_model=StatsOut, dependencies=caller_guard(check_key, "admin"),
             responses=error_responses(*auth_errors("admin")))
    async def stats(http: Request) -> StatsOut:
        """This worker process's generation counters (a multi-process deployment sums them)."""
        runtime = _runtime(http)
        s = runtime.runner.stats
        return StatsOut(pid=os.getpid(), policy=runtime.settings.policy, submitted=s.submitted,
                        generations_started=s.started, ready=s.ready, failed=s.failed, lost=s.lost,
                        unrecorded=s.unrecorded, in_flight=s.in_flight, backlog=runtime.runner.backlog)

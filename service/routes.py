"""HTTP routes and error mapping. Routes stay thin: parse, call `Runtime`, shape the answer."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, field_validator

from service.app import Runtime
from service.claim import NewVideo
from service.errors import ClaimfirstError, InvalidRequest
from service.generators import SimHints
from service.prompt_key import prompt_key

__all__ = ["install", "CreateRequest"]

MAX_PROMPT_CHARS = 2000
# Telegram user ids are positive and fit a signed 64-bit column.
MAX_TG_USER_ID = 2**63 - 1


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tg_user_id: StrictInt = Field(gt=0, le=MAX_TG_USER_ID)
    prompt: StrictStr = Field(max_length=MAX_PROMPT_CHARS)
    category: StrictStr | None = Field(default=None, max_length=64)

    @field_validator("prompt")
    @classmethod
    def _has_content(cls, value: str) -> str:
        if not prompt_key(value):
            raise ValueError("prompt is empty: it has no text once whitespace and trailing punctuation are removed")
        return value


class VideoOut(BaseModel):
    video_id: int
    tg_user_id: int
    prompt: str
    prompt_key: str
    category: str | None
    status: str
    attempt: int
    video_url: str | None
    thumbnail_url: str | None
    error: str | None
    cost_usd: Decimal | None
    created_at: datetime
    updated_at: datetime


class CreateAccepted(BaseModel):
    video_id: int | None  # None only under the replay-only policies `check` and `none`
    status: str
    prompt_key: str
    attempt: int
    created_at: datetime
    detail: str


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
_JSON_BODY = TypeAdapter(dict[str, Any])


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


def install(app: FastAPI) -> None:
    @app.post("/create", status_code=202, response_model=CreateAccepted,
              responses={409: {"description": "duplicate: an equivalent video holds the claim"},
                         429: {"description": "backlog full; nothing was claimed (Retry-After)"},
                         503: {"description": "database unreachable; nothing was started (Retry-After)"}})
    async def create(
        body: CreateRequest,
        runtime: RuntimeDep,
        x_sim_seconds: Annotated[str | None, Header()] = None,
        x_sim_fail: Annotated[str | None, Header()] = None,
    ) -> CreateAccepted:
        request = NewVideo(body.tg_user_id, body.prompt, prompt_key(body.prompt), body.category)
        admission = await runtime.create(request, _sim_hints(runtime, x_sim_seconds, x_sim_fail))
        detail = (
            f"Generating video {admission.video_id}; GET /videos/{admission.video_id} for its status."
            if admission.video_id is not None
            else f"Generating (policy {runtime.settings.policy}: the row is written when the video is done)."
        )
        return CreateAccepted(
            video_id=admission.video_id, status="generating", prompt_key=request.prompt_key,
            attempt=admission.attempt, created_at=admission.created_at, detail=detail,
        )

    @app.get("/videos/{video_id}", response_model=VideoOut, responses={404: {"description": "unknown id"}})
    async def get_video(video_id: int, runtime: RuntimeDep) -> VideoOut:
        record = await runtime.bounded(runtime.store.get(video_id))
        fields = {k: v for k, v in record.__dict__.items() if k != "id"}
        return VideoOut(video_id=record.id, **fields)

    @app.get("/healthz")
    async def healthz(runtime: RuntimeDep) -> dict[str, str]:
        await runtime.bounded(runtime.store.ping())
        return {"status": "ok", "database": runtime.store.dialect}

    @app.get("/stats")
    async def stats(runtime: RuntimeDep) -> dict[str, Any]:
        """This process's generation counters (a multi-process deployment sums them)."""
        s = runtime.runner.stats
        return {"policy": runtime.settings.policy, "submitted": s.submitted, "generations_started": s.started,
                "ready": s.ready, "failed": s.failed, "lost": s.lost, "unrecorded": s.unrecorded,
                "in_flight": s.in_flight, "backlog": runtime.runner.backlog}

    @app.exception_handler(ClaimfirstError)
    async def _domain_error(_request: Request, exc: ClaimfirstError) -> JSONResponse:
        # Pydantic's JSON mode, as for the 2xx models: one timestamp format in every answer.
        return JSONResponse(status_code=exc.status_code, content=_JSON_BODY.dump_python(exc.body(), mode="json"),
                            headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=validation_body(exc.errors()))


def validation_body(errors: Any) -> dict[str, Any]:
    """A one-line `detail` a person can read, plus pydantic's structured `errors`."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            where, message = "body", "request body is not valid JSON"
        parts.append(f"{where}: {message}")
    return {"detail": "Invalid request: " + "; ".join(parts), "errors": jsonable_encoder(errors)}

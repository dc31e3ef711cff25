"""The HTTP API's bodies: what `/create` accepts, what every endpoint answers, errors included.

The error models are what `service.http.errors` really sends, so the OpenAPI schema documents
every status the service answers (schemathesis checks the two against each other).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from service.params import MAX_PARAMS_BYTES, MAX_PARAMS_DEPTH, PARAM_NAME, check_params
from service.prompt_key import prompt_key

__all__ = [
    "CreateRequest", "VideoOut", "CallbackOut", "CreateAccepted", "StatsOut", "HealthOut",
    "ErrorOut", "DuplicateOut", "ValidationErrorOut", "ProblemOut", "error_responses", "idempotency_responses",
    "MAX_PROMPT_CHARS", "MAX_CATEGORY_CHARS", "MAX_ID", "MAX_IDEMPOTENCY_KEY_CHARS", "CREATE_OPERATION",
]

MAX_PROMPT_CHARS = 2000
MAX_CATEGORY_CHARS = 64
# Telegram user ids and video ids are positive and fit a signed 64-bit column.
MAX_ID = 2**63 - 1
# The idempotency draft leaves the length to the server; Stripe allows 255. A UUID is 36.
MAX_IDEMPOTENCY_KEY_CHARS = 255

# The headers `POST /create` reads, as OpenAPI parameters (with its body, `CREATE_OPERATION`):
# the route reads both from the request itself, so they are documented here, not in its signature.
_CREATE_HEADERS = [
    {"name": "Idempotency-Key", "in": "header", "required": False,
     "description": "optional; the same key with the same body replays the first answer (see the README)",
     "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS, "pattern": "^[ -~]+$"}},
    {"name": "X-Sim-Seconds", "in": "header", "required": False,
     "description": "simulated generator only (CLAIMFIRST_SIM_HINTS): how long this generation takes",
     "schema": {"type": "string"}},
    {"name": "X-Sim-Fail", "in": "header", "required": False,
     "description": "simulated generator only (CLAIMFIRST_SIM_HINTS): `1`/`true`/`yes` makes it fail",
     "schema": {"type": "string"}},
]


_SURROGATE = re.compile("[\ud800-\udfff]")
# The validator needs a prompt's key to refuse an empty one, and the route needs it again to
# claim: computed once per request (and once per repeat of a prompt still in the cache).
_key_of = lru_cache(maxsize=256)(prompt_key)


def _storable(value: str) -> str:
    """Refuse text no database stores faithfully, before it reaches one."""
    if "\x00" in value:
        # PostgreSQL text cannot hold U+0000 (it fails the statement); SQLite would store it
        # and the two backends would disagree on the same request.
        raise ValueError("contains a NUL character (U+0000)")
    if _SURROGATE.search(value):
        # A lone surrogate (JSON "\ud800") is not a character: it has no UTF-8 encoding.
        raise ValueError("contains a lone surrogate (U+D800..U+DFFF), which is not text")
    return value


# CreateRequest's fields that came after Idempotency-Keys were stored (see `fingerprinted`).
LATER_FIELDS = ("params", "callback_url")


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tg_user_id: StrictInt = Field(gt=0, le=MAX_ID)
    prompt: StrictStr = Field(
        max_length=MAX_PROMPT_CHARS,
        description="must have text once whitespace, invisible characters (Unicode Cf) and trailing . ! ? … are"
                    " removed; no NUL (U+0000) or lone surrogate",
    )
    category: StrictStr | None = Field(default=None, max_length=MAX_CATEGORY_CHARS,
                                       description="no NUL (U+0000) or lone surrogate")

    callback_url: StrictStr | None = Field(
        default=None, max_length=2000,
        description="optional: where the service POSTs the signed outcome (video.ready / video.failed); https,"
                    " its host in CLAIMFIRST_CALLBACK_HOSTS (see the README's Completion callbacks)")

    @field_validator("prompt")
    @classmethod
    def _has_content(cls, value: str) -> str:
        _storable(value)
        if not _key_of(value):
            raise ValueError(
                "prompt is empty: it has no text once whitespace, invisible characters and trailing"
                " punctuation are removed"
            )
        return value

    @property
    def key(self) -> str:
        """The prompt's key (`service.prompt_key`)."""
        return _key_of(self.prompt)

    def fingerprinted(self) -> dict[str, Any]:
        """What an Idempotency-Key's fingerprint covers. Fields added later (params,
        callback_url) only when given, so a key stored before they existed still matches."""
        return self.model_dump(exclude={name for name in LATER_FIELDS if getattr(self, name) is None})

    @field_validator("category")
    @classmethod
    def _category_storable(cls, value: str | None) -> str | None:
        return None if value is None else _storable(value)

    params: dict[str, Any] | None = Field(
        default=None,
        description=f"generation parameters, passed to the provider beside the prompt (Replicate: input"
                    f" {{\"prompt\": …, **params}}) and stored with the video: a JSON object of at most"
                    f" {MAX_PARAMS_BYTES} bytes as compact JSON, {MAX_PARAMS_DEPTH} levels deep; names"
                    " `[A-Za-z_][A-Za-z0-9_]{0,63}`, not `prompt`; no NaN or Infinity, no NUL or lone surrogate"
                    " in any text. Part of the duplicate key only for the names CLAIMFIRST_KEY_PARAMS lists",
        json_schema_extra={"propertyNames": {"pattern": PARAM_NAME.pattern, "not": {"const": "prompt"}}},
    )

    @field_validator("params")
    @classmethod
    def _params_bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_params(value)


class CallbackOut(BaseModel):
    """The video's completion callback: `pending` until delivered (also while the video is
    generating: `event` is null until it ends), `failed` once given up."""

    state: str = Field(description="pending, delivered or failed (given up)")
    event: str | None = Field(description="video.ready or video.failed; null while the video is generating")
    attempts: int = Field(description="delivery attempts of the current event")
    last_error: str | None = Field(description="why the last attempt did not deliver (e.g. `HTTP 503`)")
    delivered_at: datetime | None


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
    params: dict[str, Any] | None = Field(default=None, description="the generation parameters it was asked"
                                          " with (a handed-over job's own); PostgreSQL may reorder the names")
    callback: CallbackOut | None = Field(default=None, description="null when the /create named no callback_url")


class CreateAccepted(BaseModel):
    video_id: int | None  # None only under the replay-only policies `check` and `none`
    status: str
    prompt_key: str
    attempt: int
    created_at: datetime
    detail: str


class StatsOut(BaseModel):
    """This worker process's generation counters (a multi-process deployment sums them)."""

    pid: int = Field(description="the OS process that answered (one of the uvicorn workers)")
    policy: str
    submitted: int
    generations_started: int
    ready: int
    failed: int
    lost: int
    unrecorded: int = Field(description="outcomes the database never took before a shutdown (logged)")
    in_flight: int
    backlog: int = Field(description="generations running or queued here; past the limit /create answers 429")


class HealthOut(BaseModel):
    status: str
    database: str = Field(description="`sqlite` or `postgresql`")
    generator: str = Field(description="what turns a won claim into a video: `replicate`, or `sim` (fake videos,"
                                       " `videos.example.invalid` links); another name for one built in code")


class ErrorOut(BaseModel):
    detail: str = Field(description="one line a person can read")


class ValidationErrorOut(ErrorOut):
    """422: `detail` sums up, `errors` are pydantic's, each `input` shortened."""

    errors: list[dict[str, Any]] = Field(default_factory=list)


class ProblemOut(BaseModel):
    """RFC 9457 problem details (`application/problem+json`): the Idempotency-Key's errors, 403s, and
    a claim that kept changing hands (409, `/problems/claim-contention`: retry)."""

    type: str = Field(description="a stable URI reference per kind of problem; match on it")
    title: str
    status: int
    detail: str = Field(description="one line a person can read")


class DuplicateOut(BaseModel):
    """409 `/problems/duplicate-video` (`application/problem+json`): an equivalent video holds the
    claim; nothing was started. `status` is that video's status, not the HTTP status (RFC 9457
    has a consumer ignore a `status` member that is not a number)."""

    type: str = Field(description="`/problems/duplicate-video`")
    title: str
    detail: str = Field(description="one line a person can read")
    video_id: int = Field(description="the video holding the claim")
    status: str = Field(description="that video's status: generating, ready or failed")
    created_at: datetime
    video_url: str | None = Field(default=None, description="present once that video is ready")


class LimitOut(ProblemOut):
    """429 with `application/problem+json`: a limit the claim enforces refused a new video; nothing
    was started. Its `type`: `/problems/user-daily-limit`, `/problems/user-concurrent-limit` or
    `/problems/daily-budget`."""

    limit: str = Field(description="`user_daily`, `user_concurrent` or `daily_budget`")
    retry_after: int = Field(description="as the Retry-After header: seconds until there is room, from the stored"
                                         " data (an estimate for the concurrent limit)")


_RESPONSES: dict[int, tuple[type[BaseModel], str]] = {
    401: (ErrorOut, "no or unknown API key (`Authorization: Bearer <key>`)"),
    404: (ErrorOut, "unknown video id"),
    413: (ErrorOut, "request body over CLAIMFIRST_MAX_BODY_BYTES; it was not read"),
    422: (ValidationErrorOut, "invalid input (body, path or header); nothing was written"),
    429: (ErrorOut, "too many generations queued; retry after `Retry-After` seconds"),
    503: (ErrorOut, "the database did not answer; nothing was started"),
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
}


_FORBIDDEN = {"description": "this API key lacks the endpoint's scope (`type` /problems/scope-missing), or on"
                             " /create may not act for this tg_user_id (/problems/user-not-allowed)",
              "content": {"application/problem+json": {"schema": ProblemOut.model_json_schema()}}}
# Every 409 is a problem (service.errors): a duplicate, or a claim that kept changing hands.
_CONFLICT = {
    "description": "an equivalent video holds the claim (`/problems/duplicate-video`), or the claim kept"
                   " changing hands while it was looked at (`/problems/claim-contention`: retry); nothing was"
                   " started",
    "content": {"application/problem+json": {"schema": {"anyOf": [
        DuplicateOut.model_json_schema(), ProblemOut.model_json_schema()]}}},
}


# A 429 is the backlog (plain JSON) or a limit (a problem, its `type` per limit).
_TOO_MANY = {
    "description": "nothing was started: too many generations queued here (`application/json`), or a limit"
                   " reached (`application/problem+json`: `/problems/user-daily-limit`,"
                   " `/problems/user-concurrent-limit`, `/problems/daily-budget`); retry after `Retry-After` seconds",
    "headers": _HEADERS[429],
    "content": {"application/json": {"schema": ErrorOut.model_json_schema()},
                "application/problem+json": {"schema": LimitOut.model_json_schema()}},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, with the bodies the handlers send."""
    return {
        code: _FORBIDDEN if code == 403 else _CONFLICT if code == 409 else _TOO_MANY if code == 429 else
        {"model": _RESPONSES[code][0], "description": _RESPONSES[code][1],
         **({"headers": _HEADERS[code]} if code in _HEADERS else {})}
        for code in codes
    }


_PROBLEMS = {
    400: "malformed Idempotency-Key (empty, over 255 characters, not printable ASCII); nothing was written",
    409: "the first request with this Idempotency-Key is still being admitted; retry in a moment",
    422: "this Idempotency-Key was first sent with another body",
}
_REPLAYED = {"Idempotent-Replayed": {
    "description": "`true` when this is the stored answer to an earlier request with the same Idempotency-Key",
    "required": False, "schema": {"type": "string", "enum": ["true"]}}}


def idempotency_responses(responses: dict[int | str, dict[str, Any]], accepted: int = 202) -> dict[int | str, dict[str, Any]]:
    """`responses` plus the problems the Idempotency-Key can answer, and the replay header."""
    merged = {code: dict(spec) for code, spec in responses.items()}
    problem = {"application/problem+json": {"schema": ProblemOut.model_json_schema()}}
    for code, description in _PROBLEMS.items():
        spec = merged.setdefault(code, {"description": description})
        content = dict(spec.get("content", {}))
        if "application/problem+json" in content:  # 409: one of the problems already listed, or this
            listed = content["application/problem+json"]["schema"].get("anyOf", [])
            if problem["application/problem+json"]["schema"] not in listed:
                listed = [*listed, problem["application/problem+json"]["schema"]]
            content["application/problem+json"] = {"schema": {"anyOf": listed}}
        else:
            content.update(problem)
        spec["content"] = content
        if spec["description"] != description:
            spec["description"] = f"{spec['description']}; or (problem+json) {description}"
    for code in (accepted, 409):
        spec = merged.setdefault(code, {})
        spec["headers"] = {**spec.get("headers", {}), **_REPLAYED}
    return merged


CREATE_OPERATION: dict[str, Any] = {
    "parameters": _CREATE_HEADERS,
    "requestBody": {"required": True, "content": {"application/json": {"schema": CreateRequest.model_json_schema()}}},
}

"""Every error the app answers, as JSON bodies of `service.http.schemas`, and never a 5xx for input.

- `ClaimfirstError` (the service's tree) → its status, headers and body.
- Request validation → 422 with a one-line `detail` and pydantic's `errors`, each echoed
  `input` shortened and made encodable: a 300 MB body does not come back, and a lone
  surrogate or a NaN in the input cannot crash the encoder that answers it.
- `parsed_body`: a body a route reads itself (`/create`, the Telegram webhook) gets the 422
  FastAPI would give it.
- FastAPI's own HTTP errors: a body it cannot parse (FastAPI says 400; the README promised
  422, as for any other invalid JSON) and its body limit (413) are mapped into the tree.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from service.errors import ClaimfirstError, InvalidRequest, RequestTooLarge
from service.http.limits import too_large_detail

__all__ = ["install_error_handlers", "error_response", "parsed_body", "validation_body", "bounded", "error_content"]

# How much of a rejected value a 422 echoes: enough to recognise it, never the whole thing.
MAX_ECHO_CHARS = 100
MAX_ECHO_ITEMS = 10
MAX_ECHO_DEPTH = 3
# A body with thousands of bad fields gets the first ones listed, then a count.
MAX_LISTED_ERRORS = 10

_JSON_BODY = TypeAdapter(dict[str, Any])
Model = TypeVar("Model", bound=BaseModel)


def bounded(value: Any, depth: int = 0) -> Any:
    """`value` cut to a few items and characters, as JSON that always encodes."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else bounded(str(value), depth)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no NaN or Infinity
    if isinstance(value, str):
        text = value if len(value) <= MAX_ECHO_CHARS else f"{value[:MAX_ECHO_CHARS]}… ({len(value)} characters)"
        return _encodable(text)
    if depth >= MAX_ECHO_DEPTH:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        shown = {bounded(str(k)): bounded(v, depth + 1) for k, v in items[:MAX_ECHO_ITEMS]}
        if len(items) > MAX_ECHO_ITEMS:
            shown["…"] = f"{len(items) - MAX_ECHO_ITEMS} more"
        return shown
    if isinstance(value, (list, tuple)):
        shown_items = [bounded(v, depth + 1) for v in value[:MAX_ECHO_ITEMS]]
        return shown_items + ([f"… {len(value) - MAX_ECHO_ITEMS} more"] if len(value) > MAX_ECHO_ITEMS else [])
    return bounded(str(value), depth)


def _encodable(text: str) -> str:
    # A lone surrogate has no UTF-8 form; show it as its escape, "\ud800", instead.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def validation_body(errors: Any) -> dict[str, Any]:
    """A one-line `detail` a person can read, plus pydantic's structured `errors` (bounded)."""
    errors = list(errors)
    parts, listed = [], []
    for error in errors[:MAX_LISTED_ERRORS]:
        loc = [bounded(p) for p in error.get("loc", ())]
        where = ".".join(str(p) for p in loc if p != "body") or "body"
        message = _encodable(str(error.get("msg", "invalid")).removeprefix("Value error, "))
        if error.get("type") == "json_invalid":
            where, message = "body", f"request body is not valid JSON ({error.get('ctx', {}).get('error', 'invalid')})"
        parts.append(f"{where}: {message}")
        rest = {k: v for k, v in error.items() if k not in ("input", "loc", "ctx")}
        if "ctx" in error:  # a validator's exception would encode as {}: keep its message
            rest["ctx"] = {k: str(v) if isinstance(v, Exception) else v for k, v in error["ctx"].items()}
        listed.append({**_encodable_tree(jsonable_encoder(rest)), "loc": loc, "input": bounded(error.get("input"))})
    if len(errors) > MAX_LISTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_LISTED_ERRORS} more errors")
    return {"detail": "Invalid request: " + "; ".join(parts), "errors": listed}


def _encodable_tree(value: Any) -> Any:
    if isinstance(value, str):
        return _encodable(value)
    if isinstance(value, dict):
        return {_encodable(str(k)): _encodable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable_tree(v) for v in value]
    return bounded(value)


def parsed_body(model: type[Model], raw: bytes) -> Model:
    """`raw` (JSON) as `model`, or RequestValidationError located under `body`, as FastAPI's."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


def error_content(exc: ClaimfirstError) -> dict[str, Any]:
    """The JSON an error answers. Pydantic's JSON mode, as for the 2xx models: one timestamp
    format in every answer (and in the answers an Idempotency-Key replays)."""
    return _JSON_BODY.dump_python(exc.body(), mode="json")


def error_response(exc: ClaimfirstError) -> Response:
    # The same JSON as `error_content`, written by pydantic in one call: a 409 duplicate is
    # /create's most common answer, and a dict through `json.dumps` cost it ~3 % of its CPU.
    return Response(_JSON_BODY.dump_json(exc.body()), status_code=exc.status_code,
                    headers=exc.headers() or None, media_type=exc.media_type)


def install_error_handlers(app: FastAPI, *, max_body_bytes: int) -> None:
    @app.exception_handler(ClaimfirstError)
    async def _domain_error(_request: Request, exc: ClaimfirstError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=validation_body(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 413:
            return error_response(RequestTooLarge(too_large_detail(max_body_bytes)))
        if exc.status_code == 400:
            # FastAPI's only 400 is a body it could not decode (not UTF-8, a number past
            # Python's 4,300-digit limit): invalid JSON like any other, so 422.
            return error_response(InvalidRequest("Invalid request: body: request body is not valid JSON (it cannot be decoded)"))
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc.detail)},
                            headers=exc.headers)

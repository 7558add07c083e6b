"""Reading request bodies and writing responses, with the limits and error shapes of the API.

Bodies are read here (not by FastAPI's body parameters) so that every failure has our JSON error
shape: a body over ``MAX_BODY_BYTES`` is 413 (checked from Content-Length and again while
reading), malformed JSON is 400, a body that is not an object or fails a model is 422 naming
the field. An empty body counts as ``{}`` where the body is optional.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request, Response
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from drip._checks import find_bad_text

from .errors import ApiError, describe_validation_error

__all__ = [
    "MAX_BODY_BYTES",
    "check_text",
    "decode",
    "json_response",
    "parse",
    "read_body",
    "read_object",
]

#: largest request body accepted (bytes); an SDK ingest batch (5,000 events) is ~1.2 MiB
MAX_BODY_BYTES = 8 * 1024 * 1024

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request) -> bytes:
    """The raw body, refusing more than ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(
                400, "INVALID_CONTENT_LENGTH", "Content-Length is not a number"
            ) from None
        if size > MAX_BODY_BYTES:
            raise _too_large()
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> ApiError:
    return ApiError(
        413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {MAX_BODY_BYTES} bytes"
    )


def decode(raw: bytes) -> Any:
    """Parse JSON bytes; an empty body is ``{}``.

    Bytes that are not UTF-8 do not fail the whole body: they decode to lone surrogates
    (``surrogateescape``), which the checks then refuse in the field that holds them, so one
    bad string costs one item of a batch, not the batch. JSON nested too deeply to parse at all
    (hundreds of levels) is a 400.
    """
    if not raw.strip():
        return {}
    try:
        try:
            return json.loads(raw)
        except UnicodeDecodeError:
            return json.loads(raw.decode("utf-8", "surrogateescape"))
    except RecursionError:
        raise ApiError(
            400, "INVALID_JSON", "The request body is nested too deeply to parse"
        ) from None
    except ValueError as exc:
        raise ApiError(400, "INVALID_JSON", f"The request body is not valid JSON: {exc}") from None


def check_text(data: Any) -> None:
    """422 naming the field when a string in a body cannot be stored (lone surrogate, NUL)."""
    problem = find_bad_text(data)
    if problem is not None:
        raise ApiError(422, "VALIDATION_ERROR", problem)


async def read_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when empty)."""
    data = decode(await read_body(request))
    if not isinstance(data, dict):
        raise ApiError(422, "VALIDATION_ERROR", "The request body must be a JSON object")
    check_text(data)
    return data


def parse(model: type[M], data: Any) -> M:
    """Validate ``data`` with a wire model; 422 naming the field when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "VALIDATION_ERROR", describe_validation_error(exc)) from None


def json_response(model: BaseModel | dict[str, Any], status: int = 200) -> Response:
    """Render a wire model with every key present (``None`` as ``null``), camelCase."""
    if isinstance(model, BaseModel):
        try:
            content = model.model_dump_json(by_alias=True)
        except PydanticSerializationError:
            # odd data stored before the checks (a lone surrogate, ...): still answer, with
            # JSON's own escapes, rather than a 500 for the whole resource
            content = _dumps(model.model_dump(mode="python", by_alias=True))
    else:
        content = _dumps(model)
    return Response(content=content, status_code=status, media_type="application/json")


def _dumps(value: Any) -> str:
    # ASCII output escapes any lone surrogate; default=str covers datetimes and decimals
    return json.dumps(value, separators=(",", ":"), default=str)

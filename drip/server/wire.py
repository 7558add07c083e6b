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

from .errors import ApiError, describe_validation_error

__all__ = ["MAX_BODY_BYTES", "decode", "json_response", "parse", "read_body", "read_object"]

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
    """Parse JSON bytes; an empty body is ``{}``."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "INVALID_JSON", f"The request body is not valid JSON: {exc}") from None


async def read_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when empty)."""
    data = decode(await read_body(request))
    if not isinstance(data, dict):
        raise ApiError(422, "VALIDATION_ERROR", "The request body must be a JSON object")
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
        content = model.model_dump_json(by_alias=True)
    else:
        content = json.dumps(model, separators=(",", ":"))
    return Response(content=content, status_code=status, media_type="application/json")

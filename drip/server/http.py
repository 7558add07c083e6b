"""Reading request bodies and writing responses, with the limits and error shapes of the API.

Bodies are read here (not by FastAPI's body parameters) so that every failure has our JSON error
shape: a body over ``MAX_BODY_BYTES`` is 413 (checked from Content-Length and again while
reading, and on what a gzip or deflate ``Content-Encoding`` decompresses to; another coding is
415), JSON nested deeper than ``MAX_DEPTH`` or malformed is 400, a body that is not an
object or fails a model is 422 naming the field. An empty body counts as ``{}`` where the body
is optional. (The OpenAPI document still declares each body's model: see ``routes``.)

``SecurityHeaders`` adds a Content-Security-Policy, anti-framing and ``nosniff`` headers to
every HTML response (the dashboard, ``/docs``). ``InternalErrors`` answers an error no handler
maps (a bug) with one JSON 500 and one traceback in the log, and keeps the connection open.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any, TypeVar

import pydantic_core
from fastapi import Request, Response
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from drip._checks import find_bad_text

from .errors import ApiError, describe_validation_error, error_body

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "InternalErrors",
    "SecurityHeaders",
    "check_text",
    "decode",
    "json_response",
    "parse",
    "read_body",
    "read_object",
]

#: largest request body accepted (bytes); an SDK ingest batch (5,000 events) is ~1.2 MiB
MAX_BODY_BYTES = 8 * 1024 * 1024

#: deepest JSON nesting accepted: the limit of pydantic-core's parser, which stops there
#: instead of recursing further (Python's ``json`` would recurse until a RecursionError)
MAX_DEPTH = 200

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
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding")
    return raw if encoding is None else _decompressed(raw, encoding)


#: zlib's window bits per Content-Encoding (gzip's header, or deflate's zlib one)
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decompressed(raw: bytes, header: str) -> bytes:
    """A body sent with ``Content-Encoding`` (codings applied in order, undone in reverse):
    gzip and deflate are read, to at most ``MAX_BODY_BYTES`` (a small bomb is a 413); any
    other coding is a 415 naming it; a body that is not what it claims is a 400."""
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        wbits = _WBITS.get(coding)
        if wbits is None:
            raise ApiError(
                415,
                "UNSUPPORTED_CONTENT_ENCODING",
                f"Content-Encoding {coding[:40]!r} is not supported: send the body as is, "
                "or gzip or deflate",
            )
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(raw, MAX_BODY_BYTES + 1)
        except zlib.error as exc:
            raise ApiError(
                400, "INVALID_BODY", f"The request body is not valid {coding}: {exc}"
            ) from None
        if len(out) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise _too_large()
        if not inflater.eof:
            raise ApiError(
                400, "INVALID_BODY", f"The request body is not valid {coding}: cut short"
            )
        raw = out
    return raw


def _too_large() -> ApiError:
    return ApiError(
        413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {MAX_BODY_BYTES} bytes"
    )


def _check_depth(raw: bytes) -> None:
    """400 when ``raw`` nests deeper than ``MAX_DEPTH``: pydantic-core's parser stops at that
    depth, in C, without recursing further. (Other faults are left to ``json``, which accepts
    what the checks of the items judge one by one, such as lone surrogates.)"""
    try:
        pydantic_core.from_json(raw)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise ApiError(
                400, "JSON_TOO_DEEP", f"The request body nests JSON deeper than {MAX_DEPTH} levels"
            ) from None


def decode(raw: bytes) -> Any:
    """Parse JSON bytes; an empty body is ``{}``.

    Bytes that are not UTF-8 do not fail the whole body: they decode to lone surrogates
    (``surrogateescape``), which the checks then refuse in the field that holds them, so one
    bad string costs one item of a batch, not the batch. JSON nested deeper than ``MAX_DEPTH``
    is a 400 before ``json`` recurses into it.
    """
    if not raw.strip():
        return {}
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        _check_depth(raw)
    try:
        try:
            return json.loads(raw)
        except UnicodeDecodeError:
            return json.loads(raw.decode("utf-8", "surrogateescape"))
    except RecursionError:
        raise ApiError(
            400, "JSON_TOO_DEEP", "The request body is nested too deeply to parse"
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
    content: str | bytes
    if isinstance(model, BaseModel):
        try:
            content = model.model_dump_json(by_alias=True)
        except PydanticSerializationError:
            # odd data stored before the checks (a lone surrogate, ...): still answer, with
            # JSON's own escapes, rather than a 500 for the whole resource
            content = _dumps(model.model_dump(mode="python", by_alias=True))
    else:
        try:
            # pydantic's Rust encoder: ~3x json.dumps on a 10,000-event timeline (3.6 MB)
            # a number JSON has not (infinity, NaN, stored before the checks) is null, not the
            # ``Infinity`` no JSON reader takes
            content = pydantic_core.to_json(model, inf_nan_mode="null")
        except PydanticSerializationError:  # odd stored text (a lone surrogate): JSON's escapes
            content = _dumps(model)
    return Response(content=content, status_code=status, media_type="application/json")


def _dumps(value: Any) -> str:
    # ASCII output escapes any lone surrogate; default=str covers datetimes and decimals
    return json.dumps(value, separators=(",", ":"), default=str)


class SecurityHeaders:
    """ASGI middleware: security headers on every HTML response (pure ASGI, so the API's JSON
    responses pay one dictionary look-up, not a second response object)."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )
    #: for HTML pages that set no policy of their own (``/docs`` loads Swagger UI's assets)
    DEFAULT_CSP = b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    headers.extend(h for h in self.HEADERS if h[0] not in names)
                    if b"content-security-policy" not in names:
                        headers.append((b"content-security-policy", self.DEFAULT_CSP))
                    message = {**message, "headers": headers}
                elif b"x-content-type-options" not in names:
                    message = {**message, "headers": [*headers, self.HEADERS[0]]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class InternalErrors:
    """ASGI middleware: an exception no handler answered (a bug, or a storage error that is not
    a full disk or an unreachable database) becomes one JSON 500 in the API's error shape,
    logged once with its traceback. (A handler for ``Exception`` registered on the app is
    called by Starlette's outermost middleware, which then raises the exception again: uvicorn
    logged a second traceback and closed the client's keep-alive connection.) When the answer
    had already begun, it cannot become a 500: logged, and the connection is left to uvicorn."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watching(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watching)
        except ClientDisconnect:
            # the client left while sending its body (its own timeout, a killed process): an
            # ordinary event, not a bug; nothing was stored, and no one is left to answer
            _log.warning(
                "the client went away while sending %s %s: nothing done",
                scope.get("method"),
                scope.get("path"),
            )
        except Exception as exc:
            _log_once(exc, scope)
            if started:
                return
            body = error_body(500, "INTERNAL_ERROR", "The server failed; see its log for details")
            await json_response(body, 500)(scope, receive, send)


_log = logging.getLogger("drip.server")


def _log_once(exc: BaseException, scope: Scope) -> None:
    """One traceback for one failure: what caused ``exc`` (a driver's error under SQLAlchemy's,
    which repeats its words) is named on the log line, not printed as a second traceback."""
    causes = []
    seen = {id(exc)}
    current = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        causes.append(f"{current.__class__.__name__}: {current}".splitlines()[0][:300])
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    exc.__cause__ = exc.__context__ = None  # the exception ends here: nothing else reads these
    exc.__suppress_context__ = True
    reason = f" (caused by {'; by '.join(causes)})" if causes else ""
    _log.error(
        "unhandled error on %s %s%s", scope.get("method"), scope.get("path"), reason, exc_info=exc
    )

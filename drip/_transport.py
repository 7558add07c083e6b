"""Sending a ``RequestSpec`` with httpx: retries, backoff, error mapping.

The decisions (building the request, reading the answer, mapping an error, whether and how long
to wait before another attempt) are plain methods of ``_TransportBase``; ``SyncTransport`` and
``AsyncTransport`` only differ in how they send and sleep.

The retry policy of the SDK, for client methods and the delivery worker alike (``retry_delay``):
network errors, timeouts, 408, 425, 429, 5xx and a success answer that cannot be read are
retried with exponential backoff and jitter, honouring ``Retry-After``. A client method retries
within ``max_retries`` extra attempts and ``max_retry_time`` seconds, and only when the request
is safe to repeat (``RequestSpec.retry_safe``: GETs and writes carrying an idempotency key or a
client-generated id) or never reached the server (the connection was not established). The
delivery worker asks the same ``retry_delay`` for its batches and keeps its own budget.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import ssl
import threading
import time
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from . import models as m
from ._config import Settings
from ._endpoints import ingest
from ._specs import RawResponse, RequestSpec
from ._version import __version__
from .errors import (
    DripAPIError,
    DripError,
    DripNetworkError,
    DripRateLimitError,
    DripTimeoutError,
    api_error_class,
)

__all__ = [
    "AsyncTransport",
    "IngestSender",
    "SyncTransport",
    "backoff_delay",
    "retry_delay",
    "retryable",
]

T = TypeVar("T")

USER_AGENT = f"drip-sdk-python/{__version__}"
#: statuses worth another attempt besides 5xx: timeout, too early, too many requests
RETRY_STATUSES = frozenset({408, 425, 429})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def backoff_delay(
    attempt: int, retry_after: float | None = None, *, base: float = 0.25, cap: float = 8.0
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    The server's ``Retry-After`` wins when given; otherwise exponential with "equal jitter"
    (half fixed, half random), so concurrent clients spread out but never retry at once.
    """
    if retry_after is not None and retry_after >= 0:
        return float(retry_after)
    ceiling = min(cap, base * float(2 ** min(attempt, 30)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retryable(error: DripError) -> bool:
    """Whether another attempt may succeed where this one failed (the policy, in one place)."""
    if isinstance(error, DripAPIError):
        status = error.status_code
        return (
            status in RETRY_STATUSES
            or status >= 500
            or (status < 400 and error.code == "INVALID_RESPONSE")
        )
    return isinstance(error, DripNetworkError)  # timeouts included


def retry_delay(error: DripError, attempt: int) -> float | None:
    """Seconds before attempt ``attempt + 1`` after ``error``, or None: do not retry."""
    if not retryable(error):
        return None
    retry_after = error.retry_after if isinstance(error, DripRateLimitError) else None
    return backoff_delay(attempt, retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS settings, built once per process and shared by the SDK's HTTP
    clients: building them (loading the CA bundle) takes ~0.1 s, which the delivery worker's
    client would otherwise pay again on its first batch."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


class _Attempt(Exception):
    """Internal: one failed attempt, with whether it may be repeated."""

    def __init__(self, error: DripError, *, not_sent: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.not_sent = not_sent


class _TransportBase:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._headers = {
            "Authorization": f"Bearer {settings.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        root = settings.base_url
        self._root = root[: -len("/v1")] if root.endswith("/v1") else root

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.settings.timeout)

    def _build(self, spec: RequestSpec[Any]) -> dict[str, Any]:
        url = (self._root if spec.outside_v1 else self.settings.base_url) + spec.path
        kwargs: dict[str, Any] = {"method": spec.method, "url": url, "headers": self._headers}
        if spec.content is not None:
            kwargs["content"] = spec.content
        elif spec.body is not None:
            kwargs["content"] = json.dumps(spec.body, separators=(",", ":")).encode()
        if spec.params:
            kwargs["params"] = spec.params
        return kwargs

    def _network_error(self, exc: httpx.HTTPError, spec: RequestSpec[Any]) -> _Attempt:
        # the full URL: "cannot reach /customers" does not say which server was tried
        url = (self._root if spec.outside_v1 else self.settings.base_url) + spec.path
        where = f"{spec.method} {url}"
        if isinstance(exc, httpx.TimeoutException):
            err: DripError = DripTimeoutError(f"Request timed out: {where} ({exc!r})")
        else:
            err = DripNetworkError(f"Network error on {where}: {exc!r}")
        err.__cause__ = exc
        return _Attempt(err, not_sent=isinstance(exc, _NOT_SENT))

    @staticmethod
    def _read(spec: RequestSpec[T], response: httpx.Response, elapsed_ms: int) -> T:
        status = response.status_code
        raw = RawResponse(status, response.content, elapsed_ms)
        if status >= 400 and spec.raise_for_status:
            body = raw.body
            if body is None and response.content:
                body = {"error": response.text}
            error = _api_error(response, body)
            if raw.body is None:
                error.message = _not_drip(response, spec)
            raise _Attempt(error)
        try:
            return spec.parse(raw)
        except DripError:  # the parser's own verdict on the answer (ping's 401)
            raise
        except Exception as exc:  # the request was answered: whatever failed is reading it
            parsing = isinstance(exc, (ValidationError, TypeError, ValueError))
            if not parsing:
                what = f"could not be read: {exc!r}"
            elif raw.body is None:
                what = f"is not JSON: {exc}"
            else:
                what = f"has an unexpected shape: {exc}"
            error = DripAPIError(
                f"The server's answer ({status}) to {spec.method} {spec.path} {what}",
                status_code=status,
                code="INVALID_RESPONSE",
                body=raw.body if raw.body is not None else response.text,
            )
            error.__cause__ = None if parsing else exc  # a failure of ours: its traceback
            raise _Attempt(error) from None

    def _next_delay(
        self, spec: RequestSpec[T], failure: _Attempt, attempt: int, started: float
    ) -> float | None:
        """How long to wait before another attempt, or None to give up."""
        limit = spec.max_attempts or self.settings.max_retries + 1
        if attempt + 1 >= limit:
            return None
        if not (spec.retry_safe or failure.not_sent):
            return None
        delay = retry_delay(failure.error, attempt)
        if delay is None:
            return None
        if time.monotonic() - started + delay > self.settings.max_retry_time:
            return None
        return delay


def _not_drip(response: httpx.Response, spec: RequestSpec[Any]) -> str:
    """The message of an error answer that is not JSON: a proxy, a web server or another
    service answered, not a Drip API. Its page (a whole HTML document) was the message."""
    try:
        where = f"{spec.method} {response.request.url}"
    except RuntimeError:  # a response made without a request (tests)
        where = f"{spec.method} {spec.path}"
    kind = response.headers.get("content-type", "").partition(";")[0] or "no content type"
    text = " ".join(response.text.split())
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    said = (title.group(1) if title else text).strip()
    said = said[:120] + ("…" if len(said) > 120 else "")
    seen = f"{kind}: {said!r}" if said else kind
    return (
        f"{response.status_code} {response.reason_phrase} from {where}, not a Drip API answer "
        f"({seen}); check that the base URL is the Drip server's"
    )


def _api_error(response: httpx.Response, body: Any) -> DripAPIError:
    status = response.status_code
    data = body if isinstance(body, dict) else {}
    message = data.get("message") or data.get("error") or response.reason_phrase or "error"
    if not isinstance(message, str):
        message = json.dumps(message)
    code = data.get("code")
    kwargs: dict[str, Any] = {
        "status_code": status,
        "code": code if isinstance(code, str) else None,
        "request_id": response.headers.get("x-request-id"),
        "body": body,
    }
    cls = api_error_class(status)
    if cls is DripRateLimitError:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None and isinstance(data.get("retryAfter"), (int, float)):
            retry_after = float(data["retryAfter"])
        return DripRateLimitError(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


class SyncTransport(_TransportBase):
    """Sends specs with an ``httpx.Client`` (given, or owned and closed by ``close``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(settings)
        self._owned = http_client is None
        self.client = http_client or httpx.Client(
            timeout=self._timeout(),
            transport=transport,
            verify=True if transport is not None else shared_ssl_context(),
        )

    def send(self, spec: RequestSpec[T]) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            t0 = time.monotonic()
            try:
                try:
                    response = self.client.request(**self._build(spec))
                except httpx.HTTPError as exc:
                    raise self._network_error(exc, spec) from exc
                return self._read(spec, response, int((time.monotonic() - t0) * 1000))
            except _Attempt as failure:
                delay = self._next_delay(spec, failure, attempt, started)
                if delay is None:
                    raise failure.error from failure.error.__cause__
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        if self._owned:
            self.client.close()


class AsyncTransport(_TransportBase):
    """Sends specs with an ``httpx.AsyncClient`` (given, or owned and closed by ``aclose``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(settings)
        self._owned = http_client is None
        self.client = http_client or httpx.AsyncClient(
            timeout=self._timeout(),
            transport=transport,
            verify=True if transport is not None else shared_ssl_context(),
        )

    async def send(self, spec: RequestSpec[T]) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            t0 = time.monotonic()
            try:
                try:
                    response = await self.client.request(**self._build(spec))
                except httpx.HTTPError as exc:
                    raise self._network_error(exc, spec) from exc
                return self._read(spec, response, int((time.monotonic() - t0) * 1000))
            except _Attempt as failure:
                delay = self._next_delay(spec, failure, attempt, started)
                if delay is None:
                    raise failure.error from failure.error.__cause__
            await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()


class IngestSender:
    """One attempt at ``POST /v1/ingest`` for the delivery worker, which owns the retry loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        # a given client (the Drip client's own) is shared, not closed here
        self._transport = SyncTransport(settings, transport=transport, http_client=http_client)

    def __call__(self, body: bytes) -> m.IngestResult:
        return self._transport.send(ingest(body))

    def close(self) -> None:
        self._transport.close()

"""``Drip`` and ``AsyncDrip``: the typed client of the Drip API.

Both are thin. Each method's parameters, validation and request body are written once, in
``drip._endpoints``; the classes below only bind those functions to a way of sending
(``SyncTransport.send`` or ``await AsyncTransport.send``). Same names on both, awaited on
``AsyncDrip``.

Both also carry the instrumentation (``client.metered``, ``client.run``, ``client.customer``,
``client.flush``, ``client.shutdown``, ``client.stats``): a ``Recorder`` created on first use,
handed to the runs and metered calls made through the client; its background delivery is the
same thread-based worker for both.
"""

from __future__ import annotations

import functools
import inspect
import threading
import typing
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import httpx

from . import _endpoints as _api
from ._config import OnError, Settings, resolve_settings
from ._customer_scope import CustomerScope
from ._delivery import lifecycle
from ._metered import make_metered
from ._recorder import Recorder
from ._scopes import RunContext
from ._transport import AsyncTransport, SyncTransport

if TYPE_CHECKING:
    from ._delivery import DeliveryStats, FlushReport

__all__ = ["AsyncDrip", "Drip"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
Self = TypeVar("Self", bound="_ClientBase")


class _ClientBase:
    """Settings, the embedded local server, and the instrumentation; no sending."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_retry_time: float | None = None,
        strict: bool | None = None,
        on_error: OnError | None = None,
        flush_interval: float | None = None,
        max_batch_items: int | None = None,
        max_batch_bytes: int | None = None,
        max_buffer: int | None = None,
        shutdown_timeout: float | None = None,
        spool_dir: str | None = None,
        spool_max_bytes: int | None = None,
        overflow: str | None = None,
        handle_signals: bool | None = None,
    ) -> None:
        settings = resolve_settings(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_time=max_retry_time,
            strict=strict,
            flush_interval=flush_interval,
            max_batch_items=max_batch_items,
            max_batch_bytes=max_batch_bytes,
            max_buffer=max_buffer,
            shutdown_timeout=shutdown_timeout,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
            overflow=overflow,
            handle_signals=handle_signals,
        )
        if settings.local_db is not None:
            from ._local import attach_local_server

            settings = attach_local_server(settings)
        self.settings: Settings = settings
        lifecycle.prepare(settings)
        self._on_error = on_error
        self._recorder_obj: Recorder | None = None
        self._recorder_lock = threading.Lock()

    def _ingest_sender(self) -> Any:
        """The delivery worker's way to ``POST /v1/ingest``: through this client's transport
        seam (``transport=`` / ``http_client=``), so a mock transport sees the batches."""
        from ._transport import IngestSender

        return IngestSender(self.settings, transport=self._worker_transport)

    #: a sync-capable transport / client the delivery worker may use (set by the subclasses)
    _worker_transport: httpx.BaseTransport | None = None
    _given_http_client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def _recorder(self) -> Recorder:
        """This client's recorder, made on first use."""
        recorder = self._recorder_obj
        if recorder is None:
            with self._recorder_lock:
                if self._recorder_obj is None:
                    self._recorder_obj = Recorder(
                        self.settings, on_error=self._on_error, make_sender=self._ingest_sender
                    )
                recorder = self._recorder_obj
        return recorder

    # -- instrumentation (documented in drip.instrument) ------------------------------------

    def metered(self, meter: str, **kwargs: Any) -> Callable[[F], F]:
        """``@client.metered(meter=...)``: see ``drip.metered``; records go to this client."""
        return make_metered(self._recorder, _none, meter, **kwargs)

    def run(self, workflow: str, **kwargs: Any) -> RunContext:
        """``with client.run(workflow=...)``: see ``drip.run``; records go to this client."""
        return RunContext(self._recorder, _none, workflow, **kwargs)

    def customer(
        self, customer_id: str | None = None, *, external_customer_id: str | None = None
    ) -> CustomerScope:
        """``with client.customer(id):`` sets the customer for everything inside
        (``external_customer_id=``: by your own id)."""
        return CustomerScope(
            customer_id, external_customer_id=external_customer_id, recorder=self._recorder
        )

    def flush(self, timeout: float | None = None) -> FlushReport:
        """Wait until every buffered record is delivered (or ``timeout``); returns a report."""
        return self._recorder.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> FlushReport:
        """``flush`` for asyncio code: waits for the delivery without blocking the event loop."""
        return await self._recorder.aflush(timeout)

    def shutdown(self, timeout: float | None = None) -> FlushReport:
        """Flush, then stop the background worker; returns a report."""
        return self._recorder.shutdown(timeout)

    def stats(self) -> DeliveryStats:
        """Counters of the instrumentation: recorded, sent, duplicates, rejected, dropped..."""
        return self._recorder.stats()


def _none() -> Recorder | None:
    """A client's runs and calls are bound to its recorder: no fallback is ever needed."""
    return None


def _signature(method: Any, fn: Callable[..., Any], awaitable: bool) -> None:
    """Show the method as ``(self, <the endpoint's parameters>) -> <its result model>``."""
    sig = inspect.signature(fn)
    result = typing.get_type_hints(fn, vars(_api))["return"].__args__[0]
    me = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = sig.replace(
        parameters=[me, *sig.parameters.values()],
        return_annotation=Awaitable[result] if awaitable else result,  # type: ignore[valid-type]
    )


def _sync(fn: Callable[P, _api.RequestSpec[T]]) -> Callable[Concatenate[Drip, P], T]:
    @functools.wraps(fn)
    def method(self: Drip, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._transport.send(fn(*args, **kwargs))

    _signature(method, fn, awaitable=False)
    return method


def _async(
    fn: Callable[P, _api.RequestSpec[T]],
) -> Callable[Concatenate[AsyncDrip, P], Awaitable[T]]:
    @functools.wraps(fn)
    async def method(self: AsyncDrip, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._transport.send(fn(*args, **kwargs))

    _signature(method, fn, awaitable=True)
    return method


class Drip(_ClientBase):
    """The synchronous client. ``Drip()`` reads ``DRIP_API_KEY`` (and ``DRIP_BASE_URL``).

    Pass ``http_client=`` or ``transport=`` (e.g. ``httpx.MockTransport``) to control HTTP.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(api_key, base_url, **options)
        self._transport = SyncTransport(self.settings, http_client=http_client, transport=transport)
        self._given_http_client = http_client
        self._worker_transport = transport
        if self.settings.spool_dir:
            self._recorder  # noqa: B018 - replays what earlier processes left, now

    def _ingest_sender(self) -> Any:
        from ._transport import IngestSender

        # The user's seam when there is one. Otherwise the worker opens its own connections
        # (made again in a fork() child): sharing this client's pool across fork() would let
        # two processes write on one socket.
        given = self._given_http_client
        if given is not None:
            return IngestSender(self.settings, http_client=given)
        return IngestSender(self.settings, transport=self._worker_transport)

    ping = _sync(_api.ping)
    create_customer = _sync(_api.create_customer)
    get_customer = _sync(_api.get_customer)
    list_customers = _sync(_api.list_customers)
    track_usage = _sync(_api.track_usage)
    charge = _sync(_api.charge)
    get_usage_summary = _sync(_api.get_usage_summary)
    list_workflows = _sync(_api.list_workflows)
    create_workflow = _sync(_api.create_workflow)
    start_run = _sync(_api.start_run)
    end_run = _sync(_api.end_run)
    emit_event = _sync(_api.emit_event)
    emit_events_batch = _sync(_api.emit_events_batch)
    record_run = _sync(_api.record_run)
    list_runs = _sync(_api.list_runs)
    get_run = _sync(_api.get_run)
    get_run_timeline = _sync(_api.get_run_timeline)

    def close(self) -> None:
        """Flush the instrumentation (bounded) and close the HTTP connections."""
        if self._recorder_obj is not None:
            self._recorder_obj.shutdown(None)
        self._transport.close()

    def __enter__(self) -> Drip:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDrip(_ClientBase):
    """The asyncio client: the same methods as ``Drip``, awaited; use ``async with``."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(api_key, base_url, **options)
        self._transport = AsyncTransport(
            self.settings, http_client=http_client, transport=transport
        )
        # the worker is a thread, not a task: it can use a transport that also sends
        # synchronously (httpx.MockTransport does); otherwise it opens its own connection
        if isinstance(transport, httpx.BaseTransport):
            self._worker_transport = transport
        if self.settings.spool_dir:
            self._recorder  # noqa: B018 - replays what earlier processes left, now

    ping = _async(_api.ping)
    create_customer = _async(_api.create_customer)
    get_customer = _async(_api.get_customer)
    list_customers = _async(_api.list_customers)
    track_usage = _async(_api.track_usage)
    charge = _async(_api.charge)
    get_usage_summary = _async(_api.get_usage_summary)
    list_workflows = _async(_api.list_workflows)
    create_workflow = _async(_api.create_workflow)
    start_run = _async(_api.start_run)
    end_run = _async(_api.end_run)
    emit_event = _async(_api.emit_event)
    emit_events_batch = _async(_api.emit_events_batch)
    record_run = _async(_api.record_run)
    list_runs = _async(_api.list_runs)
    get_run = _async(_api.get_run)
    get_run_timeline = _async(_api.get_run_timeline)

    async def aclose(self) -> None:
        """Flush the instrumentation (bounded) and close the HTTP connections."""
        if self._recorder_obj is not None:
            # wait for the worker without blocking the event loop, then stop it
            await self._recorder_obj.aflush(self.settings.shutdown_timeout)
            self._recorder_obj.shutdown(0)
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncDrip:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

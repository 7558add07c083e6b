"""Carry the current run on outgoing httpx calls (W3C ``baggage``), so the callee continues it.

::

    from drip.integrations import httpx as drip_httpx

    drip_httpx.instrument()              # every httpx.Client / AsyncClient of this process
    drip_httpx.instrument(client)        # or one client (sync or async; httpx2 clients too)

Inside ``drip.run(...)`` each request then carries ``drip.run``, ``drip.customer`` and
``drip.parent`` (the metered call making the request) in its ``baggage`` header, plus
OpenTelemetry's ``traceparent`` when OpenTelemetry is in use; outside a run nothing drip's is
added. The service called continues the run when it trusts the caller
(``DripMiddleware(..., trust_baggage=True)`` or ``drip.context.extract``).

``instrument()`` wraps ``Client.send`` / ``AsyncClient.send`` with wrapt (signatures and
``inspect`` unchanged; ``uninstrument()`` removes it); ``instrument(client)`` adds a request
event hook to that client only.
"""

from __future__ import annotations

import inspect
from typing import Any

import wrapt

from ._outgoing import inject_quietly
from ._requires import requires

httpx = requires("httpx", extra="fastapi", integration="httpx")

__all__ = ["instrument", "uninstrument"]


_MARK = "_drip_baggage_hook"


def _inject_sync(request: Any) -> None:
    inject_quietly(request.headers)


async def _inject_async(request: Any) -> None:
    inject_quietly(request.headers)


def _send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is not None:
        inject_quietly(request.headers)
    return wrapped(*args, **kwargs)


def instrument(client: Any = None) -> None:
    """Inject baggage on the requests of ``client``, or of every httpx client when None.

    Safe to call twice: a client or the process is instrumented once.
    """
    if client is None:
        for cls in (httpx.Client, httpx.AsyncClient):
            if not isinstance(cls.__dict__.get("send"), wrapt.FunctionWrapper):
                wrapt.wrap_function_wrapper(cls, "send", _send)
        return
    if getattr(client, _MARK, False):
        return
    hooks = client.event_hooks
    is_async = isinstance(client, httpx.AsyncClient) or _looks_async(client)
    hooks["request"] = [*hooks.get("request", []), _inject_async if is_async else _inject_sync]
    client.event_hooks = hooks
    setattr(client, _MARK, True)


def _looks_async(client: Any) -> bool:
    # an httpx2 (or other httpx-like) async client: its send is a coroutine function
    return inspect.iscoroutinefunction(getattr(client, "send", None))


def uninstrument(client: Any = None) -> None:
    """Undo ``instrument`` for ``client``, or the process-wide patch when None."""
    if client is None:
        for cls in (httpx.Client, httpx.AsyncClient):
            send = cls.__dict__.get("send")
            if isinstance(send, wrapt.FunctionWrapper):
                cls.send = send.__wrapped__
        return
    if getattr(client, _MARK, False):
        hooks = client.event_hooks
        hooks["request"] = [
            h for h in hooks.get("request", []) if h not in (_inject_sync, _inject_async)
        ]
        client.event_hooks = hooks
        setattr(client, _MARK, False)

"""Carry the current run on outgoing httpx calls (W3C ``baggage``), so the callee continues it.

::

    from drip.integrations import httpx as drip_httpx

    drip_httpx.instrument()              # every httpx.Client / AsyncClient of this process
    drip_httpx.instrument(client)        # or one client (sync or async; httpx2 clients too)
    drip_httpx.instrument(hosts=["*.internal"])   # only to your own services

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
from collections.abc import Iterable
from typing import Any

import wrapt

from ._outgoing import host_patterns, inject_quietly
from ._requires import requires

httpx = requires("httpx", extra="fastapi", integration="httpx")

__all__ = ["instrument", "uninstrument"]


_MARK = "_drip_baggage_hook"
#: the hosts of ``instrument(hosts=...)`` for every client (None: any host)
_hosts: tuple[str, ...] | None = None


def _host(request: Any) -> str | None:
    url = getattr(request, "url", None)
    return getattr(url, "host", None)


def _hooks(hosts: tuple[str, ...] | None) -> tuple[Any, Any]:
    """The request event hooks (sync, async) of one client."""

    def inject_sync(request: Any) -> None:
        inject_quietly(request.headers, _host(request), hosts)

    async def inject_async(request: Any) -> None:
        inject_quietly(request.headers, _host(request), hosts)

    for hook in (inject_sync, inject_async):
        setattr(hook, _MARK, True)
    return inject_sync, inject_async


def _send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is not None:
        inject_quietly(request.headers, _host(request), _hosts)
    return wrapped(*args, **kwargs)


def instrument(client: Any = None, *, hosts: Iterable[str] | str | None = None) -> None:
    """Inject baggage on the requests of ``client``, or of every httpx client when None.

    ``hosts``: only requests to these hosts (``fnmatch`` patterns: ``"billing.internal"``,
    ``"*.svc.cluster.local"``) carry it; by default every request in a run does, a
    third-party API's too (the baggage names the customer). Safe to call twice: a client or
    the process is instrumented once (a second call for the process sets ``hosts``).
    """
    global _hosts
    patterns = host_patterns(hosts)
    if client is None:
        _hosts = patterns
        for cls in (httpx.Client, httpx.AsyncClient):
            if not isinstance(cls.__dict__.get("send"), wrapt.FunctionWrapper):
                wrapt.wrap_function_wrapper(cls, "send", _send)
        return
    if getattr(client, _MARK, False):
        return
    hooks = client.event_hooks
    is_async = isinstance(client, httpx.AsyncClient) or _looks_async(client)
    hook = _hooks(patterns)[1 if is_async else 0]
    hooks["request"] = [*hooks.get("request", []), hook]
    client.event_hooks = hooks
    setattr(client, _MARK, True)


def _looks_async(client: Any) -> bool:
    # an httpx2 (or other httpx-like) async client: its send is a coroutine function
    return inspect.iscoroutinefunction(getattr(client, "send", None))


def uninstrument(client: Any = None) -> None:
    """Undo ``instrument`` for ``client``, or the process-wide patch when None."""
    global _hosts
    if client is None:
        _hosts = None
        for cls in (httpx.Client, httpx.AsyncClient):
            send = cls.__dict__.get("send")
            if isinstance(send, wrapt.FunctionWrapper):
                cls.send = send.__wrapped__
        return
    if getattr(client, _MARK, False):
        hooks = client.event_hooks
        hooks["request"] = [h for h in hooks.get("request", []) if not getattr(h, _MARK, False)]
        client.event_hooks = hooks
        setattr(client, _MARK, False)

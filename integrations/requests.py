"""Carry the current run on outgoing ``requests`` calls (W3C ``baggage``).

::

    from drip.integrations import requests as drip_requests

    drip_requests.instrument()           # every requests.Session (and requests.get & co.)
    drip_requests.instrument(session)    # or one session

``requests`` has no request hook (its only hook is ``response``), so ``Session.send`` is
wrapped with wrapt: the prepared request's headers get drip's baggage just before it is sent.
See ``drip.integrations.httpx`` for what is carried.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import wrapt

from ._outgoing import host_patterns, inject_quietly
from ._requires import requires

requests = requires("requests", extra="requests")

__all__ = ["instrument", "uninstrument"]


def _sender(hosts: tuple[str, ...] | None) -> Any:
    def send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        request = args[0] if args else kwargs.get("request")
        if request is not None:
            inject_quietly(request.headers, _host(request), hosts)
        return wrapped(*args, **kwargs)

    return send


def _host(request: Any) -> str | None:
    try:
        return urlsplit(str(request.url)).hostname
    except ValueError:
        return None


def instrument(session: Any = None, *, hosts: Iterable[str] | str | None = None) -> None:
    """Inject baggage on the requests of ``session``, or of every session when None.

    ``hosts``: only requests to these hosts carry it (see ``drip.integrations.httpx``).
    """
    patterns = host_patterns(hosts)
    target = requests.Session if session is None else session
    send = vars(target).get("send")
    if isinstance(send, wrapt.FunctionWrapper):  # instrumented already: new hosts
        if session is None:
            requests.Session.send = send.__wrapped__
        else:
            del session.send
    wrapt.wrap_function_wrapper(target, "send", _sender(patterns))


def uninstrument(session: Any = None) -> None:
    """Undo ``instrument`` for ``session``, or the process-wide patch when None."""
    target = requests.Session if session is None else session
    send = vars(target).get("send")
    if isinstance(send, wrapt.FunctionWrapper):
        if session is None:
            requests.Session.send = send.__wrapped__
        else:
            del session.send

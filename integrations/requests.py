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

from typing import Any

import wrapt

from ._outgoing import inject_quietly
from ._requires import requires

requests = requires("requests", extra="requests")

__all__ = ["instrument", "uninstrument"]


def _send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is not None:
        inject_quietly(request.headers)
    return wrapped(*args, **kwargs)


def instrument(session: Any = None) -> None:
    """Inject baggage on the requests of ``session``, or of every session when None."""
    target = requests.Session if session is None else session
    if not isinstance(vars(target).get("send"), wrapt.FunctionWrapper):
        wrapt.wrap_function_wrapper(target, "send", _send)


def uninstrument(session: Any = None) -> None:
    """Undo ``instrument`` for ``session``, or the process-wide patch when None."""
    target = requests.Session if session is None else session
    send = vars(target).get("send")
    if isinstance(send, wrapt.FunctionWrapper):
        if session is None:
            requests.Session.send = send.__wrapped__
        else:
            del session.send

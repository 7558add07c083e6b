"""Background Responses (``responses.create(background=True)``): metered when they are done.

A background response is answered ``queued`` / ``in_progress``, without usage; its usage comes
when the caller polls ``responses.retrieve(id)`` (or ``responses.cancel(id)``) until it is done
(``completed``, ``incomplete``, ``failed``, ``cancelled``). drip keeps the event the create
began open, by response id (``hold``), and records it at the first retrieve or cancel that
returns the response done (``seen``), with that usage: the create's run, parent call and
customer (the call was made there), one event per response id however often it is polled.

A response drip did not see created (made by another process, or before ``instrument()``) is
recorded at the first retrieve that sees it done, in the context current there, once per id
(the last ``_KEPT`` ids are remembered). One never seen done is recorded at the process's exit
(or when more than ``_KEPT`` wait) with quantity 0, ``complete: false`` and its last status.
A streamed retrieve (``stream=True``) and a retrieve through ``with_raw_response`` /
``with_streaming_response`` are not read: a response polled only that way is recorded at exit.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import OrderedDict
from typing import Any

from ._llm import LLMCall, safely
from ._openai_streams import _RESPONSES, _usage_of

logger = logging.getLogger("drip")

#: a Responses answer not done yet (``background=True``): its usage comes later
PENDING = frozenset({"queued", "in_progress"})
#: how many waiting responses, and recorded ids, drip keeps
_KEPT = 10_000

_lock = threading.Lock()
#: response id -> [the create's call, the model it named, the last status seen]
_waiting: OrderedDict[str, list[Any]] = OrderedDict()
#: ids already recorded (a poll after completion records nothing)
_recorded: OrderedDict[str, None] = OrderedDict()


def hold(response: Any, llm: LLMCall, model: str | None) -> None:
    """Keep the event of a create answered not done, until a retrieve sees it done."""
    response_id, status = getattr(response, "id", None), getattr(response, "status", None)
    if not isinstance(response_id, str) or llm.finished:
        llm.finish_tokens(model, None, complete=False, extra={"status": status})
        return
    with _lock:
        _waiting[response_id] = [llm, model, status]
        overflow = _waiting.popitem(last=False) if len(_waiting) > _KEPT else None
    if overflow is not None:
        _give_up(*overflow[1])


def _give_up(llm: LLMCall, model: str | None, status: Any) -> None:
    llm.finish_tokens(model, None, complete=False, extra={"status": status})


def seen(meter: str, response: Any) -> None:
    """A retrieved (or cancelled) response: record its call if it is done now. Never raises."""
    try:
        _seen(meter, response)
    except Exception:
        logger.exception("drip: metering a retrieved OpenAI response failed")


def _seen(meter: str, response: Any) -> None:
    response_id, status = getattr(response, "id", None), getattr(response, "status", None)
    if not isinstance(response_id, str) or not isinstance(status, str):
        return
    with _lock:
        if status in PENDING:
            if response_id in _waiting:
                _waiting[response_id][2] = status
            return
        entry = _waiting.pop(response_id, None)
        if entry is None and response_id in _recorded:
            return
        _recorded[response_id] = None
        if len(_recorded) > _KEPT:
            _recorded.popitem(last=False)
    if entry is None:  # not created here: recorded where it is seen done
        llm, model = LLMCall(meter, "openai"), None
    else:
        llm, model = entry[0], entry[1]
    usage = safely(_usage_of, _RESPONSES, response)
    model = getattr(response, "model", None) or model
    done = status == "completed"
    llm.finish_tokens(
        model,
        usage,
        complete=done or usage is not None,
        extra=None if done else {"status": status},
    )


def _end_waiting_at_exit() -> None:
    with _lock:
        waiting = list(_waiting.values())
        _waiting.clear()
    for llm, model, status in waiting:
        try:
            _give_up(llm, model, status)
        except Exception:  # never stand between the process and its end
            logger.exception("drip: recording a background response at exit failed")


atexit.register(_end_waiting_at_exit)


def retrieve_wrapper(meter: str, is_async: bool) -> Any:
    """A wrapt wrapper for ``responses.retrieve`` / ``.cancel``: the answer goes to ``seen``
    (a stream or raw response passes through unread)."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        if hasattr(result, "status") and hasattr(result, "usage"):
            seen(meter, result)
        return result

    async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = await wrapped(*args, **kwargs)
        if hasattr(result, "status") and hasattr(result, "usage"):
            seen(meter, result)
        return result

    return async_wrapper if is_async else wrapper

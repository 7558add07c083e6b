"""What ``LLMCall.read_on`` shares with the rest (``drip.integrations._llm``): its bound, its
once-per-endpoint warning, and the read on of an async stream dropped at its ``finish_reason``.

A caller that leaves a stream right after a chunk with a ``finish_reason`` (``break``, then
closing it, leaving ``with``, or dropping it) has been billed in full: the usage comes in the
next item. drip reads on for it, at most ``READ_ON_SECONDS``; see ``LLMCall.read_on``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._llm import LLMCall

logger = logging.getLogger("drip")

#: how long a stream left at its ``finish_reason`` is read on for its usage (``read_on``)
READ_ON_SECONDS = 0.5
_warned: set[str | None] = set()


def _asked(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        logger.exception("drip: reading a stream's state failed")
        return None


def missed(call: LLMCall) -> None:
    """Warn (once per endpoint) that a stream read on did not give its usage in time."""
    state = call.stream
    if state is None or state.done:
        return
    endpoint = _asked(state.endpoint)
    if endpoint not in _warned and len(_warned) < 256:
        _warned.add(endpoint)
        logger.warning(
            "drip: %s stream%s was left at its finish_reason and its usage did not come "
            "within %s s; recorded complete: false without tokens. Read streams to their end "
            "to meter them exactly. Said once per endpoint.",
            call.provider, f" from {endpoint}" if endpoint else "", READ_ON_SECONDS,
        )  # fmt: skip


def later(call: LLMCall) -> bool:
    """An async stream dropped at its ``finish_reason`` (no ``aclose``; its call is being
    freed): read on in a task of the running loop, which keeps the call until it ends it.
    False if that cannot be (not such a stream, or no running loop here)."""
    state = call.stream
    if state is None or state.done or not hasattr(state.rest, "__anext__"):
        return False
    if not _asked(state.finishing):
        return False
    try:
        task = asyncio.get_running_loop().create_task(_read_on_then_end(call))
    except Exception:  # no running loop (another thread, the loop closing)
        return False
    _reading.add(task)  # the loop holds its tasks weakly: kept here until it is done
    task.add_done_callback(_reading.discard)
    return True


#: the read-on tasks not yet done (see ``later``)
_reading: set[asyncio.Task[None]] = set()


async def _read_on_then_end(call: LLMCall) -> None:
    try:
        await call.aread_on()
    finally:
        call.end_stream()

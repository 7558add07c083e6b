"""Patching SDK methods with wrapt, idempotently, and undoing it exactly.

``Patches.wrap(owner, "create", wrapper)`` wraps a method on a class (every client) or on one
resource object (one client) with ``wrapt.wrap_function_wrapper``, so signatures and
``inspect`` still see the original. Wrapping what is already wrapped by drip does nothing (so
``instrument()`` twice records once); ``undo()`` puts back exactly what was there.

A call that passes through two drip wrappers (a client instrumented on its own and through its
class) is recorded by the outer one only: ``IN_CALL`` is set while a wrapped call runs.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import wrapt

if TYPE_CHECKING:
    from ._llm import LLMCall

__all__ = ["IN_CALL", "Intercepted", "Patches", "method_wrapper"]

#: True while a drip-wrapped LLM call is running in this context
IN_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("drip_llm_call", default=False)

_MISSING = object()
logger = logging.getLogger("drip")


def _is_ours(method: Any) -> bool:
    """A drip wrapper, or a method bound from one (wrapt's bound wrapper names its parent)."""
    parent = getattr(method, "_self_parent", None)
    return bool(getattr(method, "_self_drip", False) or getattr(parent, "_self_drip", False))


class Patches:
    """The patches one integration made, so ``uninstrument()`` can undo them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: list[tuple[Any, str, Any]] = []

    def wrap(
        self, owner: Any, name: str, wrapper: Callable[..., Any], *, undone: bool = True
    ) -> bool:
        """Wrap ``owner.name`` (a class or an object); False if drip already wrapped it.

        ``undone=False``: ``undo`` leaves it (a client copy's: not kept here, so copies made
        per request are freed with their client).
        """
        with self._lock:
            current = getattr(owner, name, None)
            if current is None or _is_ours(current):
                return False
            before = vars(owner).get(name, _MISSING)
            wrapt.wrap_function_wrapper(owner, name, wrapper)
            vars(owner)[name]._self_drip = True
            if undone:
                self._done.append((owner, name, before))
            return True

    def follow_copies(
        self, client: Any, instrument: Callable[[Any], None], *, undone: bool = True
    ) -> None:
        """Instrument what ``client.copy()`` / ``client.with_options()`` return too (the SDKs'
        one method under two names): a new client with new resources, which a client
        instrumented on its own would otherwise hand out unmetered."""

        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            copied = wrapped(*args, **kwargs)
            try:
                instrument(copied)
            except Exception:
                logger.exception("drip: a copy of an instrumented client is not metered")
            return copied

        for name in ("copy", "with_options"):
            if callable(getattr(client, name, None)):
                self.wrap(client, name, wrapper, undone=undone)

    def undo(self) -> None:
        """Restore every wrapped method, newest first."""
        with self._lock:
            while self._done:
                owner, name, before = self._done.pop()
                if before is _MISSING:
                    delattr(owner, name)
                else:
                    setattr(owner, name, before)

    def __bool__(self) -> bool:
        return bool(self._done)


class Intercepted(Protocol):
    """One intercepted SDK call, as a provider module begins it from the call's kwargs."""

    kwargs: dict[str, Any]
    llm: LLMCall

    def result(self, result: Any) -> Any: ...  # what the caller gets back (maybe a proxy)

    def failed(self, exc: BaseException) -> None: ...


def _again(call: Intercepted, exc: Exception) -> dict[str, Any] | None:
    """The kwargs to send once more when the provider refused what drip added to the request
    (``call.refused(exc)``, if the integration has it), else None."""
    refused = getattr(call, "refused", None)
    return None if refused is None else refused(exc)  # type: ignore[no-any-return,unused-ignore]


def method_wrapper(begin: Callable[[dict[str, Any], Any], Intercepted], is_async: bool) -> Any:
    """A wrapt wrapper that begins a call (``begin(kwargs, instance)``), runs the SDK method,
    and hands over its outcome.

    SDK async methods are not always coroutine functions (openai's ``required_args`` wraps
    them in a sync function that returns the coroutine), so the caller says which it is. A
    request the provider refuses because of what drip added to it is sent once more as the
    caller wrote it (see ``_again``): instrumenting must not break a call.
    """

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if IN_CALL.get():
            return wrapped(*args, **kwargs)
        call = begin(kwargs, instance)
        event = call.llm.event
        token = IN_CALL.set(True)
        current = None if event is None else event.enter()
        try:
            try:
                result = wrapped(*args, **call.kwargs)
            except Exception as exc:
                again = _again(call, exc)
                if again is None:
                    raise
                result = wrapped(*args, **again)
        except BaseException as exc:
            call.failed(exc)
            raise
        finally:
            if current is not None:
                event.exit(current)  # type: ignore[union-attr]
            IN_CALL.reset(token)
        return call.result(result)

    async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if IN_CALL.get():
            return await wrapped(*args, **kwargs)
        call = begin(kwargs, instance)
        event = call.llm.event
        token = IN_CALL.set(True)
        current = None if event is None else event.enter()
        try:
            try:
                result = await wrapped(*args, **call.kwargs)
            except Exception as exc:
                again = _again(call, exc)
                if again is None:
                    raise
                result = await wrapped(*args, **again)
        except BaseException as exc:
            call.failed(exc)
            raise
        finally:
            if current is not None:
                event.exit(current)  # type: ignore[union-attr]
            IN_CALL.reset(token)
        return call.result(result)

    return async_wrapper if is_async else wrapper

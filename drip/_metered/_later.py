"""An event begun now and ended later, exactly once: what a stream or a callback needs.

``begin_later(spec)`` begins an event on ``_call``'s general path, in the current context (or
in ``context``): inside a run it joins the run under the current metered call; outside runs it
becomes a usage record of the current customer, with the same lenient/strict rule as
``@metered`` (no customer: the problem is reported, strict mode raises it, and None is
returned: nothing to end).

Beginning does not make the event current. ``Later.enter()`` / ``Later.exit(token)`` make it
current around work that should nest under it (the provider call itself), and
``Later.context()`` gives a context copy in which it is current (for callbacks that run work
later, elsewhere). In both, nested metered calls take it as their parent and
``current_event()`` returns its handle.

``Later.end(quantity, metadata, error)`` records it, once, from any thread or task: the first
call wins and later calls return False. The quantity is checked like a handle's
(``current_event().set_quantity``): a bad one is recorded as 0 with outcome ``error``.

Why not ``@metered`` on a one-step generator (what the LLM integrations did first): a metered
generator copies the context and re-enters it on every step, begins through ``begin_in``, and
keeps a suspended frame per call. This is the same ``Call`` with none of that.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

from .._recorder import Fallback, Recorder
from .._records import MeterSpec
from ..context import SCOPE
from ._call import Call, EventHandle, Spec, _begin, handles

__all__ = ["Later", "begin_later", "later_spec"]

_perf = time.perf_counter_ns
_set, _reset = SCOPE.set, SCOPE.reset
_NO_ARGS: tuple[Any, ...] = ()


def later_spec(
    recorder: Recorder | None, fallback: Fallback, meter: str, units: str | None, name: str
) -> Spec:
    """What ``begin_later`` needs fixed once: the meter (also the event type) and its units.

    ``name`` names the caller in reports (``an LLM call (llm_tokens) was made ...``). The
    quantity is always given at ``Later.end``.
    """
    spec = Spec(recorder, fallback, MeterSpec(meter, meter, units, None), name)
    spec.qconst = 0
    spec.later = True
    return spec


class Later:
    """A begun event: make it current around nested work, end it once."""

    __slots__ = ("_open", "scope")

    def __init__(self, call: Call) -> None:
        # ``list.pop`` is atomic: whoever pops the call ends the event, once, without a lock
        self._open = [call]
        #: the scope in which this event is current (customer, run, its sequence number)
        self.scope = call.scope

    @property
    def ended(self) -> bool:
        """True once ``end`` was called."""
        return not self._open

    def enter(self) -> contextvars.Token[Any]:
        """Make this event current here (nested calls become its children) until ``exit``."""
        return _set(self.scope)

    @staticmethod
    def exit(token: contextvars.Token[Any]) -> None:
        """Undo ``enter``."""
        _reset(token)

    def context(self, base: contextvars.Context | None = None) -> contextvars.Context:
        """A copy of ``base`` (default: the current context) in which this event is current."""
        ctx = contextvars.copy_context() if base is None else base.copy()
        ctx.run(_set, self.scope)
        return ctx

    def end(
        self,
        quantity: float,
        metadata: dict[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> bool:
        """Record the event now (outcome ``error`` when ``error`` is given); False if it was
        already ended. Metadata set through ``current_event()`` while it was current is kept
        (``metadata`` wins on the same key)."""
        try:
            call = self._open.pop()
        except IndexError:
            return False
        t1 = _perf()
        seq = call.seq
        handle = handles.get(seq)
        if handle is None:  # setdefault: a current_event() racing this end keeps its handle
            handle = handles.setdefault(seq, EventHandle(seq, call.scope[1] is None))
        handle._quantity = quantity  # checked by Call.finish, like a handle's quantity
        if metadata:
            handle._metadata = {**handle._metadata, **metadata} if handle._metadata else metadata
        call.finish(t1, None, error, evaluate=False)
        return True

    def __repr__(self) -> str:
        state = "open" if self._open else "ended"
        return f"<drip Later seq={self.scope[2]} {state}>"


def begin_later(spec: Spec, context: contextvars.Context | None = None) -> Later | None:
    """Begin an event now in the current context (or in ``context``); None: not recorded."""
    if context is None:
        call = _begin(spec, _NO_ARGS, {})
    else:  # a copy: another thread may be running in ``context`` right now
        call = context.copy().run(_begin, spec, _NO_ARGS, {})
    return None if call is None else Later(call)

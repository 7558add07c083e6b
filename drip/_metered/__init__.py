"""``@metered``: the decorator factory, the four wrappers and ``current_event()``.

``make_metered`` checks what can be checked when the decorator is applied (meter, quantity,
units, metadata, customer) and raises there; it then picks one of the four wrappers in
``_wrap`` (function, coroutine, generator, async generator). ``_call`` holds one call's general
path and its ``current_event()`` handle. ``_later`` begins an event now and ends it later,
once (``begin_later``: what the LLM integrations' streams and callbacks record through). What a
metered call records is documented on ``drip.metered`` (``drip.instrument``).

The recorder a call records into is the run's (inside a run), else the one the decorator was
bound to (``client.metered``), else the ``fallback`` handed down by the caller: the module-level
``drip.metered`` hands down the default client's recorder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .._checks import (
    ExternalId,
    check_customer,
    check_metadata,
    check_name,
    check_text,
    quantity_problem,
)
from .._recorder import Fallback, Recorder
from .._records import MeterSpec
from ..errors import DripValidationError
from ._call import EventHandle, Spec, current_event
from ._later import Later, begin_later, later_spec
from ._wrap import wrap_async_generator, wrap_coroutine, wrap_function, wrap_generator

__all__ = ["EventHandle", "Later", "begin_later", "current_event", "later_spec", "make_metered"]

F = TypeVar("F", bound=Callable[..., Any])


def _metadata(metadata: Any) -> dict[str, Any] | None:
    """The shared metadata rules; a non-dict is a TypeError at decoration."""
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    return check_metadata(metadata)


def make_metered(
    recorder: Recorder | None,
    fallback: Fallback,
    meter: str,
    *,
    quantity: float | Callable[[Any], float] = 1,
    units: str | None = None,
    event_type: str | None = None,
    customer_id: str | Callable[..., str] | None = None,
    metadata: dict[str, Any] | None = None,
    external_customer_id: str | Callable[..., str] | None = None,
) -> Callable[[F], F]:
    """``metered`` bound to ``recorder`` (a client's), or to ``fallback`` when None."""
    if callable(meter):
        raise TypeError("metered needs a meter name: write @drip.metered('meter'), not @metered")
    check_name(meter, "meter")
    event_type = check_name(event_type, "event_type", optional=True) or meter
    check_text(units, "units")
    spec_m = MeterSpec(meter, event_type, units, _metadata(metadata))
    qfn: Callable[[Any], Any] | None = None
    if callable(quantity):
        qfn = quantity
    elif isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
        raise TypeError(
            f"quantity must be a number or a callable of the return value, "
            f"got {type(quantity).__name__}"
        )
    elif quantity_problem(quantity) is not None:
        raise DripValidationError(f"quantity {quantity_problem(quantity)}", field="quantity")
    customer_fn: Callable[..., Any] | None = None
    where = f"@metered({meter!r})"
    if customer_id is not None and external_customer_id is not None:
        check_customer(customer_id, external_customer_id, where)  # raises: not both
    if callable(customer_id):
        customer_fn, customer_id = customer_id, None
    elif callable(external_customer_id):
        own = external_customer_id

        def customer_fn(*args: Any, **kwargs: Any) -> Any:
            found = own(*args, **kwargs)
            return None if found is None else ExternalId(found)

    else:
        customer_id = check_customer(customer_id, external_customer_id, where)

    def decorate(fn: F) -> F:
        if isinstance(fn, (classmethod, staticmethod)):
            return type(fn)(decorate(fn.__func__))
        if not callable(fn):
            raise TypeError(f"metered can only decorate a callable, got {type(fn).__name__}")
        spec = Spec(recorder, fallback, spec_m, getattr(fn, "__qualname__", repr(fn)))
        spec.qfn, spec.qconst = qfn, None if qfn is not None else quantity  # type: ignore[assignment]
        spec.customer, spec.customer_fn = customer_id, customer_fn
        if inspect.isasyncgenfunction(fn):
            return wrap_async_generator(fn, spec)  # type: ignore[no-any-return]
        if inspect.isgeneratorfunction(fn):
            return wrap_generator(fn, spec)  # type: ignore[no-any-return]
        if inspect.iscoroutinefunction(fn):
            return wrap_coroutine(fn, spec)  # type: ignore[return-value]
        return wrap_function(fn, spec)  # type: ignore[return-value]

    return decorate

"""``drip.customer(...)``: the customer everything inside records for."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ._checks import check_customer
from ._recorder import Fallback, Recorder, resolve
from ._scopes import restore
from .context import SCOPE
from .errors import DripValidationError

__all__ = ["CustomerScope"]

F = TypeVar("F", bound=Callable[..., Any])


def _nobody() -> Recorder | None:
    return None


class CustomerScope:
    """What ``drip.customer(id)`` returns: everything inside records for this customer.

    ``drip.customer(external_customer_id="user_123")`` names it by your own id instead.

    An id that cannot be one (blank, too long, not a string) comes from data, so it is a
    call-time problem: reported when the scope is entered (raised there in strict mode), and
    nothing inside is recorded for a customer it did not name: what runs inside has no
    customer (the one around it would be billed for someone else). Neither id, or both, is a
    mistake in the code: raised at once.
    """

    def __init__(
        self,
        customer_id: str | None = None,
        *,
        external_customer_id: str | None = None,
        recorder: Recorder | None = None,
        fallback: Fallback = _nobody,
    ) -> None:
        self._recorder, self._fallback = recorder, fallback
        self._problem: Exception | None = None
        try:
            self.customer_id: str | None = check_customer(
                customer_id, external_customer_id, "drip.customer(...)", required=True
            )
        except (DripValidationError, TypeError) as exc:
            if (customer_id is None) == (external_customer_id is None):
                raise  # neither or both: a mistake in the code, not in the data
            self.customer_id, self._problem = None, exc
        self._tokens: list[Any] = []

    def __enter__(self) -> str | None:
        if self._problem is not None:
            instr = resolve(self._recorder, self._fallback)
            if instr is not None:
                instr.report(self._problem, "what runs inside for that customer")
        _, run, seq = SCOPE.get()
        self._tokens.append(SCOPE.set((self.customer_id, run, seq)))
        return self.customer_id

    def __exit__(self, *exc: object) -> None:
        restore(self._tokens.pop())

    async def __aenter__(self) -> str | None:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()

    def _again(self) -> CustomerScope:
        # a fresh scope per call (tokens are per entry); the id is already checked
        scope = CustomerScope.__new__(CustomerScope)
        scope.customer_id, scope._tokens = self.customer_id, []
        scope._recorder, scope._fallback, scope._problem = self._recorder, self._fallback, None
        return scope

    def __call__(self, fn: F) -> F:
        """Decorate a function (sync or async): its calls run for this customer."""
        if self._problem is not None:  # a constant given to a decorator: a mistake
            raise self._problem
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def with_customer_async(*args: Any, **kwargs: Any) -> Any:
                async with self._again():
                    return await fn(*args, **kwargs)

            return with_customer_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def with_customer(*args: Any, **kwargs: Any) -> Any:
            with self._again():
                return fn(*args, **kwargs)

        return with_customer  # type: ignore[return-value]

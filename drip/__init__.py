"""drip: usage attribution and execution traces for AI agents, APIs and batch jobs.

::

    from drip import drip

    customer = drip.create_customer(external_customer_id="user_123")
    drip.track_usage(customer_id=customer.id, meter="api_calls", quantity=1)
"""

from __future__ import annotations

from types import FunctionType

from ._default import configure
from ._delivery import DeliveryStats, FlushReport
from ._metered import EventHandle
from ._scopes import Run
from ._version import __version__
from .client import AsyncDrip, Drip
from .errors import (
    DripAPIError,
    DripAuthenticationError,
    DripBadRequestError,
    DripConfigurationError,
    DripConflictError,
    DripDeliveryError,
    DripError,
    DripNetworkError,
    DripNotFoundError,
    DripPermissionError,
    DripRateLimitError,
    DripServerError,
    DripTimeoutError,
    DripValidationError,
)
from .instrument import (
    LazyClient,
    aflush,
    current_event,
    customer,
    flush,
    metered,
    run,
    shutdown,
    stats,
)
from .models import (
    ChargeResult,
    Customer,
    CustomerList,
    EmitEventsBatchResult,
    EndRunResult,
    EventResult,
    PingResult,
    RecordRunResult,
    RunDetails,
    RunResult,
    RunStatus,
    RunTimeline,
    TrackUsageResult,
    UsageSummary,
    Workflow,
)

#: The lazy default client: reads DRIP_API_KEY / DRIP_BASE_URL on first use.
drip = LazyClient()

# -- propagation (issue 10): drip._remote hands drip.context.inject / extract their work --------
from . import _remote  # noqa: E402, F401

__all__ = [
    "AsyncDrip",
    "ChargeResult",
    "Customer",
    "CustomerList",
    "DeliveryStats",
    "Drip",
    "DripAPIError",
    "DripAuthenticationError",
    "DripBadRequestError",
    "DripConfigurationError",
    "DripConflictError",
    "DripDeliveryError",
    "DripError",
    "DripNetworkError",
    "DripNotFoundError",
    "DripPermissionError",
    "DripRateLimitError",
    "DripServerError",
    "DripTimeoutError",
    "DripValidationError",
    "EmitEventsBatchResult",
    "EndRunResult",
    "EventHandle",
    "EventResult",
    "FlushReport",
    "PingResult",
    "RecordRunResult",
    "Run",
    "RunDetails",
    "RunResult",
    "RunStatus",
    "RunTimeline",
    "TrackUsageResult",
    "UsageSummary",
    "Workflow",
    "__version__",
    "aflush",
    "configure",
    "current_event",
    "customer",
    "drip",
    "flush",
    "metered",
    "run",
    "shutdown",
    "stats",
]

# Public names say where users find them (``drip.Run``, not ``drip._scopes.Run``), in reprs,
# tracebacks and docs. The wire models keep their module: pydantic resolves their annotations
# there.
for _name in __all__:
    _obj = globals()[_name]
    _where = getattr(_obj, "__module__", None)
    if (
        isinstance(_obj, (type, FunctionType))
        and isinstance(_where, str)
        and _where.startswith("drip.")
        and not _where.startswith("drip.models")
    ):
        _obj.__module__ = "drip"
del _name, _obj, _where

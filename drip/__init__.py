"""drip: usage attribution and execution traces for AI agents, APIs and batch jobs.

::

    from drip import drip

    customer = drip.create_customer(external_customer_id="user_123")
    drip.track_usage(customer_id=customer.id, meter="api_calls", quantity=1)
"""

from __future__ import annotations

from ._calls import EventHandle
from ._default import LazyClient, configure
from ._reports import DeliveryStats, FlushReport
from ._run import Run
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
from .instrument import current_event, customer, flush, metered, run, shutdown, stats
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

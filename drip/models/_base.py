"""The base of every wire model, the shared field types and enumerations."""

from __future__ import annotations

import enum
import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

#: Largest metadata object accepted, as compact JSON bytes (client and server agree on it).
MAX_METADATA_BYTES = 16 * 1024
#: Longest identifier-like string (ids, keys, meters, event types).
MAX_NAME_LENGTH = 256


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a bool")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinity)")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


#: A usage quantity: a finite number. bool is refused (``True`` is not a quantity).
Quantity = Annotated[float, BeforeValidator(_not_bool), AfterValidator(_finite)]
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_non_empty)]
Metadata = dict[str, Any]


class DripModel(BaseModel):
    """Base of every wire model: camelCase aliases, snake_case attributes, extra keys ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
        # schemas are built on first use, not at import: `import drip` stays cheap
        defer_build=True,
    )

    def to_wire(self, *, drop_none: bool = True) -> dict[str, Any]:
        """The JSON-ready body (camelCase keys)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=drop_none)


class RunStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"


TERMINAL_RUN_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMEOUT}
)


class ChargeStatus(str, enum.Enum):
    PENDING_SETTLEMENT = "PENDING_SETTLEMENT"
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"
    ADJUSTED = "ADJUSTED"


class CustomerStatus(str, enum.Enum):
    ACTIVE = "ACTIVE"
    LOW_BALANCE = "LOW_BALANCE"
    PAUSED = "PAUSED"


# --------------------------------------------------------------------------------------------
# health


class Health(DripModel):
    """``GET /health``: ``timestamp`` is Unix seconds."""

    status: str
    timestamp: int


class PingResult(DripModel):
    """What ``ping()`` returns."""

    ok: bool
    status: str
    latency_ms: int
    timestamp: int | None = None


#: the rule of every request that names a customer, said once for client and server
ONE_CUSTOMER = "give exactly one of customer_id and external_customer_id"


class CustomerRef(DripModel):
    """Base of the requests that name a customer: by Drip's id (``cus_…``) or by your own.

    ``external_customer_id`` (extension) is the id your system knows (``user_123``); the server
    finds the account's customer with it, or creates it on first use unless that is turned off.
    """

    customer_id: Name | None = None
    external_customer_id: Name | None = None

    @model_validator(mode="after")
    def _one_customer(self) -> CustomerRef:
        if (self.customer_id is None) == (self.external_customer_id is None):
            raise ValueError(ONE_CUSTOMER)
        return self

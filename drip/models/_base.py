"""The base of every wire model, the shared field types and enumerations."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

# the rules are drip._checks' (the one place for them); the models apply them on both sides
from drip._checks import (
    MAX_METADATA_BYTES,
    MAX_NAME_LENGTH,
    MAX_QUANTITY,
    metadata_problem,
    quantity_problem,
    text_problem,
)

__all__ = ["MAX_METADATA_BYTES", "MAX_NAME_LENGTH", "MAX_QUANTITY"]


def _quantity(value: Any) -> Any:
    if isinstance(value, str):  # the wire has always taken a numeric string ("4")
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value[:40]!r}") from None
    problem = quantity_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    problem = metadata_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: A quantity as a request carries it: a finite number, >= 0, at most ``MAX_QUANTITY``; a
#: bool is refused (``True`` is not a quantity)
Quantity = Annotated[float, BeforeValidator(_quantity)]
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_name)]
#: metadata as a request carries it: checked (JSON, size, depth, storable text)
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]
#: metadata as the server answers it: never re-checked, so an answer always parses
StoredMetadata = dict[str, Any]


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

"""Each endpoint of the Drip API as a pure function: arguments -> ``RequestSpec``.

A method's parameters, validation and body live here, once. ``Drip`` and ``AsyncDrip`` only
differ in how they send a spec (``drip._transport``). Nothing here does I/O.

Validation happens before anything is sent and raises ``DripValidationError`` naming the field.
Idempotency keys are made here, once per call, so every retry of that call reuses them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from . import models as m
from ._checks import check_metadata, check_name, check_quantity
from ._ids import idempotency_key, new_id
from ._specs import RawResponse, RequestSpec
from .errors import DripAuthenticationError, DripValidationError
from .models._ingest import read_ingest_result

__all__ = ["RawResponse", "RequestSpec"]

M = TypeVar("M", bound=BaseModel)


# --------------------------------------------------------------------------------------------
# validation helpers


def _field_name(loc: tuple[int | str, ...]) -> str:
    from pydantic.alias_generators import to_snake

    return ".".join(to_snake(p) if isinstance(p, str) else str(p) for p in loc) or "body"


def build(model: type[M], **values: Any) -> M:
    """Validate arguments into a request model; a bad one raises DripValidationError."""
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = _field_name(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        raise DripValidationError(f"{name}: {msg}", field=name) from None


def _segment(value: str, name: str) -> str:
    """A path segment, escaped so an id cannot address another resource (``.`` and ``..``
    too: HTTP clients resolve them as a folder and its parent)."""
    text = quote(_name(value, name), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def _name(value: Any, name: str) -> str:
    """A required name; a non-string is a validation error here (a client method's argument)."""
    if not isinstance(value, str):
        raise DripValidationError(f"{name} must be a non-empty string", field=name)
    return check_name(value, name)  # type: ignore[return-value]


def _customer(customer_id: Any, external_customer_id: Any) -> dict[str, str]:
    """The customer a write names: Drip's id or your own id, exactly one (the server finds or
    creates the customer with an external id, so there is no look-up request here)."""
    if (customer_id is None) == (external_customer_id is None):
        raise DripValidationError(
            f"{m.ONE_CUSTOMER} (customer_id is Drip's cus_… id, external_customer_id your own)",
            field="customer_id",
        )
    if external_customer_id is not None:
        return {"external_customer_id": _name(external_customer_id, "external_customer_id")}
    return {"customer_id": _name(customer_id, "customer_id")}


def _read_customer(customer_id: Any, external_customer_id: Any) -> dict[str, str]:
    """The customer a read is filtered by: none, Drip's id or either id (``customer_id``), or
    your own id only (``external_customer_id``); an empty one is an error, not "everyone"."""
    if customer_id is not None and external_customer_id is not None:
        raise DripValidationError(
            "give customer_id or external_customer_id, not both", field="customer_id"
        )
    if external_customer_id is not None:
        return {"externalCustomerId": _name(external_customer_id, "external_customer_id")}
    return {} if customer_id is None else {"customerId": _name(customer_id, "customer_id")}


def _required(value: Any, name: str) -> Any:
    if value is None:
        raise DripValidationError(f"{name} is required", field=name)
    return value


def _model(model: type[M]) -> Callable[[RawResponse], M]:
    def parse(raw: RawResponse) -> M:
        # pydantic parses the JSON itself, in one pass (much faster for large batch answers)
        return model.model_validate_json(raw.content)

    return parse


# --------------------------------------------------------------------------------------------
# endpoints


def ping() -> RequestSpec[m.PingResult]:
    """Check the server and the key: ``ok`` is true when it answers healthy.

    A key the server refuses (401) raises ``DripAuthenticationError``: ping is how users check
    their setup. Other HTTP errors are reported in the result, not raised."""

    def parse(raw: RawResponse) -> m.PingResult:
        body = raw.body if isinstance(raw.body, dict) else {}
        if raw.status_code == 401:
            message = body.get("message") if isinstance(body.get("message"), str) else None
            raise DripAuthenticationError(
                message or "The server refused the API key",
                status_code=401,
                code=body.get("code") if isinstance(body.get("code"), str) else None,
                body=raw.body,
            )
        status = body.get("status")
        status = status if isinstance(status, str) else "unknown"
        if not 200 <= raw.status_code < 300:
            status = f"error:{raw.status_code}" if status == "unknown" else status
        ts = body.get("timestamp")
        return m.PingResult(
            ok=200 <= raw.status_code < 300 and status == "healthy",
            status=status,
            latency_ms=raw.elapsed_ms,
            timestamp=ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
        )

    return RequestSpec(
        "GET", "/health", parse, outside_v1=True, raise_for_status=False, retry_safe=True,
        max_attempts=1,
    )  # fmt: skip


def create_customer(
    external_customer_id: str | None = None,
    onchain_address: str | None = None,
    is_internal: bool | None = None,
    metadata: dict[str, Any] | None = None,
) -> RequestSpec[m.Customer]:
    """Create a customer; at least one of ``external_customer_id`` or ``onchain_address``.

    Creating the same identity again answers the existing customer (``is_duplicate=True``);
    a different customer with that ``external_customer_id`` is a ``DripConflictError``.
    """
    req = build(
        m.CreateCustomerRequest,
        external_customer_id=external_customer_id,
        onchain_address=onchain_address,
        is_internal=is_internal,
        metadata=check_metadata(metadata),
        return_existing=True,
    )
    return RequestSpec("POST", "/customers", _model(m.Customer), body=req.to_wire())


def get_customer(customer_id: str) -> RequestSpec[m.Customer]:
    """One customer by its Drip id."""
    path = f"/customers/{_segment(customer_id, 'customer_id')}"
    return RequestSpec("GET", path, _model(m.Customer), retry_safe=True)


def list_customers(
    status: m.CustomerStatus | str | None = None,
    limit: int = 100,
    offset: int = 0,
    *,
    cursor: str | None = None,
) -> RequestSpec[m.CustomerList]:
    """Customers of this account, oldest first (``limit`` 1-1000); the next page: the answer's
    ``next_cursor`` as ``cursor`` (or ``offset``)."""
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise DripValidationError("limit must be an int between 1 and 1000", field="limit")
    if not isinstance(offset, int) or offset < 0:
        raise DripValidationError("offset must be an int >= 0", field="offset")
    params: dict[str, Any] = {"limit": limit}
    if offset:
        params["offset"] = offset
    if cursor:
        params["cursor"] = cursor
    if status is not None:
        params["status"] = m.CustomerStatus(status).value
    return RequestSpec("GET", "/customers", _model(m.CustomerList), params=params, retry_safe=True)


def track_usage(
    customer_id: str | None = None,
    meter: str | None = None,
    quantity: float | None = None,
    idempotency_key: str | None = None,
    units: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    external_customer_id: str | None = None,
) -> RequestSpec[m.TrackUsageResult]:
    """Record metered usage (no billing) for ``customer_id`` (``cus_…``) or your own
    ``external_customer_id`` (exactly one). A key is made when you pass none."""
    req = build(
        m.TrackUsageRequest,
        **_customer(customer_id, external_customer_id),
        usage_type=_name(_required(meter, "meter"), "meter"),
        quantity=check_quantity(_required(quantity, "quantity")),
        idempotency_key=idempotency_key or _key("track"),
        units=units,
        description=description,
        metadata=check_metadata(metadata),
    )
    return RequestSpec(
        "POST", "/usage/internal", _model(m.TrackUsageResult), body=req.to_wire(), retry_safe=True
    )


def charge(
    customer_id: str | None = None,
    meter: str | None = None,
    quantity: float | None = None,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    external_customer_id: str | None = None,
) -> RequestSpec[m.ChargeResult]:
    """Record billable usage and charge it, for ``customer_id`` or ``external_customer_id``
    (exactly one). A key is made when you pass none."""
    req = build(
        m.ChargeRequest,
        **_customer(customer_id, external_customer_id),
        usage_type=_name(_required(meter, "meter"), "meter"),
        quantity=check_quantity(_required(quantity, "quantity")),
        idempotency_key=idempotency_key or _key("chg"),
        metadata=check_metadata(metadata),
    )
    return RequestSpec(
        "POST", "/usage", _model(m.ChargeResult), body=req.to_wire(), retry_safe=True
    )


#: what ``get_usage_summary(group_by=...)`` may name
USAGE_GROUPS = ("meter", "customer", "workflow", "day", "hour", "model")


def _instant(value: str | datetime | date | None, field: str) -> str | None:
    """An ISO-8601 text for a query parameter (naive datetimes are taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        return value
    raise DripValidationError(
        f"{field} must be an ISO-8601 string, a datetime or a date", field=field
    )


def get_usage_summary(
    customer_id: str | None = None,
    meter: str | None = None,
    *,
    since: str | datetime | date | None = None,
    until: str | datetime | date | None = None,
    group_by: str | Sequence[str] | None = None,
    external_customer_id: str | None = None,
) -> RequestSpec[m.UsageSummary]:
    """Totals per meter over usage records, charges and run events in ``[since, until)``;
    ``group_by`` any of meter, customer, workflow, day, hour, model adds ``groups``. One
    customer's: ``customer_id`` (``cus_…`` or your own id) or ``external_customer_id``."""
    groups = [group_by] if isinstance(group_by, str) else list(group_by or ())
    groups = [g.strip() for part in groups for g in part.split(",") if g.strip()]
    for g in groups:
        if g not in USAGE_GROUPS:
            raise DripValidationError(
                f"group_by: unknown grouping {g!r} (one of {', '.join(USAGE_GROUPS)})",
                field="group_by",
            )
    params: dict[str, Any] = {
        **_read_customer(customer_id, external_customer_id),
        **({} if meter is None else {"meter": _name(meter, "meter")}),
    }
    for name, value in (
        ("since", _instant(since, "since")),
        ("until", _instant(until, "until")),
        ("groupBy", ",".join(groups)),
    ):
        if value:
            params[name] = value
    return RequestSpec(
        "GET", "/usage/summary", _model(m.UsageSummary), params=params, retry_safe=True
    )


def list_workflows() -> RequestSpec[m.WorkflowList]:
    """Every workflow of this account."""
    return RequestSpec("GET", "/workflows", _model(m.WorkflowList), retry_safe=True)


def create_workflow(
    name: str,
    slug: str,
    product_surface: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> RequestSpec[m.Workflow]:
    """Create a workflow; an existing ``slug`` answers the existing workflow."""
    req = build(
        m.CreateWorkflowRequest,
        name=name,
        slug=slug,
        product_surface=product_surface or "CUSTOM",
        description=description,
        metadata=check_metadata(metadata),
    )
    # creation is idempotent on slug, so a retry cannot make a second workflow
    return RequestSpec(
        "POST", "/workflows", _model(m.Workflow), body=req.to_wire(), retry_safe=True
    )


def start_run(
    customer_id: str | None = None,
    workflow_id: str | None = None,
    external_run_id: str | None = None,
    correlation_id: str | None = None,
    parent_run_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    *,
    external_customer_id: str | None = None,
) -> RequestSpec[m.RunResult]:
    """Start a run of a workflow (id or slug) for ``customer_id`` or ``external_customer_id``
    (exactly one). The run id is made here."""
    req = build(
        m.StartRunRequest,
        **_customer(customer_id, external_customer_id),
        workflow_id=_name(_required(workflow_id, "workflow_id"), "workflow_id"),
        external_run_id=external_run_id,
        correlation_id=correlation_id,
        parent_run_id=parent_run_id,
        metadata=check_metadata(metadata),
        id=run_id or new_id("run"),
    )
    return RequestSpec("POST", "/runs", _model(m.RunResult), body=req.to_wire(), retry_safe=True)


def end_run(
    run_id: str,
    status: m.RunStatus | str,
    error_message: str | None = None,
    error_code: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> RequestSpec[m.EndRunResult]:
    """End a run: ``COMPLETED``, ``FAILED``, ``CANCELLED`` or ``TIMEOUT``."""
    req = build(
        m.EndRunRequest,
        status=status,
        error_message=error_message,
        error_code=error_code,
        metadata=check_metadata(metadata),
    )
    path = f"/runs/{_segment(run_id, 'run_id')}"
    # ending a run twice with the same status is harmless, so retries are safe
    return RequestSpec("PATCH", path, _model(m.EndRunResult), body=req.to_wire(), retry_safe=True)


def _event(values: Mapping[str, Any], where: str) -> m.EmitEventRequest:
    values = {k: v for k, v in values.items() if v is not None}
    if "quantity" in values:
        values["quantity"] = check_quantity(values["quantity"], f"{where}quantity")
    if "metadata" in values:
        values["metadata"] = check_metadata(values["metadata"], f"{where}metadata")
    try:
        return m.EmitEventRequest.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = where + _field_name(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        raise DripValidationError(f"{name}: {msg}", field=name) from None


def emit_event(
    run_id: str,
    event_type: str,
    quantity: float | None = None,
    units: str | None = None,
    description: str | None = None,
    cost_units: float | None = None,
    cost_currency: str | None = None,
    correlation_id: str | None = None,
    parent_event_id: str | None = None,
    span_id: str | None = None,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> RequestSpec[m.EventResult]:
    """Record one event in a run. A key is made when you pass none."""
    _name(run_id, "run_id")
    _name(event_type, "event_type")
    req = _event(
        {
            "run_id": run_id,
            "event_type": event_type,
            "quantity": quantity,
            "units": units,
            "description": description,
            "cost_units": cost_units,
            "cost_currency": cost_currency,
            "correlation_id": correlation_id,
            "parent_event_id": parent_event_id,
            "span_id": span_id,
            "idempotency_key": idempotency_key or _key("evt"),
            "metadata": metadata,
        },
        "",
    )
    return RequestSpec(
        "POST", "/run-events", _model(m.EventResult), body=req.to_wire(), retry_safe=True
    )


def emit_events_batch(events: Sequence[Mapping[str, Any]]) -> RequestSpec[m.EmitEventsBatchResult]:
    """Record many events (dicts with ``runId``, ``eventType``, ...) in one request."""
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
        raise DripValidationError("events must be a list of dicts", field="events")
    items = []
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise DripValidationError(f"events[{i}] must be a dict", field=f"events.{i}")
        req = _event(event, f"events.{i}.")
        if not req.idempotency_key:
            req.idempotency_key = _key("evt")
        items.append(req.to_wire())
    return RequestSpec(
        "POST",
        "/run-events/batch",
        _model(m.EmitEventsBatchResult),
        body={"events": items},
        retry_safe=True,
    )


def record_run(
    customer_id: str | None = None,
    workflow: str | None = None,
    events: Sequence[Mapping[str, Any] | Any] | None = None,
    status: m.RunStatus | str = m.RunStatus.COMPLETED,
    error_message: str | None = None,
    error_code: str | None = None,
    external_run_id: str | None = None,
    correlation_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    external_customer_id: str | None = None,
) -> RequestSpec[m.RecordRunResult]:
    """Record a whole run (start, events, end) in one request, for ``customer_id`` or
    ``external_customer_id`` (exactly one)."""
    who = _customer(customer_id, external_customer_id)
    items: list[Any] = []
    for i, event in enumerate(events or ()):
        if event is Ellipsis:
            continue  # a `[...]` placeholder, as in documentation snippets
        if isinstance(event, BaseModel):
            event = event.model_dump(exclude_none=True)
        if not isinstance(event, Mapping):
            raise DripValidationError(f"events[{i}] must be a dict", field=f"events.{i}")
        if "quantity" in event and event["quantity"] is not None:
            check_quantity(event["quantity"], f"events.{i}.quantity")
        items.append(dict(event))
    req = build(
        m.RecordRunRequest,
        **who,
        workflow=_name(_required(workflow, "workflow"), "workflow"),
        events=items,
        status=status,
        error_message=error_message,
        error_code=error_code,
        external_run_id=external_run_id,
        correlation_id=correlation_id,
        metadata=check_metadata(metadata),
        id=new_id("run"),
    )
    body = req.to_wire()
    # an event without a quantity means 1 on the server; keep "absent" rather than null
    return RequestSpec(
        "POST", "/runs/record", _model(m.RecordRunResult), body=body, retry_safe=True
    )


def list_runs(
    customer_id: str | None = None,
    limit: int = 50,
    *,
    workflow: str | None = None,
    status: m.RunStatus | str | None = None,
    since: str | datetime | date | None = None,
    until: str | datetime | date | None = None,
    cursor: str | None = None,
    external_customer_id: str | None = None,
) -> RequestSpec[m.RunList]:
    """One page of runs, newest start first (``limit`` 1-1000), filtered by customer,
    workflow (id or slug), status and start time ``[since, until)``; pass the answer's
    ``next_cursor`` as ``cursor`` for the next page. One customer's: ``customer_id`` (``cus_…``
    or your own id) or ``external_customer_id``."""
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise DripValidationError("limit must be an int between 1 and 1000", field="limit")
    params: dict[str, Any] = {"limit": limit, **_read_customer(customer_id, external_customer_id)}
    if workflow is not None:
        params["workflow"] = _name(workflow, "workflow")
    if status is not None:
        try:
            params["status"] = m.RunStatus(status).value
        except ValueError:
            raise DripValidationError(
                f"status: not a run status: {status!r}", field="status"
            ) from None
    for name, value in (
        ("since", _instant(since, "since")),
        ("until", _instant(until, "until")),
        ("cursor", cursor),
    ):
        if value:
            params[name] = value
    return RequestSpec("GET", "/runs", _model(m.RunList), params=params, retry_safe=True)


def get_run(run_id: str) -> RequestSpec[m.RunDetails]:
    """A run with its totals."""
    path = f"/runs/{_segment(run_id, 'run_id')}"
    return RequestSpec("GET", path, _model(m.RunDetails), retry_safe=True)


def get_run_timeline(
    run_id: str,
    limit: int | None = None,
    cursor: str | None = None,
    include_anomalies: bool | None = None,
    collapse_retries: bool | None = None,
) -> RequestSpec[m.RunTimeline]:
    """A run and its events in order."""
    params: dict[str, Any] = {}
    if limit is not None:
        params["limit"] = str(limit)
    if cursor is not None:
        params["cursor"] = cursor
    if include_anomalies is not None:
        params["includeAnomalies"] = "true" if include_anomalies else "false"
    if collapse_retries is not None:
        params["collapseRetries"] = "true" if collapse_retries else "false"
    path = f"/runs/{_segment(run_id, 'run_id')}/timeline"
    return RequestSpec("GET", path, _model(m.RunTimeline), params=params or None, retry_safe=True)


def ingest(body: bytes) -> RequestSpec[m.IngestResult]:
    """The delivery worker's batch; ``body`` is JSON already encoded on the worker thread.
    The answer is the compact one (a status letter per item, details for rejected items)."""
    return RequestSpec(
        "POST", "/ingest", _ingest_answer, content=body, retry_safe=True, max_attempts=1,
        params=_COMPACT,
    )  # fmt: skip


def _ingest_answer(raw: RawResponse) -> m.IngestResult:
    # read by hand, not by the model: no schema is built for it, which may fail or hang at
    # exit or in a fork() child (``read_ingest_result``); not JSON is a ValueError too
    return read_ingest_result(json.loads(raw.content))


_COMPACT = {"results": "compact"}


def _key(prefix: str) -> str:
    return idempotency_key(prefix)

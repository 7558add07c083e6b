"""``/v1/customers`` and ``/v1/workflows``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from drip.models import (
    CreateCustomerRequest,
    CreateWorkflowRequest,
    Customer,
    CustomerList,
    CustomerStatus,
    Workflow,
    WorkflowList,
)

from ..deps import Caller, state
from ..http import json_response, parse, read_object
from ..openapi import answers, body
from ..storage import customers, workflows

router = APIRouter(prefix="/v1")

#: largest offset accepted (a bigger one is a 422, not an integer overflow in the database)
MAX_OFFSET = 2**31 - 1


@router.post(
    "/customers", openapi_extra=body(CreateCustomerRequest), responses=answers(Customer, 200, 201)
)
async def create_customer(request: Request, who: Caller) -> Response:
    req = parse(CreateCustomerRequest, await read_object(request))
    customer, created = await run_in_threadpool(
        customers.create_customer, state(request).db, who.account_id, req
    )
    if who.public and not created:
        # a public key reads nothing of the customers: of one that exists it learns the id
        # (to write for it) and no more of its identity than the request itself gave
        customer = customer.model_copy(
            update={
                "metadata": None,
                "external_customer_id": req.external_customer_id,
                "onchain_address": req.onchain_address,
            }
        )
    return json_response(customer, 201 if created else 200)


@router.get("/customers", responses=answers(CustomerList))
async def list_customers(
    request: Request,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    status: CustomerStatus | None = None,
    cursor: Annotated[str | None, Query(description="nextCursor of the previous page")] = None,
) -> Response:
    result = await run_in_threadpool(
        customers.list_customers, state(request).db, who.account_id, limit, offset, status, cursor
    )
    return json_response(result)


# ``:path``: your own id may hold a "/" ("acme/alice"); the client sends it escaped, and the
# ASGI server hands the route the unescaped path
@router.get("/customers/{customer_id:path}", responses=answers(Customer))
async def get_customer(request: Request, who: Caller, customer_id: str) -> Response:
    customer = await run_in_threadpool(
        customers.get_customer, state(request).db, who.account_id, customer_id
    )
    return json_response(customer)


@router.get("/workflows", responses=answers(WorkflowList))
async def list_workflows(request: Request, who: Caller) -> Response:
    result = await run_in_threadpool(workflows.list_workflows, state(request).db, who.account_id)
    return json_response(result)


@router.post(
    "/workflows", openapi_extra=body(CreateWorkflowRequest), responses=answers(Workflow, 200, 201)
)
async def create_workflow(request: Request, who: Caller) -> Response:
    """Idempotent on ``slug``: an existing slug answers 200 with the stored workflow."""
    req = parse(CreateWorkflowRequest, await read_object(request))
    workflow, created = await run_in_threadpool(
        workflows.create_workflow, state(request).db, who.account_id, req
    )
    return json_response(workflow, 201 if created else 200)

"""What each kind of API key may do: the scope table, one entry per route.

A secret key (``sk_``) may do everything in its account. A public key (``pk_``) is meant to
ship in client-side code, so it may only *write* — create customers, record usage and charges,
find or create a workflow by slug (what the published ``run()`` does before it starts a run; a
run started with a new slug creates it too), start runs and emit events — and read nothing of
other customers (workflows hold no customer data): listing
customers, reading a customer, a run, a timeline, the usage summary or the dashboard's data
needs a secret key. A public key may end only the runs it started itself (``runs.started_by``).
Refusals are ``403`` with code ``SECRET_KEY_REQUIRED`` (or ``RUN_NOT_OWNED``).

The table is checked against the app's routes by the tests: a route without an entry fails
them, and at run time a route missing from the table needs a secret key (fail closed).
``docs/scopes.md`` shows the same table.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["NONE", "PUBLIC", "SCOPES", "SECRET", "Scope", "required"]

Scope = Literal["none", "public", "secret"]
#: no key needed
NONE: Scope = "none"
#: a public or a secret key
PUBLIC: Scope = "public"
#: a secret key only
SECRET: Scope = "secret"

#: (method, path) -> (scope, what a public key gets there)
SCOPES: dict[tuple[str, str], tuple[Scope, str]] = {
    ("GET", "/health"): (NONE, "health check"),
    ("POST", "/v1/customers"): (PUBLIC, "create a customer (one that exists: its id only)"),
    ("GET", "/v1/customers"): (SECRET, "list customers"),
    ("GET", "/v1/customers/{customer_id}"): (SECRET, "read a customer"),
    ("GET", "/v1/workflows"): (PUBLIC, "list workflows (no customer data)"),
    ("POST", "/v1/workflows"): (
        PUBLIC,
        "find or create a workflow by slug (an existing one answers unchanged)",
    ),
    ("POST", "/v1/usage/internal"): (PUBLIC, "track usage"),
    ("POST", "/v1/usage/internal/batch"): (PUBLIC, "track usage (batch mode)"),
    ("POST", "/v1/usage"): (PUBLIC, "charge"),
    ("GET", "/v1/usage/summary"): (SECRET, "usage totals"),
    ("POST", "/v1/runs"): (PUBLIC, "start a run"),
    ("GET", "/v1/runs"): (SECRET, "list runs"),
    ("POST", "/v1/runs/record"): (PUBLIC, "record a whole run"),
    ("PATCH", "/v1/runs/{run_id}"): (PUBLIC, "end a run it started itself"),
    ("GET", "/v1/runs/{run_id}"): (SECRET, "read a run"),
    ("GET", "/v1/runs/{run_id}/timeline"): (SECRET, "read a run's timeline"),
    ("POST", "/v1/run-events"): (PUBLIC, "emit an event"),
    ("POST", "/v1/run-events/batch"): (PUBLIC, "emit events"),
    ("POST", "/v1/ingest"): (PUBLIC, "the SDK's batch (run ends: its own runs only)"),
    ("GET", "/"): (NONE, "the dashboard page (it holds no data; its reads need a secret key)"),
    ("GET", "/assets/{name}"): (NONE, "the dashboard's scripts and stylesheet"),
    ("GET", "/docs"): (NONE, "API docs (local development only)"),
    ("GET", "/openapi.json"): (NONE, "the OpenAPI document (local development only)"),
}


def required(method: str, path: str) -> Scope:
    """The scope a route needs; a route missing from the table needs a secret key."""
    found = SCOPES.get((method, path))
    return SECRET if found is None else found[0]

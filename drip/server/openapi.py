"""The OpenAPI document, with the request bodies the routes read themselves.

Bodies are read by ``http`` (limits before parsing, our error shapes), not by FastAPI's body
parameters, so each route declares its body model with ``body()``: generated clients and
fuzzers see exactly what the API takes (the shared models of ``drip.models``, camelCase).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

__all__ = ["ErrorBody", "answers", "body", "install_openapi"]

#: models named in request bodies, added to the document's components
_BODY_MODELS: dict[str, type[BaseModel]] = {}
_REF = "#/components/schemas/{model}"


class ErrorBody(BaseModel):
    """Every error answer (``errors.error_body``): a short kind, a message and a code, plus
    ``existingCustomerId`` on a customer conflict and ``retryAfter`` on 429."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    code: str


def answers(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: ``model`` at each success status (200 by default)."""
    return {status: {"model": model} for status in statuses or (200,)}


def body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` (camelCase) as the route's JSON request body."""
    _BODY_MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
            },
        }
    }


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the body models (and what they refer to)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=None
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):  # replaced by ErrorBody
                schemas.pop(unused, None)
            schemas["ErrorBody"] = ErrorBody.model_json_schema()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    _error_answers(operation)
            for name, model in sorted(_BODY_MODELS.items()):
                found = model.model_json_schema(by_alias=True, ref_template=_REF, mode="validation")
                schemas.update(found.pop("$defs", {}))
                schemas[name] = found
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error_answers(operation: dict[str, Any]) -> None:
    """Every error status answers ``ErrorBody`` (the validation errors FastAPI would document
    are ours, not its ``HTTPValidationError``)."""
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    responses["default"] = {
        "description": "An error (4xx or 5xx)",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
    }

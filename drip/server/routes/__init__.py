"""Thin routes, one module per resource: read the request, call storage, write the answer."""

from __future__ import annotations

from fastapi import APIRouter

from . import customers, health, ingest, runs, usage

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    health.router,
    customers.router,
    usage.router,
    runs.router,
    ingest.router,
]

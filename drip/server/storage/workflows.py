"""Workflows: a run names one by id or slug; an unknown slug creates it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select

from drip._ids import new_id
from drip.models import CreateWorkflowRequest, Workflow, WorkflowList

from .. import clock
from ..errors import ApiError
from .bulk import insert_ignore
from .database import Database
from .refs import workflow_row
from .schema import workflows

__all__ = ["create_workflow", "list_workflows", "resolve_workflow"]


def _workflow(row: Row[Any]) -> Workflow:
    return Workflow(
        id=row.id,
        name=row.name,
        slug=row.slug,
        product_surface=row.product_surface,
        is_active=bool(row.is_active),
        created_at=row.created_at,
        description=row.description,
    )


def _looks_like_workflow_id(ref: str) -> bool:
    rest = ref[3:]
    return ref.startswith("wf_") and len(rest) == 32 and all(c in "0123456789abcdef" for c in rest)


def _title(slug: str) -> str:
    """The display name of an auto-created workflow: a slug such as ``research-agent`` reads
    "Research Agent"; anything else (``GET /items/{item_id}``, ``MyGraph``) is kept as given."""
    words = slug.replace("_", "-").split("-")
    if all(w and w.isascii() and w.isalnum() and w.islower() for w in words):
        return " ".join(w.capitalize() for w in words)
    return slug


def _insert_workflow(
    conn: Connection, account_id: int, slug: str, name: str, **extra: Any
) -> Row[Any]:
    """Insert a workflow unless its slug exists; either way return the stored row."""
    values = {
        "account_id": account_id,
        "id": new_id("wf"),
        "name": name,
        "slug": slug,
        "product_surface": extra.pop("product_surface", None) or "CUSTOM",
        "is_active": True,
        "created_at": clock.now_iso(),
        **extra,
    }
    conn.execute(insert_ignore(conn.dialect.name, workflows).values(values))
    row = conn.execute(
        select(workflows).where(workflows.c.account_id == account_id, workflows.c.slug == slug)
    ).first()
    assert row is not None
    return row


def resolve_workflow(conn: Connection, account_id: int, ref: str, field: str) -> Row[Any]:
    """The workflow a run names by id or slug; an unknown slug creates it.

    A string shaped like one of our workflow ids (``wf_`` + 32 hex) that names nothing is a
    422 rather than a new workflow called "Wf 0193…".
    """
    row = workflow_row(conn, account_id, ref)
    if row is not None:
        return row
    if _looks_like_workflow_id(ref):
        raise ApiError.missing_reference("workflow", ref, field)
    return _insert_workflow(conn, account_id, ref, _title(ref))


def create_workflow(
    db: Database, account_id: int, req: CreateWorkflowRequest
) -> tuple[Workflow, bool]:
    """(workflow, created): an existing slug answers with the existing workflow."""
    with db.write() as conn:
        before = conn.execute(
            select(workflows.c.id).where(
                workflows.c.account_id == account_id, workflows.c.slug == req.slug
            )
        ).scalar()
        row = _insert_workflow(
            conn,
            account_id,
            req.slug,
            req.name,
            product_surface=req.product_surface,
            description=req.description,
            meta=req.metadata,
        )
    return _workflow(row), before is None


def list_workflows(db: Database, account_id: int) -> WorkflowList:
    """Every workflow of the account (unpaginated, as the published client needs)."""
    with db.read() as conn:
        rows = conn.execute(
            select(workflows).where(workflows.c.account_id == account_id).order_by(workflows.c.seq)
        ).all()
    return WorkflowList(data=[_workflow(r) for r in rows], count=len(rows))

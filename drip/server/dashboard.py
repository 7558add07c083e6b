"""The dashboard at ``/``: one static page that reads the API with a key the user pastes.

The page holds no data of its own and the server renders nothing without a key, so exposing
``/`` needs no auth; the key stays in the browser's localStorage.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@cache
def _page() -> str:
    return files("drip.server").joinpath("static/dashboard.html").read_text(encoding="utf-8")


@router.get("/", include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(_page())

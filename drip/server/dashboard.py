"""The dashboard at ``/``: a static page (HTML, CSS, ES modules) that reads the API with a key.

The page holds no data and the server renders nothing without a key, so ``/`` needs no auth.
The key comes from the URL fragment (never sent to a server) or a form, is kept in the tab's
``sessionStorage`` only and is shown masked. Every response of the dashboard carries a strict
Content-Security-Policy (scripts, styles and requests to this origin only; no inline script, so
injected markup cannot run) and refuses to be framed. Charts are SVG drawn by the page itself:
nothing is fetched from a CDN, so it works offline.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

__all__ = ["SECURITY_HEADERS", "router"]

router = APIRouter()

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}


@cache
def _asset(name: str) -> bytes:
    return files("drip.server").joinpath("static").joinpath(name).read_bytes()


@cache
def _asset_names() -> frozenset[str]:
    folder = files("drip.server").joinpath("static")
    return frozenset(p.name for p in folder.iterdir() if p.name.endswith((".css", ".js")))


def _answer(name: str) -> Response:
    media = _TYPES[name[name.rfind(".") :]] + "; charset=utf-8"
    return Response(_asset(name), media_type=media, headers=SECURITY_HEADERS)


@router.get("/", include_in_schema=False)
async def dashboard() -> Response:
    return _answer("dashboard.html")


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    # a fixed list of packaged files: a path from the URL never reaches the file system
    if name not in _asset_names():
        return Response("Not found", status_code=404, media_type="text/plain")
    return _answer(name)

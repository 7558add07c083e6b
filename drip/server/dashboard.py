"""The dashboard at ``/``: one static page that reads the API with a key the user pastes.

The page holds no data of its own and the server renders nothing without a key, so exposing
``/`` needs no auth; the key stays in the browser's localStorage, and the API answers the
page's reads only for a secret key (``scopes``). The page's Content-Security-Policy allows
its own inline scripts and styles (by hash) and files from this server (vendored assets),
requests to this server only, and no framing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter()


@cache
def _page() -> str:
    return files("drip.server").joinpath("static/dashboard.html").read_text(encoding="utf-8")


def _hashes(tag: str, page: str) -> str:
    found = re.findall(rf"<{tag}(?:\s[^>]*)?>(.*?)</{tag}>", page, flags=re.DOTALL)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in found
    )


@cache
def policy() -> str:
    """The page's Content-Security-Policy."""
    page = _page()
    scripts = " ".join(["'self'", _hashes("script", page)]).strip()
    styles = " ".join(["'self'", _hashes("style", page)]).strip()
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@router.get("/", include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Content-Security-Policy": policy()})

"""Keyset cursors: an opaque token naming the last row of a page by (time, seq).

A page after a cursor starts strictly after that row in (time, ``seq``) order, read through an
index on the same columns, so it costs the same on page 1 and page 10,000 (no ``OFFSET``), and
rows added meanwhile never shift what the next page holds.
"""

from __future__ import annotations

import base64
import binascii

from .. import clock
from ..errors import ApiError

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(moment: str, seq: int) -> str:
    """The cursor after the row stored at ``moment`` with ``seq``."""
    return base64.urlsafe_b64encode(f"{moment}|{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """(moment, seq) from a cursor; 422 INVALID_CURSOR when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, seq = text.rsplit("|", 1)
        if not clock.is_canonical(moment):
            raise ValueError(moment)
        return moment, int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "INVALID_CURSOR", "cursor: not a cursor this server gave") from None

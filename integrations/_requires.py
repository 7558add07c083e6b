"""Import a framework for an integration, or say which extra installs it.

Every integration module starts with ``openai = requires("openai", extra="openai")``: when the
framework is missing the user gets an ``ImportError`` that names the exact ``pip install`` line,
instead of a bare ``ModuleNotFoundError`` from deep inside our module.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["requires"]


def requires(module: str, *, extra: str, integration: str | None = None) -> ModuleType:
    """Import ``module``; if it is missing, raise an ImportError naming ``drip-sdk[extra]``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or module).split(".")[0]
        if missing != module.split(".")[0]:
            raise  # the framework is there but something it imports is not: not ours to rename
        name = integration or extra
        raise ImportError(
            f"drip.integrations.{name} needs {module!r}, which is not installed; "
            f'install it with: pip install "drip-sdk[{extra}]"'
        ) from exc

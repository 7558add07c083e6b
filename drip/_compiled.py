"""drip's compiled parts (``drip/_speedups.c``), when they were built and are wanted.

``speedups`` is the module, or None: not built (no compiler, not CPython: the extension is
optional in ``setup.py``) or ``DRIP_PURE_PYTHON=1`` in the environment. Each compiled part is
the twin of Python code that stays beside it as the reference, and the tests run both
(``tests/test_speedups.py``; ``.ci/run`` also runs the metering tests with the Python alone).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["python_only", "speedups"]


def python_only(env: Mapping[str, str] = os.environ) -> bool:
    """Whether ``DRIP_PURE_PYTHON`` asks for the Python twins (the words ``drip._config``
    takes for a flag; that module is layers above this one)."""
    return env.get("DRIP_PURE_PYTHON", "").strip().lower() not in ("", "0", "false", "no", "off")


def _load() -> Any:
    if python_only():
        return None
    try:  # by name: ``from . import`` would read as importing the package (drip/__init__)
        return importlib.import_module(f"{__package__}._speedups")
    except ImportError:
        return None


#: ``drip._speedups``, or None (see above)
speedups: Any = _load()

"""``requires`` names the extra when a framework is missing."""

from __future__ import annotations

import pytest
from drip.integrations._requires import requires


def test_present_module_is_returned() -> None:
    assert requires("json", extra="x").dumps([1]) == "[1]"


def test_missing_module_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r'pip install "drip-sdk\[nothere\]"') as info:
        requires("drip_no_such_framework", extra="nothere")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)

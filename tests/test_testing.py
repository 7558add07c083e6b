"""``drip.testing``: capture in memory, strict mode, and the pytest fixture for users' tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drip import instrument as drip
from drip._config import resolve_settings
from drip.errors import DripValidationError
from drip.instrument import Instrumentation
from drip.testing import Capture, capture, drip_capture  # noqa: F401 - the fixture


@drip.metered("tokens", quantity=lambda r: len(r), units="tokens")
def tokenize(text: str) -> list[str]:
    return text.split()


def test_capture_collects_typed_items_and_totals() -> None:
    with capture() as cap:
        with drip.run("wf", customer_id="c") as run:
            tokenize("a b c")
            tokenize("d e")
        with drip.customer("c"):
            tokenize("f")
    assert [i["type"] for i in cap.items] == ["run.start", "event", "event", "run.end", "usage"]
    assert cap.quantity("tokens") == 6
    assert [e.run_id for e in cap.events] == [run.id, run.id]
    assert cap.run_starts[0].workflow == "wf" and cap.run_end(run.id) is not None
    assert cap.usage[0].quantity == 1 and cap.usage[0].units == "tokens"
    cap.clear()
    assert cap.items == [] and cap.errors == []


def test_capture_takes_records_of_every_client_and_sends_nothing() -> None:
    sent: list[bytes] = []
    settings = resolve_settings(api_key="sk_test_000000", base_url="http://127.0.0.1:9", env={})
    client = Instrumentation(settings, sender=sent.append)  # type: ignore[arg-type]
    with capture() as cap, client.run("wf", customer_id="c"):
        tokenize("x")
    assert len(cap.events) == 1 and client.flush(1).sent == 0
    assert not client.delivery.started() and sent == []


def test_capture_is_strict_by_default_and_can_be_lenient() -> None:
    with capture() as cap, pytest.raises(DripValidationError, match="customer"):
        tokenize("no customer")
    assert len(cap.errors) == 1
    with capture(strict=False) as lenient:
        assert tokenize("no customer") == ["no", "customer"]
    assert len(lenient.errors) == 1 and lenient.items == []


def test_nested_captures_use_the_innermost() -> None:
    with capture() as outer, drip.customer("c"):
        tokenize("a")
        with capture() as inner:
            tokenize("b")
        tokenize("c")
    assert len(outer.usage) == 2 and len(inner.usage) == 1


def test_the_fixture_imported_into_a_test_module(drip_capture: Capture) -> None:  # noqa: F811
    with drip.run("wf", customer_id="c"):
        tokenize("one two")
    assert drip_capture.quantity("tokens") == 2


def test_the_fixture_through_pytest_plugins(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["drip.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from drip import instrument as drip
            from drip.errors import DripValidationError

            @drip.metered("api.calls")
            def handler():
                return "ok"

            def test_metered(drip_capture):
                with drip.customer("cus_9"):
                    handler()
                assert [u.customer_id for u in drip_capture.usage] == ["cus_9"]

            def test_strict(drip_capture):
                with pytest.raises(DripValidationError):
                    handler()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout

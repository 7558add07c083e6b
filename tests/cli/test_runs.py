"""``drip runs``: a header, start time, duration, event count; filters; either customer id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import drip
from drip.cli import main


@pytest.fixture
def client(account: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[drip.Drip]:
    monkeypatch.setenv("DRIP_API_KEY", account.secret_key)
    monkeypatch.setenv("DRIP_BASE_URL", account.base_url)
    with drip.Drip() as c:
        yield c


def test_runs_table_filters_and_pages(
    client: drip.Drip, capsys: pytest.CaptureFixture[str]
) -> None:
    step = client.metered("steps")(lambda: None)
    for i in range(5):
        with client.run("nightly", external_customer_id="user_123" if i % 2 else "user_9"):
            step()
    try:
        with client.run("agent", external_customer_id="user_123"):
            step()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert client.flush(timeout=10).ok
    capsys.readouterr()

    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "RUN", "WORKFLOW", "CUSTOMER", "STATUS", "STARTED", "DURATION", "EVENTS",
    ]  # fmt: skip
    assert len(lines) == 1 + 6
    assert "Agent" in lines[1] and "FAILED" in lines[1] and "user_123 (cus_" in lines[1]
    assert lines[1].split()[-1] == "1"  # one event

    assert main(["runs", "--customer", "user_123", "--status", "COMPLETED"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2 and all("Nightly" in r and "user_123" in r for r in rows)
    assert main(["runs", "--customer", "user_123", "--status", "completed"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == rows

    assert main(["runs", "--limit", "4"]) == 0
    out = capsys.readouterr().out
    assert "more: drip runs --cursor" in out
    cursor = out.split("--cursor ")[1].split()[0]
    assert main(["runs", "--limit", "4", "--cursor", cursor]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 2

    assert main(["runs", "--customer", "ghost"]) == 1
    assert "ghost" in capsys.readouterr().err


def test_long_names_cut_nothing_piped_and_any_encoding_prints(
    client: drip.Drip, account: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped, a long workflow or customer name cut the run id and the status to "…"; on a
    stream that is not UTF-8 (``PYTHONIOENCODING=ascii``) every command ended in a
    UnicodeEncodeError for its "→" or "µs"; a run of no events showed "-"."""
    import os
    import subprocess
    import sys

    long_name = "Ä-" + "w" * 200
    with client.run(long_name, external_customer_id="ü" * 250) as run:
        pass
    client.track_usage(external_customer_id="ü" * 250, meter="m-" + "x" * 200, quantity=1)
    assert client.flush(timeout=10).ok
    capsys.readouterr()
    assert main(["runs", "--customer", "ü" * 250]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and run.id in out and "COMPLETED" in out and long_name in out
    assert out.splitlines()[1].split()[-1] == "0"  # events
    assert main(["usage", "--by", "customer,meter"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and run.customer_id in out and "m-" + "x" * 200 in out

    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for argv, shown in (
        (["usage", "--by", "customer"], b" 1    0.000000 "),
        (["runs"], run.id.encode()),
        (["timeline", run.id], run.id.encode()),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "drip", *argv], capture_output=True, env=env, timeout=60
        )
        assert proc.returncode == 0 and shown in proc.stdout, proc.stderr.decode()


def test_durations_read_as_people_say_them(
    client: drip.Drip, account: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run's duration is whole milliseconds: under one is "< 1 ms" (it showed "0 µs"); a
    long one is in minutes or hours (it showed "7200.00 s")."""
    import httpx

    t0 = "2026-12-01T10:00:00.000000Z"
    ends = {"run_fast": "2026-12-01T10:00:00.000400Z", "run_mid": "2026-12-01T10:00:01.500000Z",
            "run_min": "2026-12-01T10:05:00.000000Z", "run_long": "2026-12-01T12:00:00.000000Z"}  # fmt: skip
    items: list[dict[str, Any]] = []
    for run_id, end in ends.items():
        items.append({"type": "run.start", "id": run_id, "externalCustomerId": "u",
                      "workflow": "w", "startedAt": t0})  # fmt: skip
        items.append({"type": "run.end", "runId": run_id, "status": "COMPLETED", "endedAt": end})
    headers = {"Authorization": f"Bearer {account.secret_key}"}
    sent = httpx.post(f"{account.base_url}/v1/ingest", json={"items": items}, headers=headers)
    assert sent.status_code == 200, sent.text
    assert main(["runs"]) == 0
    shown = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "< 1 ms" in shown["run_fast"] and "µs" not in shown["run_fast"]
    assert "1.50 s" in shown["run_mid"]
    assert "5.0 min" in shown["run_min"]
    assert "2.0 h" in shown["run_long"]

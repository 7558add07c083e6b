"""``drip usage``: a table, ``--json`` and ``--csv`` over a window, grouped; either customer id."""

from __future__ import annotations

import csv
import io
import json
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


def test_grouped_usage_as_table_json_and_csv(
    client: drip.Drip, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        ("alice", "llm_tokens", 100, "2026-11-30T10:00:00Z"),  # before the window
        ("alice", "llm_tokens", 250, "2026-12-01T09:00:00Z"),
        ("alice", "llm_tokens", 0.5, "2026-12-01T23:59:59Z"),
        ("bob", "llm_tokens", 40, "2026-12-01T12:00:00Z"),
        ("bob", "api_calls", 3, "2026-12-01T12:00:00Z"),
        ("bob", "api_calls", 7, "2026-12-02T00:00:00Z"),  # the window is half-open
    ]
    data = tmp_path / "rows.csv"
    data.write_text(
        "external_customer_id,meter,quantity,timestamp\n"
        + "\n".join(",".join(map(str, r)) for r in rows)
        + "\n"
    )
    assert main(["import", str(data)]) == 0
    capsys.readouterr()
    window = ["--since", "2026-12-01", "--until", "2026-12-02"]

    assert main(["usage", *window, "--by", "customer,meter", "--json"]) == 0
    got = {
        (r["externalCustomerId"], r["meter"]): r["quantity"]
        for r in json.loads(capsys.readouterr().out)
    }
    assert got == {
        ("alice", "llm_tokens"): "250.5",
        ("bob", "llm_tokens"): "40",
        ("bob", "api_calls"): "3",
    }

    assert main(["usage", *window, "--by", "meter", "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["meter"]: r["quantity"] for r in table} == {"llm_tokens": "290.5", "api_calls": "3"}
    assert list(table[0])[:3] == ["meter", "kind", "quantity"]

    assert main(["usage", *window, "--by", "customer,meter"]) == 0
    out = capsys.readouterr().out
    assert "usage, 2026-12-01 → 2026-12-02" in out and "customerId" in out
    line = next(x for x in out.splitlines() if "alice" in x)
    assert "llm_tokens" in line and "250.5" in line

    assert main(["usage", "--customer", "bob", "--json"]) == 0  # either id
    assert {r["meter"]: r["quantity"] for r in json.loads(capsys.readouterr().out)} == {
        "api_calls": "10",
        "llm_tokens": "40",
    }


def test_usage_refuses_unknown_groupings_and_customers(
    client: drip.Drip, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["usage", "--by", "planet"]) == 2
    assert "unknown ['planet']" in capsys.readouterr().err
    assert main(["usage", "--customer", "nobody"]) == 1
    assert "nobody" in capsys.readouterr().err


def test_a_reader_that_leaves_early_gets_no_traceback(account: Any) -> None:
    """``drip usage --json | head -1``: the reader closes the pipe before the rows are
    written; the command ends quietly with 141 (128 + SIGPIPE), as shell tools do."""
    import os

    with drip.Drip(api_key=account.secret_key, base_url=account.base_url) as client:
        for i in range(300):
            client.track_usage(external_customer_id=f"pipe-{i}", meter="m", quantity=1)
    env = {**os.environ, "DRIP_API_KEY": account.secret_key, "DRIP_BASE_URL": account.base_url}
    for fmt in ("--json", "--csv"):
        status, err = _left_early(["usage", "--by", "customer,meter", fmt], env)
        assert status == 141, err
        assert "Traceback" not in err and "Exception ignored" not in err


def _left_early(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``drip COMMAND`` whose reader closes the pipe before any row comes: its exit status
    and what it wrote to stderr."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "drip", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    # the reader leaves before the rows come: reading a line first raced the writer, whose
    # whole output can fit the pipe's buffer (then nothing breaks and the exit is 0)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.wait(timeout=60), err


def test_by_customer_names_the_customers_without_listing_them(
    client: drip.Drip,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--by customer`` with many customers in the account, few in the window: the summary
    names each group's customer, so the command makes one request (it listed every customer
    of the account, 1,000 a page)."""
    import httpx

    rows = [f"quiet_{i},api_calls,1,2026-11-01T00:00:00Z" for i in range(1001)]
    rows += ["alice,api_calls,2,2026-12-01T09:00:00Z", "bob,api_calls,5,2026-12-01T10:00:00Z"]
    data = tmp_path / "rows.csv"
    data.write_text("external_customer_id,meter,quantity,timestamp\n" + "\n".join(rows) + "\n")
    assert main(["import", str(data)]) == 0
    capsys.readouterr()
    sent: list[str] = []
    send = httpx.Client.send

    def counting(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        sent.append(request.url.path)
        return send(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", counting)
    window = ["--since", "2026-12-01", "--until", "2026-12-02", "--by", "customer", "--json"]
    assert main(["usage", *window]) == 0
    got = {r["externalCustomerId"]: r["quantity"] for r in json.loads(capsys.readouterr().out)}
    assert got == {"alice": "2", "bob": "5"}
    assert sent == ["/v1/usage/summary"]


def test_by_customer_from_an_older_server_lists_customers_until_all_are_named() -> None:
    """A server before ``groups[].externalCustomerId``: the customers are listed, a page at a
    time, until every row's customer is named (not the whole account)."""
    from types import SimpleNamespace

    from drip.cli.usage import _name_customers, _rows
    from drip.models import UsageSummary

    summary = UsageSummary.model_validate(
        {
            "meters": [],
            "groupBy": ["customer"],
            "groups": [{"kind": "meter", "quantity": "2", "customerId": "cus_3"}],
        }
    )
    pages: list[int] = []

    def list_customers(limit: int, offset: int) -> Any:
        pages.append(offset)
        made = [
            SimpleNamespace(id=f"cus_{offset + i}", external_customer_id=f"u{offset + i}")
            for i in range(limit)
        ]
        return SimpleNamespace(data=made)

    rows = _rows(summary)
    _name_customers(SimpleNamespace(list_customers=list_customers), summary, rows)
    assert rows[0]["externalCustomerId"] == "u3"
    assert pages == [0]


def test_an_empty_window_as_csv_is_a_header_without_rows(
    client: drip.Drip, capsys: pytest.CaptureFixture[str]
) -> None:
    """No usage in the window: the CSV is its header line (it was one blank line, which a CSV
    reader takes for a file without columns)."""
    window = ["--since", "2001-01-01", "--until", "2001-01-02"]
    assert main(["usage", *window, "--by", "customer,meter", "--csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split(",")[:4] == [
        "customerId",
        "externalCustomerId",
        "meter",
        "kind",
    ]
    assert list(csv.DictReader(io.StringIO(out))) == []
    assert main(["usage", *window, "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("meter,kind,quantity")


def test_a_table_reader_that_leaves_early_ends_141_like_json(account: Any) -> None:
    """``drip runs | head`` and ``drip usage | head`` (tables): rich's broken-pipe answer was
    exit status 1, an error to ``set -o pipefail`` scripts; now 141 as with ``--json``."""
    import os

    env = {**os.environ, "DRIP_API_KEY": account.secret_key, "DRIP_BASE_URL": account.base_url}
    for command in (["runs"], ["usage", "--by", "customer,meter"]):
        status, err = _left_early(command, env)
        assert status == 141, (command, err)
        assert "Traceback" not in err and "Exception ignored" not in err


def test_by_workflow_names_each_workflow_beside_its_id(
    client: drip.Drip, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--by workflow`` gave ``wf_…`` ids alone; each row now has the workflow's slug too
    (what ``drip.run(workflow=...)`` and ``drip runs --workflow`` take)."""
    for workflow, quantity in (("nightly-report", 3), ("support-bot", 5)):
        with client.run(workflow, external_customer_id="wf-user") as run:
            run.event("tokens", quantity)
    assert client.flush(timeout=20).failed == 0
    assert main(["usage", "--customer", "wf-user", "--by", "workflow", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["workflow"]: r["quantity"] for r in rows} == {
        "nightly-report": "3",
        "support-bot": "5",
    }
    assert all(r["workflowId"].startswith("wf_") for r in rows)
    assert main(["usage", "--customer", "wf-user", "--by", "workflow,meter", "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(table[0])[:3] == ["workflowId", "workflow", "meter"]
    assert main(["usage", "--customer", "wf-user", "--by", "workflow"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "support-bot" in x)
    assert "wf_" in line and " 5 " in f"{line} "

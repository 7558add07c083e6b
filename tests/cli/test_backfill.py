"""``drip import``: CSV / JSONL backfill, idempotent per row, with a summary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import drip
from drip.cli import main


@pytest.fixture
def env(account: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[drip.Drip]:
    monkeypatch.setenv("DRIP_API_KEY", account.secret_key)
    monkeypatch.setenv("DRIP_BASE_URL", account.base_url)
    with drip.Drip() as client:
        yield client


def test_csv_import_is_idempotent_and_reports_rejections(
    env: drip.Drip, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = env.create_customer(external_customer_id="backfill-user")
    rows = ["customer_id,meter,quantity,timestamp,metadata.model"]
    rows += [
        f"{customer.id},llm_tokens,{100 + i},2026-11-{1 + i % 28:02d}T10:00:00Z,m1"
        for i in range(40)
    ]
    rows.append(f"{customer.id},llm_tokens,100,2026-11-01T10:00:00Z,m1")  # same as row 1: kept
    rows.append(f"{customer.id},llm_tokens,lots,2026-11-02,m1")  # bad quantity
    rows.append(f"{customer.id},,5,2026-11-02,m1")  # no meter
    rows.append(f"{customer.id},llm_tokens,5,yesterday,m1")  # bad timestamp
    path = tmp_path / "usage.csv"
    path.write_text("\n".join(rows) + "\n")
    expected = sum(100 + i for i in range(40)) + 100

    assert main(["import", str(path), "--batch-size", "7"]) == 1
    out = capsys.readouterr().out
    assert "41 imported, 0 duplicate" in out and "3 rejected" in out
    assert "line 43: quantity 'lots' is not a number" in out
    assert "line 44: meter is missing" in out
    assert "line 45: timestamp 'yesterday'" in out
    assert env.get_usage_summary(customer_id=customer.id).total("llm_tokens") == expected

    # a re-run (say, after an interruption) stores nothing twice
    assert main(["import", str(path)]) == 1
    out = capsys.readouterr().out
    assert "0 imported, 41 duplicate" in out
    assert env.get_usage_summary(customer_id=customer.id).total("llm_tokens") == expected


def test_interrupted_jsonl_import_completes_without_doubles(
    env: drip.Drip, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = env.create_customer(external_customer_id="backfill-jsonl")
    lines = [
        json.dumps(
            {
                "customerId": customer.id,
                "meter": "api_calls",
                "quantity": 1,
                "timestamp": f"2026-10-{1 + i % 30:02d}",
                "metadata": {"n": i},
            }
        )
        for i in range(30)
    ]
    head = tmp_path / "head.jsonl"
    head.write_text("\n".join(lines[:12]) + "\n")  # what got through before the interruption
    full = tmp_path / "all.jsonl"
    full.write_text("\n".join(lines) + "\n\n")
    assert main(["import", str(head)]) == 0
    assert "12 imported" in capsys.readouterr().out
    assert main(["import", str(full)]) == 0
    assert "18 imported, 12 duplicate" in capsys.readouterr().out
    assert env.get_usage_summary(customer_id=customer.id).total("api_calls") == 30


def test_import_refuses_unknown_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "rows.txt"
    other.write_text("x")
    assert main(["import", str(other)]) == 2
    assert ".csv or .jsonl" in capsys.readouterr().err


def test_files_as_spreadsheets_and_people_write_them(
    env: drip.Drip, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spreadsheet's "CSV UTF-8" (a byte-order mark first, CRLF lines) imports; a file that
    is not UTF-8 is refused in one line naming the line, before anything is sent; a timestamp
    outside years 1-9999 once in UTC and a JSON ``true`` quantity are rejected rows."""
    header = "external_customer_id,meter,quantity,timestamp\r\n"
    bom = tmp_path / "excel.csv"
    bom.write_bytes(("\ufeff" + header + "sheet-user,t,2,2026-11-01T10:00:00Z\r\n").encode())
    assert main(["import", str(bom)]) == 0
    assert "1 imported, 0 duplicate" in capsys.readouterr().out
    assert env.get_usage_summary(customer_id="sheet-user").total("t") == 2

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        (header + "sheet-user,t,1,2026-11-01\r\nm\xfcller,t,1,2026-11-01\r\n").encode("latin-1")
    )
    assert main(["import", str(latin1)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 3 is not UTF-8 text (byte 0xfc)" in err

    rows = tmp_path / "rows.jsonl"
    lines = [
        {"external_customer_id": "sheet-user", "meter": "t", "quantity": True},
        {"external_customer_id": "sheet-user", "meter": "t", "quantity": 1,
         "timestamp": "0001-01-01T00:00:00+01:00"},
        {"external_customer_id": "sheet-user", "meter": "t", "quantity": 4},
    ]  # fmt: skip
    rows.write_bytes(b"\xef\xbb\xbf" + "\n".join(map(json.dumps, lines)).encode())
    assert main(["import", str(rows)]) == 1
    out = capsys.readouterr().out
    assert "1 imported, 0 duplicate (already stored), 2 rejected" in out
    assert "line 1: quantity True is not a number" in out
    assert "line 2: timestamp '0001-01-01T00:00:00+01:00' is outside years 1-9999" in out
    assert env.get_usage_summary(customer_id="sheet-user").total("t") == 6


def test_a_csv_row_with_more_values_than_the_header_is_rejected_not_cut(
    env: drip.Drip, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`user,api,1,000` under a three-column header was imported as a quantity of 1, the
    `000` dropped without a word; trailing empty values (a spreadsheet's ragged rows) are
    fine."""
    path = tmp_path / "commas.csv"
    path.write_text(
        "external_customer_id,meter,quantity\n"
        "wide-user,api,1,000\n"
        'wide-user,api,"2,000"\n'
        "wide-user,api,3,,\n"
    )
    assert main(["import", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1 imported, 0 duplicate (already stored), 2 rejected" in out
    assert "line 2: 4 values but the header names 3 columns (unnamed: '000')" in out
    assert "line 3: quantity '2,000' is not a number" in out
    assert env.get_usage_summary(customer_id="wide-user").total("api") == 3


def test_an_interrupted_import_says_what_is_stored_and_that_a_rerun_is_safe(
    env: drip.Drip,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C in the middle of a file: exit 130 with how many rows were stored and that the
    same command finishes the job (it ended with a progress bar and nothing else)."""
    from drip.cli import backfill

    path = tmp_path / "long.csv"
    path.write_text(
        "external_customer_id,meter,quantity,timestamp\n"
        + "".join(f"ctrl-c,api,1,2026-11-01T00:00:{i:02d}Z\n" for i in range(30))
    )
    real = backfill._send
    sent: list[int] = []

    def send(drip: Any, batch: Any, tally: Any) -> None:
        if sent:
            raise KeyboardInterrupt
        sent.append(len(batch))
        real(drip, batch, tally)

    monkeypatch.setattr(backfill, "_send", send)
    assert main(["import", str(path), "--batch-size", "10"]) == 130
    err = capsys.readouterr().err
    assert "long.csv: interrupted; 10 imported, 0 duplicate so far" in err
    assert "Run the same command again" in err
    monkeypatch.setattr(backfill, "_send", real)
    assert main(["import", str(path), "--batch-size", "10"]) == 0
    assert "20 imported, 10 duplicate" in capsys.readouterr().out
    assert env.get_usage_summary(customer_id="ctrl-c").total("api") == 30


def test_spaces_around_csv_names_and_values_are_layout_not_data(
    env: drip.Drip, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`external_customer_id, meter, quantity` (spaces after the commas) rejected every row
    as "meter is missing"; ` api` under a plain header was a meter apart from `api`."""
    spaced = tmp_path / "spaced.csv"
    spaced.write_text(
        "external_customer_id, meter, quantity, timestamp\n"
        "space-user, api, 2, 2026-11-01T10:00:00Z\n"
        "space-user , api ,3 ,2026-11-01T11:00:00Z\n"
    )
    assert main(["import", str(spaced)]) == 0
    assert "2 imported, 0 duplicate (already stored), 0 rejected" in capsys.readouterr().out
    summary = env.get_usage_summary(customer_id="space-user")
    assert {m.meter: m.quantity for m in summary.meters} == {"api": 5}

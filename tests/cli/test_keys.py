"""``drip keys create`` writes into the database ``drip serve`` uses, or refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from drip.cli import main


def test_keys_create_refuses_a_missing_default_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "create"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / ".drip" / "drip.db") in err and "drip serve" in err
    assert not (tmp_path / ".drip" / "drip.db").exists()


def test_keys_create_uses_the_default_database_of_drip_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from drip.server import start_server

    monkeypatch.chdir(tmp_path)
    db = tmp_path / ".drip" / "drip.db"
    db.parent.mkdir()
    with start_server(f"sqlite:///{db}"):
        pass  # what `drip serve` does on first start: the database file exists
    assert main(["keys", "create"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("sk_local_")
    assert str(db) in captured.err
    import httpx

    with start_server(f"sqlite:///{db}") as server:
        answer = httpx.get(
            f"{server.url}/v1/customers",
            headers={"Authorization": f"Bearer {captured.out.strip()}"},
        )
    assert answer.status_code == 200

"""``drip spool list`` and ``drip spool replay``: what each spool directory holds (never its
key), and the refusals that name the problem (exit 2) or stop a replay with the files kept
(exit 1). The full scenario (a rotated key, replayed once) is in
``tests/delivery/test_auth.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from drip._delivery.spool import META, Spool
from drip.cli import main

KEY = "sk_local_" + "ab" * 24
BODY = b'{"items":[]}'


def spooled(root: Path, base_url: str = "http://127.0.0.1:9/v1", key: str = KEY) -> Path:
    """A spool directory with two batches of a process that is gone."""
    spool = Spool(str(root), base_url, key, 1 << 20)
    spool.write(BODY, 3)
    spool.write(BODY, 4)
    spool.release()
    return Path(spool.dir)


def test_the_spool_directory_says_which_server_and_key_it_is_for_without_the_key(
    tmp_path: Path,
) -> None:
    folder = spooled(tmp_path)
    meta = json.loads((folder / META).read_text())
    assert meta["base_url"] == "http://127.0.0.1:9/v1" and meta["key"] == KEY[:12] + "…"
    assert KEY not in (folder / META).read_text()
    assert oct(os.stat(folder / META).st_mode & 0o777) == "0o600"


def test_list_shows_each_spool_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = spooled(tmp_path)
    spooled(tmp_path, key="sk_local_" + "cd" * 24)
    assert main(["spool", "list", "--spool-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SPOOL", "BASE", "URL"]
    row = next(line for line in lines if line.startswith(folder.name)).split()
    assert row[1:5] == ["http://127.0.0.1:9/v1", KEY[:12] + "…", "2", "7"]
    assert len([line for line in lines if "http://127.0.0.1:9/v1" in line]) == 2
    assert KEY not in out and "drip spool replay SPOOL --api-key KEY" in out


def test_list_and_replay_name_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["spool", "list"]) == 2
    assert "Pass --spool-dir DIR or set DRIP_SPOOL_DIR" in capsys.readouterr().err
    monkeypatch.setenv("DRIP_SPOOL_DIR", str(tmp_path))
    assert main(["spool", "list"]) == 0
    assert "no spool directories in" in capsys.readouterr().out
    assert main(["spool", "replay", "0123", "--api-key", KEY]) == 2
    assert "'0123' names no spool directories" in capsys.readouterr().err
    folder = spooled(tmp_path)
    (folder / META).unlink()  # a spool written before spool.json existed
    assert main(["spool", "replay", folder.name[:6], "--api-key", KEY]) == 2
    assert "does not say which server it is for: pass --base-url" in capsys.readouterr().err
    assert len(list(folder.glob("*.batch"))) == 2


def test_a_replay_whose_key_is_refused_stops_and_keeps_every_file(
    tmp_path: Path, live_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = spooled(tmp_path, base_url=live_server.url + "/v1")
    argv = ["spool", "replay", str(folder), "--api-key", "sk_local_" + "0" * 48]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "stopped, 2 batches kept" in err and "the server refused the API key" in err
    assert "this server does not know it" in err
    assert len(list(folder.glob("*.batch"))) == 2

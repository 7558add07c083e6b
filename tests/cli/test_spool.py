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


def test_a_replay_reads_the_key_from_stdin_given_as_a_dash(
    tmp_path: Path,
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--api-key -``: the key is read from stdin, where ``ps`` cannot see it."""
    import io

    folder = spooled(tmp_path, base_url=live_server.url + "/v1")
    monkeypatch.setattr("sys.stdin", io.StringIO("sk_local_" + "0" * 48 + "\n"))
    assert main(["spool", "replay", str(folder), "--api-key", "-"]) == 1
    assert "the server refused the API key" in capsys.readouterr().err  # that key was used
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["spool", "replay", str(folder), "--api-key", "-"]) == 2
    assert "--api-key KEY (or - to read stdin)" in capsys.readouterr().err
    assert len(list(folder.glob("*.batch"))) == 2


def test_a_replay_to_a_server_that_does_not_answer_says_so_and_stops_within_its_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = spooled(tmp_path, base_url=f"http://127.0.0.1:{port}/v1")
    started = time.monotonic()
    argv = ["spool", "replay", str(folder), "--api-key", KEY, "--max-retry-time", "1"]
    assert main(argv) == 1
    assert time.monotonic() - started < 15  # the default budget is 60 s
    err = " ".join(capsys.readouterr().err.split())
    assert f"sending {folder} to http://127.0.0.1:{port}/v1" in err and "1 s" in err
    assert "stopped, 2 batches kept" in err
    assert len(list(folder.glob("*.batch"))) == 2
    with pytest.raises(SystemExit) as exited:  # a budget that cannot be one is named
        main([*argv[:-1], "-5"])
    assert exited.value.code == 2
    assert "--max-retry-time: must be a number of seconds" in capsys.readouterr().err


def test_a_batch_the_server_refuses_whole_is_split_down_to_the_bad_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the sender does: the other records are stored and the file removed, the bad one is
    counted alone (the replay used to stop there, for good, with every record after it)."""
    from drip._delivery import replay
    from drip.errors import DripBadRequestError
    from drip.models import IngestResult

    sent: list[str] = []

    class Server:
        def __init__(self, settings: Any) -> None:
            pass

        def __call__(self, body: bytes) -> IngestResult:
            items = json.loads(body)["items"]
            if any(i["id"] == "evt_bad" for i in items):
                raise DripBadRequestError("cannot read it", status_code=422)
            sent.extend(i["id"] for i in items)
            results = [
                {"index": n, "id": i["id"], "status": "created"} for n, i in enumerate(items)
            ]
            return IngestResult.model_validate(
                {"results": results, "created": len(items), "duplicates": 0, "updated": 0,
                 "rejected": 0}
            )  # fmt: skip

        def close(self) -> None:
            pass

    monkeypatch.setattr(replay, "IngestSender", Server)
    ids = ["evt_1", "evt_2", "evt_bad", "evt_3", "evt_4"]
    items = [{"type": "event", "id": i} for i in ids]
    body = json.dumps({"items": items}, separators=(",", ":")).encode()  # as the SDK writes
    spool = Spool(str(tmp_path), "http://127.0.0.1:9/v1", KEY, 1 << 20)
    spool.write(body, 5)
    spool.release()
    assert main(["spool", "replay", spool.dir, "--api-key", KEY]) == 1
    out, err = capsys.readouterr()
    assert "4 stored, 0 already there, 1 rejected" in " ".join(out.split()), (out, err)
    assert "a record the server refused: the server refused a batch whole: cannot read it" in out
    assert sorted(sent) == ["evt_1", "evt_2", "evt_3", "evt_4"]
    assert not list(Path(spool.dir).glob("*.batch"))


def test_a_replay_leaves_the_batches_of_a_live_process_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = Spool(str(tmp_path), "http://127.0.0.1:9/v1", KEY, 1 << 20)  # its lock is held
    live.write(BODY, 3)
    assert main(["spool", "list", "--spool-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "1"  # IN USE
    assert main(["spool", "replay", live.dir, "--api-key", KEY]) == 1
    out = capsys.readouterr().out
    assert "1 batch of a process that is still running left alone" in out
    assert len(list(Path(live.dir).glob("*.batch"))) == 1
    live.release()

"""What the commands say when they cannot work: a missing extra, a database they cannot use.

Each is one line naming the problem and exit status 2, never a traceback, never a password.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from drip.cli import main
from drip.cli._common import shown
from drip.cli.serve import base_url
from drip.server.keys import KeyStore
from drip.server.storage.database import Database


@pytest.mark.parametrize(
    ("absent", "argv", "extra"),
    [
        ("uvicorn", ["serve"], "server"),
        ("sqlalchemy", ["db", "current"], "server"),
        ("fastapi", ["keys", "create", "--db", "{tmp}/k.db"], "server"),
        ("psycopg", ["serve", "--database-url", "postgresql://u@127.0.0.1:1/d"], "postgres"),
        ("rich", ["runs"], "cli"),
    ],
)
def test_a_command_of_an_extra_that_is_not_installed_says_which_to_install(
    tmp_path: Path, absent: str, argv: list[str], extra: str
) -> None:
    # a module that is None in sys.modules fails to import as an absent one does
    # (ModuleNotFoundError naming it): the install without the extra, in one process
    script = (
        f"import sys; sys.modules[{absent!r}] = None\n"
        "from drip.cli import main\n"
        f"sys.exit(main({[a.format(tmp=tmp_path) for a in argv]!r}))\n"
    )
    env = {**os.environ, "DRIP_API_KEY": "sk_test_x", "DRIP_BASE_URL": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"drip {argv[0]}: this command needs {absent}, which comes with the {extra} extra: "
        f'pip install "drip-sdk[{extra}]"'
    )


def test_a_database_server_that_cannot_be_reached_is_named_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql://drip:s3cret@127.0.0.1:1/drip"  # port 1: refused at once
    for argv in (["serve"], ["db", "upgrade"], ["keys", "create"]):
        assert main([*argv, "--database-url", url]) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"drip {argv[0]}: cannot use the database postgresql://drip:***@")
        assert "Connection refused" in err or "connection failed" in err, err
        assert "s3cret" not in out + err


def test_a_database_url_that_is_not_one_is_refused_without_echoing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--database-url", "mysql://drip@127.0.0.1/drip"]) == 2
    assert "unsupported database 'mysql'" in capsys.readouterr().err
    assert main(["db", "current", "--database-url", "drip:s3cret-not-a-url"]) == 2
    err = capsys.readouterr().err
    assert "the database URL cannot be read" in err and "s3cret" not in err


def test_a_file_that_is_not_a_database_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.db"
    text = b"my notes, not a database\n" * 40
    path.write_bytes(text)
    for argv in (["serve"], ["db", "upgrade"], ["keys", "create"]):
        assert main([*argv, "--db", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.strip() == (
            f"drip {argv[0]}: cannot use the database sqlite:///{path}: file is not a database"
        )
    assert path.read_bytes() == text


def test_a_database_folder_that_cannot_be_made_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the folder would go")
    assert main(["serve", "--db", str(blocker / "drip.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"drip serve: cannot make the database's folder {blocker}: ")


def test_a_printed_database_url_has_its_password_masked() -> None:
    assert shown("postgresql://drip:s3cret@db.internal:5432/drip") == (
        "postgresql://drip:***@db.internal:5432/drip"
    )
    assert shown("sqlite:////srv/drip.db") == "sqlite:////srv/drip.db"


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_that_is_not_one_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    # 99999 would have been bound as 34463 (the OS keeps the low 16 bits), announced as 99999
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--db", str(tmp_path / "d.db"), "--port", port])
    assert stop.value.code == 2
    assert "argument --port: must be a TCP port, 1-65535" in capsys.readouterr().err


def test_a_database_file_whose_name_is_not_utf8_is_used_and_shown_escaped(tmp_path: Path) -> None:
    # its bytes reach Python as surrogates: printing the URL raised UnicodeEncodeError after
    # the key was stored (keys create), or before the server started (serve)
    path = os.fsencode(tmp_path) + b"/d\xff.db"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "drip", "keys", "create", "--db", path],
        capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.decode().startswith("sk_local_")
    assert b"Traceback" not in done.stderr
    assert done.stderr.decode().endswith(f"stored in sqlite:///{tmp_path}/d\\udcff.db\n")
    assert os.path.exists(path)
    assert shown(os.fsdecode(b"sqlite:////x/d\xff.db")) == "sqlite:////x/d\\udcff.db"
    with_password = shown("postgresql://u:pw@h/d\udcff")  # the escape quoted or not: sqlalchemy's
    assert with_password.startswith("postgresql://u:***@h/d") and "pw" not in with_password


def test_a_port_in_use_is_said_before_the_server_is_announced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # uvicorn said it after drip had announced "Drip local server on ..."
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--db", str(tmp_path / "d.db"), "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"drip serve: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another server is there: choose another --port)\n"
    )
    # the new database's keys are made when the server can start (they are shown once then)
    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        assert KeyStore(db).bootstrap() is not None
    finally:
        db.dispose()
    assert main(["serve", "--db", str(tmp_path / "e.db"), "--host", "192.0.2.1"]) == 2
    assert "cannot listen on 192.0.2.1:8787: Cannot assign requested address" in (
        capsys.readouterr().err
    )


def test_an_ipv6_address_is_announced_as_a_url() -> None:
    assert base_url("::1", 8787) == "http://[::1]:8787"
    assert base_url("0.0.0.0", 80) == "http://0.0.0.0:80"

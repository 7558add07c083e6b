"""The disk spool: batches the server has not acknowledged, kept where a crash cannot reach.

Layout: ``<spool_dir>/<16 hex of sha256(base URL, API key)>/`` (``Settings.spool_identity``
when set: the embedded server's database file), so a later process replays only
what was meant for the same server and account. Each process writes its own files::

    <owner>.lock                       held (flock) while the owner process lives
    <owner>-<seq>.batch                one encoded batch: a header line, then the body
    <owner>-<seq>.tmp                  a batch being written (renamed to .batch when complete)
    spool.json                         the base URL and a hint of the key (its first 12
                                       characters, as the server shows it; never the key), for
                                       ``drip spool list`` and ``drip spool replay``

``owner`` is ``<start time ns>-<pid>``, so names sort in the order batches were written. A batch
file holds ``DRIP1 <records> <crc32> <bytes>\\n`` and the ``POST /v1/ingest`` body, byte for byte.

Policy:

* Written by the delivery worker, never on the caller's thread, before the batch is sent; removed
  once the server has answered it (created, duplicate or rejected: all final).
* Replayed by any later process with the same directory, key and base URL: on start it claims
  (atomic rename) the batches of owners whose lock is free (the process is gone) and sends them
  first. Ids were made on the client, so a batch sent twice is stored once (``duplicate``).
* Bounded: ``spool_max_bytes`` (default 256 MiB) for the directory; when it is full no new batch
  is written, the in-memory buffer fills, and the caller waits (back-pressure), as without a spool.
* A file that fails its header or checksum is renamed ``.corrupt`` and reported, never sent and
  never a crash; a ``.tmp`` left by a crash is removed and reported.
* Durability: files are not ``fsync``-ed. A process crash (SIGKILL, OOM kill) keeps everything
  written; an OS crash or power loss may lose the last seconds. What SIGKILL loses is what had
  not been written yet: records of the last flush interval (``flush_interval``, 0.5 s).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass, field

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no replay of other processes' files
    fcntl = None  # type: ignore[assignment]

__all__ = ["META", "Spool", "SpoolCorrupt", "SpoolFile", "SpoolSummary", "key_hint", "survey"]

_MAGIC = b"DRIP1"
#: what a spool directory is for: its base URL and a hint of its key, never the key
META = "spool.json"


class SpoolCorrupt(Exception):
    """A spool file that cannot be trusted (truncated, bad header, bad checksum)."""


@dataclass
class SpoolFile:
    """One batch on disk."""

    path: str
    count: int
    size: int


class Spool:
    """One process's view of its spool directory."""

    def __init__(self, root: str, base_url: str, api_key: str | None, max_bytes: int) -> None:
        name = f"{base_url}\0{api_key or ''}".encode("utf-8", "surrogatepass")  # a path not UTF-8
        digest = hashlib.sha256(name).hexdigest()[:16]
        self.dir = os.path.join(os.path.abspath(root), digest)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)  # usage data: this user's only
        _describe(self.dir, base_url, api_key)
        self.max_bytes = max_bytes
        self._lock_fd: int | None = None
        self._take_ownership()

    @classmethod
    def existing(cls, path: str, max_bytes: int = 1 << 62) -> Spool:
        """The spool directory ``path`` as it is (``drip spool replay``), under an owner of its
        own, so that it claims only the batches of processes that are gone."""
        spool = cls.__new__(cls)
        spool.dir = os.path.abspath(path)
        spool.max_bytes = max_bytes
        spool._lock_fd = None
        spool._take_ownership()
        return spool

    def _take_ownership(self) -> None:
        """A fresh owner name and its lock (at start and in a ``fork()`` child)."""
        if self._lock_fd is not None:
            # the parent's flock stays held by the parent's descriptor
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
        self.owner = f"{time.time_ns():020d}-{os.getpid()}"
        self._seq = 0
        self.bytes = self._size()
        fd = os.open(os.path.join(self.dir, self.owner + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fd = fd

    def after_fork(self) -> None:
        self._take_ownership()

    def _size(self) -> int:
        total = 0
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.dir):
                if entry.name.endswith((".batch", ".tmp")):
                    with contextlib.suppress(OSError):
                        total += entry.stat().st_size
        return total

    def has_room(self, size: int) -> bool:
        return self.bytes + size <= self.max_bytes

    def write(self, body: bytes, count: int) -> SpoolFile:
        """Write one batch; the file appears complete or not at all."""
        self._seq += 1
        name = f"{self.owner}-{self._seq:010d}"
        header = b"%s %d %08x %d\n" % (_MAGIC, count, zlib.crc32(body), len(body))
        tmp = os.path.join(self.dir, name + ".tmp")
        path = os.path.join(self.dir, name + ".batch")
        try:
            with open(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb") as f:
                f.write(header)
                f.write(body)
            os.replace(tmp, path)
        except BaseException:
            # a full disk (or a file size limit): the batch is still in memory and delivered
            # from there; a partial file would hold the space the disk lacks, and the next
            # process would report its records lost when they were not
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        size = len(header) + len(body)
        self.bytes += size
        return SpoolFile(path, count, size)

    @staticmethod
    def read(path: str) -> bytes:
        """The body of a batch file; ``SpoolCorrupt`` when it cannot be trusted."""
        with open(path, "rb") as f:
            data = f.read()
        head, sep, body = data.partition(b"\n")
        parts = head.split(b" ")
        try:
            if not sep or len(parts) != 4 or parts[0] != _MAGIC:
                raise ValueError("bad header")
            crc, size = int(parts[2], 16), int(parts[3])
        except ValueError:
            raise SpoolCorrupt(f"{path}: not a drip spool batch (bad header)") from None
        if len(body) != size:
            raise SpoolCorrupt(f"{path}: truncated ({len(body)} of {size} bytes)")
        if zlib.crc32(body) != crc:
            raise SpoolCorrupt(f"{path}: checksum mismatch")
        return body

    def remove(self, file: SpoolFile) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(file.path)
        self.bytes = max(0, self.bytes - file.size)

    def set_aside(self, file: SpoolFile) -> str:
        """Keep a corrupt file for inspection, out of the replay's way."""
        target = file.path[: -len(".batch")] + ".corrupt"
        with contextlib.suppress(OSError):
            os.replace(file.path, target)
        self.bytes = max(0, self.bytes - file.size)
        return target

    # -- replay -------------------------------------------------------------------------------

    def claim_orphans(self) -> tuple[list[SpoolFile], list[str]]:
        """Take over the batches of owners that are gone, oldest first.

        Returns the claimed files and the problems found (unreadable headers, ``.tmp`` files
        a crash left behind), for the caller to report.
        """
        claimed: list[SpoolFile] = []
        problems: list[str] = []
        if fcntl is None:
            return claimed, problems
        try:
            names = sorted(os.listdir(self.dir))
        except OSError as exc:
            return claimed, [f"cannot list the spool directory {self.dir}: {exc}"]
        owners = {n[: -len(".lock")] for n in names if n.endswith(".lock")}
        owners |= {_owner(n) for n in names if n.endswith((".batch", ".tmp"))}
        owners.discard(self.owner)
        for owner in sorted(owners):
            if not self._gone(owner):
                continue
            took = False
            for name in names:
                if _owner(name) != owner:
                    continue
                took = True
                path = os.path.join(self.dir, name)
                if name.endswith(".tmp"):
                    problems.append(
                        f"{path}: a batch a crashed process was writing; its records are lost"
                    )
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                elif name.endswith(".batch"):
                    file = self._claim(path, problems)
                    if file is not None:
                        claimed.append(file)
            lock = os.path.join(self.dir, owner + ".lock")
            # a lock without batches may belong to a process that is just starting
            with contextlib.suppress(OSError):
                if took or time.time() - os.path.getmtime(lock) > 60:
                    os.unlink(lock)
        return claimed, problems

    def close(self) -> None:
        """At a clean exit: drop this process's lock file when it left no batch behind."""
        prefix = self.owner + "-"
        with contextlib.suppress(OSError):
            if not any(n.startswith(prefix) for n in os.listdir(self.dir)):
                os.unlink(os.path.join(self.dir, self.owner + ".lock"))

    def of_other_keys(self) -> list[SpoolSummary]:
        """The sibling directories for the same server with batches waiting: those of another
        API key (after a rotation, this process never replays them by itself)."""
        mine = survey_meta(self.dir)
        if mine is None:
            return []
        found = []
        root = os.path.dirname(self.dir)
        with contextlib.suppress(OSError):
            for entry in os.scandir(root):
                if entry.path == self.dir or not entry.is_dir():
                    continue
                other = survey_meta(entry.path)
                if other is None or other.base_url != mine.base_url:
                    continue
                with contextlib.suppress(OSError):
                    other.batches = sum(n.endswith(".batch") for n in os.listdir(entry.path))
                if other.batches:
                    found.append(other)
        return found

    def release(self) -> None:
        """Let go of this owner's lock (``drip spool replay`` at its end): what it kept is then
        claimable by the next replay, in this process too."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _gone(self, owner: str) -> bool:
        return _gone(self.dir, owner)

    def _claim(self, path: str, problems: list[str]) -> SpoolFile | None:
        self._seq += 1
        target = os.path.join(self.dir, f"{self.owner}-{self._seq:010d}.batch")
        try:
            os.rename(path, target)  # atomic: of two replaying processes, one wins
        except FileNotFoundError:
            return None
        try:
            with open(target, "rb") as f:
                head = f.readline(64)
            parts = head.split(b" ")
            if len(parts) != 4 or parts[0] != _MAGIC:
                raise ValueError
            count = int(parts[1])
            size = os.path.getsize(target)
        except (OSError, ValueError):
            bad = SpoolFile(target, 0, 0)
            problems.append(f"{path}: not a drip spool batch; kept as {self.set_aside(bad)}")
            return None
        return SpoolFile(target, count, size)


def _owner(name: str) -> str:
    """``<time>-<pid>`` of ``<time>-<pid>-<seq>.batch``."""
    return "-".join(name.split("-")[:2])


def _gone(folder: str, owner: str) -> bool:
    """True when no live process holds ``owner``'s lock."""
    assert fcntl is not None
    path = os.path.join(folder, owner + ".lock")
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True  # already claimed (or never locked): the rename below decides
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the probe's lock
    return True


def key_hint(api_key: str | None) -> str:
    """What may be shown of a key: its first 12 characters (the server's own hint)."""
    return f"{api_key[:12]}…" if api_key else "(no key)"


def _describe(folder: str, base_url: str, api_key: str | None) -> None:
    """Write ``spool.json`` once (best effort: the spool works without it)."""
    path = os.path.join(folder, META)
    if os.path.exists(path):
        return
    data = {"base_url": base_url, "key": key_hint(api_key), "created": time.time()}
    part = f"{path}.{os.getpid()}.part"  # not .tmp: that is a batch being written
    with contextlib.suppress(OSError):
        with open(os.open(part, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "w") as f:
            json.dump(data, f)
        os.replace(part, path)


@dataclass
class SpoolSummary:
    """What one spool directory holds (``drip spool list``)."""

    dir: str
    base_url: str | None = None
    key: str | None = None
    batches: int = 0
    records: int = 0
    bytes: int = 0
    #: modification time of the oldest batch (seconds since the epoch)
    oldest: float | None = None
    #: batches of processes still running (their lock is held): not replayable now
    live: int = 0
    corrupt: int = 0
    owners: set[str] = field(default_factory=set)


def survey_meta(folder: str) -> SpoolSummary | None:
    """What ``spool.json`` says of ``folder`` (None without one), nothing counted yet."""
    try:
        with open(os.path.join(folder, META), encoding="utf-8") as f:
            data = json.load(f)
        base_url, key = data.get("base_url"), data.get("key")
    except (OSError, ValueError, AttributeError):
        return None
    return SpoolSummary(
        os.path.abspath(folder), str(base_url or "") or None, str(key or "") or None
    )


def survey(folder: str) -> SpoolSummary:
    """Read what ``folder`` (one spool directory) holds, without changing anything."""
    summary = survey_meta(folder) or SpoolSummary(os.path.abspath(folder))
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.endswith(".corrupt"):
            summary.corrupt += 1
        if not entry.name.endswith(".batch"):
            continue
        try:
            stat = entry.stat()
            with open(entry.path, "rb") as f:
                parts = f.readline(64).split(b" ")
            count = int(parts[1]) if len(parts) == 4 and parts[0] == _MAGIC else 0
        except (OSError, ValueError):
            continue
        summary.batches += 1
        summary.records += count
        summary.bytes += stat.st_size
        if summary.oldest is None or stat.st_mtime < summary.oldest:
            summary.oldest = stat.st_mtime
        owner = _owner(entry.name)
        if owner not in summary.owners:
            summary.owners.add(owner)
        if fcntl is not None and not _gone(folder, owner):
            summary.live += 1
    return summary

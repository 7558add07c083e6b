"""Settings: explicit argument, then ``DRIP_*`` environment, then default — resolved once.

``resolve_settings`` is the only place that reads the environment. The result is frozen, so a
client's behaviour cannot change under it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DripConfigurationError

__all__ = ["DEFAULT_BASE_URL", "Settings", "normalize_base_url", "resolve_settings"]

logger = logging.getLogger("drip")

DEFAULT_BASE_URL = "https://api.drippay.dev/v1"
LOCAL_PREFIX = "local"
#: the longest wait drip takes (ten years, in seconds): durations above it are refused, and
#: ``flush(timeout=inf)`` waits this long (the OS's timers overflow on 1e308 s)
LONGEST_WAIT = 315_360_000.0
DEFAULT_LOCAL_DB = os.path.join(".drip", "local.db")

_KEY_HELP = (
    "Set it with `export DRIP_API_KEY=sk_...` (or pass Drip(api_key=...)). "
    "To try drip without an account, run a local server: `drip serve` prints a key, or set "
    "DRIP_BASE_URL=local to start one inside this process."
)

OnError = Callable[[BaseException], Any]


@dataclass(frozen=True)
class Settings:
    """Resolved client settings."""

    api_key: str | None
    base_url: str
    #: set when DRIP_BASE_URL=local[:PATH]: the SQLite file of the embedded server
    local_db: str | None
    timeout: float
    max_retries: int
    max_retry_time: float
    strict: bool
    flush_interval: float
    max_batch_items: int
    max_batch_bytes: int
    max_buffer: int
    shutdown_timeout: float
    # -- delivery (drip._delivery) --
    #: directory of the disk spool (None: no spool)
    spool_dir: str | None = None
    #: the spool's size bound; when it is full the buffer fills and the caller waits
    spool_max_bytes: int = 256 * 1024 * 1024
    #: ``block`` (default: a full buffer makes the caller wait) or ``drop`` (opt-in)
    overflow: str = "block"
    #: flush on SIGTERM and SIGHUP (chaining an installed handler); DRIP_HANDLE_SIGNALS=0 opts out
    handle_signals: bool = True
    #: the records a batch may take once the server takes ``packed`` events items: 20,000
    #: (its limit per request) unless ``max_batch_items`` was given, then that; a request
    #: costs the sender about the same CPU whatever its size, so a backlog goes in fewer
    packed_batch_items: int = 20_000
    #: what the spool directory is named after, when not ``(base_url, api_key)``: the
    #: embedded server (``DRIP_BASE_URL=local``) has a new port and key in each process, so
    #: its spool is that of the database file (and of the key given, if any)
    spool_identity: tuple[str, str | None] | None = None

    @property
    def key_kind(self) -> str:
        return "public" if (self.api_key or "").startswith("pk_") else "secret"


def normalize_base_url(url: str) -> str:
    """Strip trailing ``/`` and append ``/v1`` unless the URL ends with it (contract §1.1)."""
    url = url.strip().rstrip("/")
    if not url.endswith("/v1"):
        url += "/v1"
    return url


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _number(name: str, arg: float | None, env: Mapping[str, str], default: float) -> float:
    raw: Any = arg if arg is not None else _env(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise DripConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise DripConfigurationError(f"{name} must be a finite number >= 0, got {raw!r}")
    return value


def _seconds(name: str, arg: float | None, env: Mapping[str, str], default: float) -> float:
    value = _number(name, arg, env, default)
    if value > LONGEST_WAIT:
        raise DripConfigurationError(
            f"{name} must be at most {LONGEST_WAIT:.0f} seconds (ten years), got {value:g}"
        )
    return value


def _flag(name: str, arg: bool | None, env: Mapping[str, str]) -> bool:
    if arg is not None:
        return arg
    raw = (_env(env, name) or "").lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise DripConfigurationError(f"{name} must be 1/0 or true/false, got {raw!r}")


def _is_placeholder(key: str) -> bool:
    """A key copied from documentation, such as ``sk_test_...``."""
    return "..." in key or "\u2026" in key


def _check_key(key: str, source: str) -> None:
    if not key.startswith(("sk_", "pk_")):
        raise DripConfigurationError(
            f"The API key from {source} must start with 'sk_' (secret) or 'pk_' (public). "
            + _KEY_HELP
        )
    if len(key) < 10 or any(c.isspace() for c in key):
        raise DripConfigurationError(
            f"The API key from {source} is malformed (too short or contains spaces). " + _KEY_HELP
        )
    if not (key.isascii() and key.isprintable()):  # no HTTP header could carry it
        bad = next(c for c in key if not (c.isascii() and c.isprintable()))
        raise DripConfigurationError(
            f"The API key from {source} is malformed: it holds {bad!r}, and a key is printable "
            "ASCII (a byte the environment could not decode, or a character pasted with it). "
            + _KEY_HELP
        )


def _resolve_key(arg: str | None, env: Mapping[str, str], local: bool) -> str | None:
    # The embedded local server hands out its own key: a DRIP_API_KEY in the environment is
    # meant for a remote server and would only be refused there (401).
    env_key = None if local else _env(env, "DRIP_API_KEY")
    if arg is not None and _is_placeholder(arg):
        # A README snippet run as written: use the real key from the environment instead.
        if env_key is not None and not _is_placeholder(env_key):
            logger.warning(
                "api_key=%r looks like a documentation placeholder; using DRIP_API_KEY instead",
                arg[:8] + "...",
            )
            arg = None
        elif local:
            arg = None
    key = arg if arg is not None else env_key
    if key is None:
        if local:
            return None  # the embedded server hands out its own key
        raise DripConfigurationError("No Drip API key was found. " + _KEY_HELP)
    if _is_placeholder(key):
        raise DripConfigurationError(
            "The API key is a documentation placeholder (it contains '...'). " + _KEY_HELP
        )
    _check_key(key, "the api_key argument" if arg is not None else "DRIP_API_KEY")
    return key


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    max_retry_time: float | None = None,
    strict: bool | None = None,
    flush_interval: float | None = None,
    max_batch_items: int | None = None,
    max_batch_bytes: int | None = None,
    max_buffer: int | None = None,
    shutdown_timeout: float | None = None,
    spool_dir: str | None = None,
    spool_max_bytes: int | None = None,
    overflow: str | None = None,
    handle_signals: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting once: argument > ``DRIP_*`` environment > default."""
    env = os.environ if env is None else env
    raw_url = base_url or _env(env, "DRIP_API_URL") or _env(env, "DRIP_BASE_URL")
    local_db: str | None = None
    if raw_url is not None and (raw_url == LOCAL_PREFIX or raw_url.startswith("local:")):
        local_db = raw_url[len("local:") :] if raw_url.startswith("local:") else ""
        local_db = local_db or _env(env, "DRIP_LOCAL_DB") or DEFAULT_LOCAL_DB
        url = "http://127.0.0.1:0/v1"  # replaced by the embedded server's address
    else:
        url = normalize_base_url(raw_url or DEFAULT_BASE_URL)
        if not url.startswith(("http://", "https://")):
            raise DripConfigurationError(
                f"The base URL must start with http:// or https:// (or be 'local'), got {raw_url!r}"
            )
        _check_url(url, raw_url)
    timeout_s = _seconds("DRIP_TIMEOUT", timeout, env, 30.0)
    if timeout_s == 0:
        raise DripConfigurationError("DRIP_TIMEOUT must be greater than 0")
    batch_items = max(1, int(_number("DRIP_MAX_BATCH_ITEMS", max_batch_items, env, 5000)))
    batch_items_given = max_batch_items is not None or _env(env, "DRIP_MAX_BATCH_ITEMS") is not None
    return Settings(
        api_key=_resolve_key(api_key, env, local=local_db is not None),
        base_url=url,
        local_db=local_db,
        timeout=timeout_s,
        max_retries=int(_number("DRIP_MAX_RETRIES", max_retries, env, 4)),
        max_retry_time=_seconds("DRIP_MAX_RETRY_TIME", max_retry_time, env, 60.0),
        strict=_flag("DRIP_STRICT", strict, env),
        flush_interval=_seconds("DRIP_FLUSH_INTERVAL", flush_interval, env, 0.5),
        max_batch_items=batch_items,
        packed_batch_items=batch_items if batch_items_given else max(batch_items, 20_000),
        max_batch_bytes=max(
            1024, int(_number("DRIP_MAX_BATCH_BYTES", max_batch_bytes, env, 2 * 1024 * 1024))
        ),
        max_buffer=max(1, int(_number("DRIP_MAX_BUFFER", max_buffer, env, 100_000))),
        shutdown_timeout=_seconds("DRIP_SHUTDOWN_TIMEOUT", shutdown_timeout, env, 5.0),
        spool_dir=_spool_dir(spool_dir or _env(env, "DRIP_SPOOL_DIR")),
        spool_max_bytes=int(
            _number("DRIP_SPOOL_MAX_BYTES", spool_max_bytes, env, 256 * 1024 * 1024)
        ),
        overflow=_overflow(overflow or _env(env, "DRIP_OVERFLOW")),
        # on unless turned off (``_flag`` alone treats "unset" as off)
        handle_signals=(
            True
            if handle_signals is None and _env(env, "DRIP_HANDLE_SIGNALS") is None
            else _flag("DRIP_HANDLE_SIGNALS", handle_signals, env)
        ),
    )


def _check_url(url: str, raw: str | None) -> None:
    """A base URL every request can be sent to: a host, a TCP port, text that encodes (an
    environment variable holding a byte that is not UTF-8 decodes to a lone surrogate). Found
    here, at construction, not as ``UnicodeEncodeError`` or ``httpx.InvalidURL`` from each call
    and each delivery batch."""
    import httpx

    problem = None
    try:
        url.encode()
        parsed = httpx.URL(url)
        if not parsed.host:
            problem = "it has no host"
        elif parsed.port is not None and not 0 < parsed.port < 65536:
            problem = f"the port {parsed.port} is not a TCP port (1-65535)"
    except UnicodeEncodeError:
        problem = (
            "it holds a character that is not valid UTF-8 (a byte the environment could not decode)"
        )
    except Exception as exc:  # httpx.InvalidURL and the like: its words are the reason
        problem = str(exc)
    if problem is not None:
        raise DripConfigurationError(
            f"The base URL {raw!r} (DRIP_BASE_URL, DRIP_API_URL or base_url=) is not a usable "
            f"URL: {problem}"
        )


def _spool_dir(path: str | None) -> str | None:
    """A directory name the OS can take (a NUL raised ValueError out of the client's
    construction); one that is not writable is reported when delivery starts, not here."""
    if path is not None and "\0" in os.fspath(path):
        raise DripConfigurationError(f"DRIP_SPOOL_DIR / spool_dir= holds a NUL character: {path!r}")
    return path


def _overflow(value: str | None) -> str:
    """What a full buffer does: ``block`` (the caller waits; default) or ``drop``."""
    value = (value or "block").strip().lower()
    if value not in ("block", "drop"):
        raise DripConfigurationError(f"DRIP_OVERFLOW must be 'block' or 'drop', got {value!r}")
    return value

"""Settings: argument > environment > default, the /v1 rule, and key checks."""

from __future__ import annotations

import logging

import pytest

from drip import Drip, DripConfigurationError
from drip._config import DEFAULT_BASE_URL, normalize_base_url, resolve_settings

KEY = "sk_test_config_0001"


@pytest.mark.parametrize(
    ("given", "effective"),
    [
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787/v1"),
        ("http://127.0.0.1:8787/", "http://127.0.0.1:8787/v1"),
        ("http://127.0.0.1:8787/v1/", "http://127.0.0.1:8787/v1"),
        ("http://127.0.0.1:8787/api", "http://127.0.0.1:8787/api/v1"),
        ("http://127.0.0.1:8787/V1", "http://127.0.0.1:8787/V1/v1"),
    ],
)
def test_base_url_follows_the_published_v1_rule(given: str, effective: str) -> None:
    assert normalize_base_url(given) == effective


def test_argument_beats_env_beats_default() -> None:
    env = {"DRIP_API_KEY": "sk_test_from_env_01", "DRIP_BASE_URL": "http://env.test"}
    assert resolve_settings(env={"DRIP_API_KEY": KEY}).base_url == DEFAULT_BASE_URL
    s = resolve_settings(env=env)
    assert (s.api_key, s.base_url) == ("sk_test_from_env_01", "http://env.test/v1")
    s = resolve_settings(api_key=KEY, base_url="http://arg.test", env=env)
    assert (s.api_key, s.base_url) == (KEY, "http://arg.test/v1")


def test_drip_api_url_is_read_before_drip_base_url() -> None:
    env = {"DRIP_API_KEY": KEY, "DRIP_API_URL": "http://a.test", "DRIP_BASE_URL": "http://b.test"}
    assert resolve_settings(env=env).base_url == "http://a.test/v1"


def test_empty_env_counts_as_unset() -> None:
    env = {"DRIP_API_KEY": KEY, "DRIP_API_URL": "", "DRIP_BASE_URL": "http://b.test"}
    assert resolve_settings(env=env).base_url == "http://b.test/v1"


def test_missing_key_says_how_to_fix_it() -> None:
    with pytest.raises(DripConfigurationError) as info:
        resolve_settings(env={})
    text = str(info.value)
    assert "DRIP_API_KEY" in text and "drip serve" in text and "DRIP_BASE_URL=local" in text


def test_missing_key_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIP_API_KEY", raising=False)
    with pytest.raises(DripConfigurationError):
        Drip()


@pytest.mark.parametrize("bad", ["xk_test_123456789", "sk_1", "sk_test with space"])
def test_malformed_key_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(DripConfigurationError) as info:
        resolve_settings(api_key=bad, env={})
    assert bad not in str(info.value)


def test_placeholder_key_falls_back_to_env(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="drip"):
        s = resolve_settings(api_key="sk_test_...", env={"DRIP_API_KEY": KEY})
    assert s.api_key == KEY
    assert "placeholder" in caplog.text


def test_placeholder_key_without_env_is_an_error() -> None:
    with pytest.raises(DripConfigurationError, match="placeholder"):
        resolve_settings(api_key="sk_test_...", env={})


def test_key_kind() -> None:
    assert resolve_settings(api_key="pk_test_abcdefgh", env={}).key_kind == "public"
    assert resolve_settings(api_key=KEY, env={}).key_kind == "secret"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DRIP_TIMEOUT", "abc"),
        ("DRIP_TIMEOUT", "0"),
        ("DRIP_MAX_RETRIES", "-1"),
        ("DRIP_STRICT", "maybe"),
        # past the OS's timers (1e308 s crashed the delivery worker, the sender, atexit)
        ("DRIP_FLUSH_INTERVAL", "1e308"),
        ("DRIP_TIMEOUT", "1e308"),
        ("DRIP_MAX_RETRY_TIME", "1e12"),
        ("DRIP_SHUTDOWN_TIMEOUT", "315360001"),
    ],
)
def test_bad_numbers_and_flags_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(DripConfigurationError, match=name):
        resolve_settings(env={"DRIP_API_KEY": KEY, name: value})


def test_strict_from_env() -> None:
    assert resolve_settings(env={"DRIP_API_KEY": KEY, "DRIP_STRICT": "1"}).strict is True
    assert resolve_settings(env={"DRIP_API_KEY": KEY}).strict is False


def test_local_mode_needs_no_key() -> None:
    s = resolve_settings(env={"DRIP_BASE_URL": "local"})
    assert s.local_db is not None and s.local_db.endswith("local.db") and s.api_key is None
    s = resolve_settings(env={"DRIP_BASE_URL": "local:/tmp/x/y.db"})
    assert s.local_db == "/tmp/x/y.db"


def test_non_http_url_is_refused() -> None:
    with pytest.raises(DripConfigurationError, match="http"):
        resolve_settings(api_key=KEY, base_url="ftp://x", env={})


def test_local_mode_ignores_a_remote_key_from_env() -> None:
    s = resolve_settings(env={"DRIP_BASE_URL": "local", "DRIP_API_KEY": KEY})
    assert s.api_key is None and s.local_db is not None
    s = resolve_settings(api_key=KEY, env={"DRIP_BASE_URL": "local"})
    assert s.api_key == KEY


def test_delivery_settings_argument_environment_default() -> None:
    from drip._config import resolve_settings as resolve

    key = {"api_key": "sk_test_0000000000", "base_url": "http://127.0.0.1:9"}
    default = resolve(**key, env={})
    assert (default.spool_dir, default.overflow, default.handle_signals) == (None, "block", True)
    assert default.spool_max_bytes == 256 * 1024 * 1024
    env = {"DRIP_SPOOL_DIR": "/tmp/s", "DRIP_OVERFLOW": "drop", "DRIP_HANDLE_SIGNALS": "0",
           "DRIP_SPOOL_MAX_BYTES": "1024"}  # fmt: skip
    from_env = resolve(**key, env=env)
    assert (from_env.spool_dir, from_env.overflow, from_env.handle_signals) == (
        "/tmp/s",
        "drop",
        False,
    )
    assert from_env.spool_max_bytes == 1024
    given = resolve(**key, spool_dir="/x", overflow="block", handle_signals=True, env=env)
    assert (given.spool_dir, given.overflow, given.handle_signals) == ("/x", "block", True)
    with pytest.raises(DripConfigurationError, match="DRIP_OVERFLOW must be 'block' or 'drop'"):
        resolve(**key, overflow="lose", env={})


def test_durations_up_to_ten_years_are_taken() -> None:
    s = resolve_settings(
        env={"DRIP_API_KEY": KEY, "DRIP_FLUSH_INTERVAL": "315360000"}, shutdown_timeout=3600 * 24
    )
    assert s.flush_interval == 315_360_000 and s.shutdown_timeout == 86_400
    with pytest.raises(DripConfigurationError, match="at most 315360000 seconds"):
        Drip(api_key=KEY, flush_interval=1e308)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8787/\udcff", "not valid UTF-8"),  # DRIP_BASE_URL=$'...\xff'
        ("http://[::1", "port"),
        ("http://127.0.0.1:99999", "not a TCP port"),
        ("http:///v1", "no host"),
        ("http://h\x00st", "non-printable"),
    ],
)
def test_a_base_url_no_request_can_be_sent_to_is_refused_at_construction(
    url: str, reason: str
) -> None:
    """Such a URL was taken: each Core call then raised UnicodeEncodeError or httpx.InvalidURL
    into the caller, and every delivery batch was refused ('the ingest sender failed')."""
    with pytest.raises(DripConfigurationError, match=reason) as info:
        Drip(api_key=KEY, base_url=url)
    assert "base URL" in str(info.value)
    with pytest.raises(DripConfigurationError, match=reason):
        resolve_settings(env={"DRIP_API_KEY": KEY, "DRIP_BASE_URL": url})


@pytest.mark.parametrize(
    "key", ["sk_\udcffaaaaaaaaaaa", "sk_\u00e9aaaaaaaaaaaa", "sk_aaaaaaaa\x00aaa"]
)
def test_a_key_no_http_header_can_carry_is_refused_at_construction(key: str) -> None:
    """DRIP_API_KEY=$'sk_\\xff...' (a lone surrogate once decoded) or a pasted 'é' was taken:
    each Core call then raised UnicodeEncodeError and every delivery batch was refused."""
    with pytest.raises(DripConfigurationError, match="printable ASCII"):
        Drip(api_key=key, base_url="http://127.0.0.1:9")
    with pytest.raises(DripConfigurationError, match="DRIP_API_KEY is malformed"):
        resolve_settings(env={"DRIP_API_KEY": key})


def test_a_spool_directory_with_a_nul_is_a_configuration_error() -> None:
    """It raised ValueError ('embedded null byte') out of the client's construction."""
    with pytest.raises(DripConfigurationError, match="spool_dir= holds a NUL"):
        Drip(api_key=KEY, base_url="http://127.0.0.1:9", spool_dir="/tmp/a\x00b")

"""Parsing of addresses, sizes, slot counts and environment settings: good values, and clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from granny.config import (
    ENV_HEARTBEAT_TIMEOUT,
    ENV_SLOTS,
    Config,
    env_slots,
    parse_address,
    parse_bytes,
    parse_slots,
)
from granny.errors import ConfigError, GrannyError


# --- parse_address --------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    ("127.0.0.1:7400", ("127.0.0.1", 7400)),
    ("tcp://10.0.0.5:80", ("10.0.0.5", 80)),
    ("  planner.local:65535 ", ("planner.local", 65535)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:7400", ("::1", 7400)),  # IPv6 needs brackets: "::1:7400" is itself an address
    ("tcp://[fe80::2]:80", ("fe80::2", 80)),
])
def test_parse_address(raw: str, expected: tuple[str, int]) -> None:
    assert parse_address(raw) == expected


@pytest.mark.parametrize(("raw", "hint"), [
    ("localhost", "HOST:PORT"),
    (":7400", "HOST:PORT"),
    ("", "HOST:PORT"),
    ("tcp://", "HOST:PORT"),
    ("host:", "not a number"),
    ("host:port", "not a number"),
    ("host:74.5", "not a number"),
    ("host:65536", "out of range"),
    ("host:-1", "out of range"),
    ("::1:7400", "has no port"),  # an unbracketed IPv6 address names no port
    ("::1", "has no port"),
])
def test_parse_address_errors(raw: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_address(raw, "--planner")
    message = str(info.value)
    assert hint in message and "--planner" in message and repr(raw) in message


@given(host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), port=st.integers(0, 65535))
def test_parse_address_round_trips(host: str, port: int) -> None:
    assert parse_address(f"{host}:{port}") == (host, port)
    assert parse_address(f"tcp://{host}:{port}") == (host, port)


@given(raw=st.text(max_size=30))
def test_parse_address_only_raises_config_error(raw: str) -> None:
    try:
        host, port = parse_address(raw)
    except ConfigError:
        return
    assert host and 0 <= port < 65536


def test_parse_address_bracketed_ipv6() -> None:
    assert parse_address("[::1]:7400") == ("::1", 7400)


def test_parse_address_ipv6_without_port_is_an_error() -> None:
    with pytest.raises(ConfigError):
        parse_address("::1")


# --- parse_bytes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    (None, 0),
    (0, 0),
    (1234, 1234),
    ("0", 0),
    ("1048576", 1 << 20),
    ("512MiB", 512 << 20),
    ("512 MiB", 512 << 20),
    ("512mib", 512 << 20),
    ("1.5GiB", 3 << 29),
    ("2G", 2 * 10**9),
    ("2GB", 2 * 10**9),
    ("64k", 64_000),
    ("64KiB", 64 << 10),
    ("10M", 10**7),
    ("100b", 100),
    (" 7 ", 7),
])
def test_parse_bytes(raw: str | int | None, expected: int) -> None:
    assert parse_bytes(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", "MiB", "12 parsecs", "1..5G", "nan", "1e3x", "GiB512"])
def test_parse_bytes_errors(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_bytes(raw)
    assert repr(raw) in str(info.value) and "512MiB" in str(info.value)


@pytest.mark.parametrize("raw", ["inf", "1e999GiB"])
def test_parse_bytes_infinite_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError):
        parse_bytes(raw)


def test_parse_bytes_negative_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_bytes("-1MiB")


@given(n=st.integers(0, 10**6), unit=st.sampled_from(["", "b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib"]))
def test_parse_bytes_integer_multiples(n: int, unit: str) -> None:
    scale = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6, "mib": 1 << 20,
             "g": 10**9, "gb": 10**9, "gib": 1 << 30}[unit]
    assert parse_bytes(f"{n}{unit.upper()}") == n * scale


# --- parse_slots / env ----------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("64", 64), (8, 8), (" 3 ", 3)])
def test_parse_slots(raw: str | int, expected: int) -> None:
    assert parse_slots(raw) == expected


@pytest.mark.parametrize(("raw", "hint"), [
    ("0", "at least 1"), ("-2", "at least 1"), (0, "at least 1"),
    ("two", "not a whole number"), ("1.5", "not a whole number"), ("", "not a whole number"),
])
def test_parse_slots_errors(raw: str | int, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_slots(raw, "--slots")
    assert hint in str(info.value) and "--slots" in str(info.value)


def test_config_errors_are_granny_errors_and_value_errors() -> None:
    with pytest.raises(GrannyError):
        parse_slots("x")
    with pytest.raises(ValueError):
        parse_slots("x")


def test_env_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SLOTS, raising=False)
    assert env_slots(5) == 5
    assert env_slots() >= 1
    monkeypatch.setenv(ENV_SLOTS, "")
    assert env_slots(3) == 3
    monkeypatch.setenv(ENV_SLOTS, "6")
    assert env_slots(3) == 6
    monkeypatch.setenv(ENV_SLOTS, "0")
    with pytest.raises(ConfigError, match=ENV_SLOTS):
        env_slots()


def test_heartbeat_timeout_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_HEARTBEAT_TIMEOUT, raising=False)
    assert Config().heartbeat_timeout == 5.0
    monkeypatch.setenv(ENV_HEARTBEAT_TIMEOUT, "2.5")
    assert Config().heartbeat_timeout == 2.5
    for bad, hint in (("soon", "not a number"), ("0", "must be positive"), ("-3", "must be positive")):
        monkeypatch.setenv(ENV_HEARTBEAT_TIMEOUT, bad)
        with pytest.raises(ConfigError) as info:
            Config()
        assert ENV_HEARTBEAT_TIMEOUT in str(info.value) and hint in str(info.value)


def test_heartbeat_timeout_nan_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_HEARTBEAT_TIMEOUT, "nan")
    with pytest.raises(ConfigError):
        Config()


def test_config_paths_and_with() -> None:
    from pathlib import Path

    c = Config(data_dir=Path("/x/y"))
    assert c.secret_path == Path("/x/y/secret") and c.token_path == Path("/x/y/token")
    assert c.journal_path.parent == Path("/x/y")
    d = c.with_(heartbeat_interval=0.1)
    assert d.heartbeat_interval == 0.1 and c.heartbeat_interval == 0.5 and d.data_dir == c.data_dir


def test_the_migration_and_compile_timeouts_come_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from granny import config

    monkeypatch.delenv(config.ENV_MIGRATION_TIMEOUT, raising=False)
    monkeypatch.delenv(config.ENV_COMPILE_TIMEOUT, raising=False)
    assert config.Config().migration_timeout == config.migration_timeout() == config.tunables.MIGRATION_TIMEOUT
    assert config.Config().compile_timeout == config.tunables.COMPILE_TIMEOUT
    monkeypatch.setenv(config.ENV_MIGRATION_TIMEOUT, "2m")
    monkeypatch.setenv(config.ENV_COMPILE_TIMEOUT, "5s")
    assert config.Config().migration_timeout == config.migration_timeout() == 120.0
    assert config.Config().compile_timeout == 5.0
    assert config.Config(migration_timeout=7).migration_timeout == 7.0  # an explicit value beats the variable
    monkeypatch.setenv(config.ENV_MIGRATION_TIMEOUT, "soon")
    with pytest.raises(ConfigError, match="GRANNY_MIGRATION_TIMEOUT"):
        config.migration_timeout()

"""Tests for micronas.units: budget strings parsed and formatted exactly."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from micronas_base.errors import EXIT_USAGE, UsageError
from micronas.units import (
    MAX_SIZE_BYTES,
    SIZE_UNITS_HELP,
    Budgets,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("50ms", 0.05),
        ("0.05s", 0.05),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("500μs", 0.0005),
        ("50 ms", 0.05),
        ("  50ms  ", 0.05),
        ("1.5ms", 0.0015),
        ("2e-3s", 0.002),
        ("1s", 1.0),
        ("50MS", 0.05),
        ("500US", 0.0005),
        ("1S", 1.0),
        (".5s", 0.5),
        ("3600s", 3600.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "   ", "fast", "-5ms", "0", "0ms", "1e99s", "nan ms", "inf s", "12q", "5 m s", "1.2.3ms",
     "50", "3601s", "+5ms", "ms", "5 ms ms", "1e999999999999s"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text, what="latency budget")
    err = info.value
    assert repr(text) in err.message
    assert "latency budget" in err.message
    assert err.hint
    assert err.exit_code == EXIT_USAGE == 2


def test_parse_duration_specific_messages() -> None:
    with pytest.raises(UsageError) as info:
        parse_duration("50")
    assert "no unit" in info.value.message and "50ms" in info.value.hint
    with pytest.raises(UsageError, match="must be positive"):
        parse_duration("-5ms")
    with pytest.raises(UsageError, match="at most 3600 s"):
        parse_duration("1e99s")
    with pytest.raises(UsageError, match="more than 0 s"):
        parse_duration("0ms")
    with pytest.raises(UsageError, match="deadline '5 sec'"):
        parse_duration("5 sec", what="deadline")


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("256k", 256 * KiB),
        ("256K", 256 * KiB),
        ("256KB", 256 * KiB),
        ("256kB", 256 * KiB),
        ("256KiB", 256 * KiB),
        ("256kib", 256 * KiB),
        ("256 KiB", 256 * KiB),
        ("1M", MiB),
        ("1MB", MiB),
        ("1MiB", MiB),
        ("1.5MiB", 1_572_864),
        ("1.5M", 1_572_864),
        ("1.5k", 1536),
        ("262144", 262_144),
        ("262144B", 262_144),
        ("262144 b", 262_144),
        ("1G", GiB),
        ("1GiB", GiB),
        ("1GB", GiB),
        ("4GiB", 4 * GiB),
        ("4294967296", 4 * GiB),
        (" 1 ", 1),
        ("1e3", 1000),
    ],
)
def test_parse_size_accepts(text: str, nbytes: int) -> None:
    result = parse_size(text)
    assert result == nbytes
    assert type(result) is int


@pytest.mark.parametrize(
    "text",
    ["", "0", "0k", "-1k", "12q", "fast", "1e99", "nan", "inf", "1.3", "1.3k", "256 kk",
     "4294967297", "4.1GiB", "5G", "1..5k", "k", "1e999999999999"],
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_size(text, what="flash budget")
    err = info.value
    assert repr(text) in err.message
    assert "flash budget" in err.message
    assert err.hint
    assert err.exit_code == EXIT_USAGE == 2


def test_parse_size_specific_messages() -> None:
    with pytest.raises(UsageError, match="not a whole number of bytes"):
        parse_size("1.3k")
    with pytest.raises(UsageError, match=r"at most 4,294,967,296 bytes \(4 GiB\)"):
        parse_size("5GiB")
    with pytest.raises(UsageError, match="must be positive"):
        parse_size("-1k")
    with pytest.raises(UsageError, match="unknown unit 'kk'"):
        parse_size("256 kk")


def test_size_units_help() -> None:
    assert "k, K, KB and KiB all mean 1024 bytes" in SIZE_UNITS_HELP
    assert "1024*1024" in SIZE_UNITS_HELP


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.05, "50.000 ms"), (0.0005, "0.500 ms"), (1.0, "1000.000 ms"), (0.0123456, "12.346 ms")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (262_144, "262,144 bytes (256 KiB)"),
        (1000, "1,000 bytes (0.98 KiB)"),
        (1536, "1,536 bytes (1.5 KiB)"),
        (1_572_864, "1,572,864 bytes (1.5 MiB)"),
        (MiB, "1,048,576 bytes (1 MiB)"),
        (4 * GiB, "4,294,967,296 bytes (4 GiB)"),
        (1, "1 byte (< 0.01 KiB)"),
    ],
)
def test_format_size(nbytes: int, text: str) -> None:
    assert format_size(nbytes) == text


def test_budgets_parse_and_describe() -> None:
    budgets = Budgets.parse(latency="50ms", ram="256KiB", flash="1.5MiB")
    assert budgets == Budgets(latency_s=0.05, ram_bytes=262_144, flash_bytes=1_572_864)
    assert budgets.describe() == [
        "latency budget: 50.000 ms",
        "RAM budget: 262,144 bytes (256 KiB)",
        "flash budget: 1,572,864 bytes (1.5 MiB)",
    ]
    assert Budgets.parse().describe() == ["latency budget: none", "RAM budget: none", "flash budget: none"]


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [({"latency": "fast"}, "latency budget"), ({"ram": "12q"}, "RAM budget"), ({"flash": "0"}, "flash budget")],
)
def test_budgets_parse_names_the_budget(kwargs: dict[str, str], what: str) -> None:
    with pytest.raises(UsageError, match=what):
        Budgets.parse(**kwargs)


@pytest.mark.parametrize("budgets", [Budgets(0.05, 262_144, 1_572_864), Budgets(), Budgets(ram_bytes=1000)])
def test_budgets_json_round_trip(budgets: Budgets) -> None:
    data = json.loads(json.dumps(budgets.to_json()))
    assert data == {"latency_s": budgets.latency_s, "ram_bytes": budgets.ram_bytes, "flash_bytes": budgets.flash_bytes}
    assert Budgets.from_json(data) == budgets


def test_budgets_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Budgets().latency_s = 1.0  # type: ignore[misc]


@given(st.integers(min_value=1, max_value=MAX_SIZE_BYTES))
def test_parse_size_bare_integers(n: int) -> None:
    assert parse_size(str(n)) == n


@given(st.integers(min_value=1, max_value=MAX_SIZE_BYTES // KiB))
def test_parse_size_kib(n: int) -> None:
    assert parse_size(f"{n}k") == n * KiB


@given(st.floats(min_value=0.001, max_value=3_600_000, allow_nan=False, allow_infinity=False))
def test_parse_duration_ms(x: float) -> None:
    assert parse_duration(f"{x}ms") == pytest.approx(x / 1000, rel=1e-12)

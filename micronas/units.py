"""Parse and format the human strings for budgets: latency, RAM and flash.

This is the one place in micronas that turns `50ms` or `256KiB` into numbers and back.

Durations need a unit: `s`, `ms`, `us` or `µs` (case-insensitive; whitespace between the
number and the unit is allowed). The valid range is more than 0 s and at most 3600 s.

Sizes follow the embedded convention, not SI: `k`, `K`, `KB` and `KiB` all mean 1024
bytes; `M`/`MB`/`MiB` mean 1024*1024 and `G`/`GB`/`GiB` mean 1024**3. A bare integer (or
one with `B`) is bytes. A size must come to a whole number of bytes (`1.5k` = 1536 is
fine, `1.3k` is not) and lie between 1 byte and 4 GiB.

Numbers are parsed with `decimal`, so `1.5MiB` is exactly 1572864 and `0.05s` is 0.05.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from decimal import Decimal, DecimalException
from typing import Any

from micronas_base.errors import ConfigError, UsageError

SIZE_UNITS_HELP = (
    "k, K, KB and KiB all mean 1024 bytes; M/MB/MiB mean 1024*1024; "
    "G/GB/GiB mean 1024**3; a bare number is bytes"
)

MAX_DURATION_S = 3600
MAX_SIZE_BYTES = 4 * 1024**3

_MICRO = Decimal("0.000001")
_DURATION_UNITS = {"s": Decimal(1), "ms": Decimal("0.001"), "us": _MICRO, "µs": _MICRO, "μs": _MICRO}
_SIZE_UNITS = {
    unit: Decimal(1024**power)
    for power, units in enumerate([("", "b"), ("k", "kb", "kib"), ("m", "mb", "mib"), ("g", "gb", "gib")])
    for unit in units
}

# A number without sign, then an optional unit made of letters only (µ and μ are letters).
_QUANTITY = re.compile(r"((?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([^\W\d_]*)")

_DURATION_HINT = "write a number and a unit, e.g. 50ms, 0.05s, 500us or 1.5ms"
_SIZE_HINT = f"e.g. 256k, 256KiB, 1.5MiB or 262144 ({SIZE_UNITS_HELP})"


def _split(text: str, what: str, expected: str, hint: str) -> tuple[Decimal, str]:
    """Split `text` into its number and its lower-cased unit, or raise UsageError."""
    stripped = text.strip()
    if not stripped:
        raise UsageError(f"{what} {text!r} is empty; expected {expected}", hint=hint)
    if stripped.startswith("-"):
        raise UsageError(f"{what} {text!r} must be positive; expected {expected}", hint=hint)
    match = _QUANTITY.fullmatch(stripped)
    if not match:
        raise UsageError(f"{what} {text!r} is not a valid quantity; expected {expected}", hint=hint)
    try:
        number = Decimal(match.group(1))
    except DecimalException:  # exponent too large even for Decimal
        number = Decimal("Infinity")
    return number, match.group(2).lower()


def parse_duration(text: str, what: str = "latency budget") -> float:
    """Parse a human duration such as `50ms`, `0.05s` or `500 us` into seconds.

    Args:
        text: The string to parse. A unit (s, ms, us, µs; any case) is required.
        what: What the value is, for error messages (e.g. "latency budget").

    Returns:
        The duration in seconds, more than 0 and at most 3600.

    Raises:
        UsageError: If the text is empty, malformed, negative, has no or an unknown unit,
            or is out of range.
    """
    units = "s, ms, us, µs"
    expected = f"a number and a unit ({units})"
    number, unit = _split(text, what, expected, _DURATION_HINT)
    if not unit:
        raise UsageError(
            f"{what} {text!r} has no unit; expected {expected}", hint="add a unit, e.g. 50ms, 0.05s or 500us"
        )
    if unit not in _DURATION_UNITS:
        raise UsageError(f"{what} {text!r} has an unknown unit {unit!r}; expected one of {units}", hint=_DURATION_HINT)
    try:
        seconds = float(number * _DURATION_UNITS[unit])
    except DecimalException:
        seconds = float("inf")
    if not 0 < seconds <= MAX_DURATION_S:
        raise UsageError(
            f"{what} {text!r} is out of range; expected more than 0 s and at most {MAX_DURATION_S} s",
            hint=_DURATION_HINT,
        )
    return seconds


def parse_size(text: str, what: str = "RAM budget") -> int:
    """Parse a human size such as `256k`, `1.5MiB` or `262144` into bytes.

    Args:
        text: The string to parse. Units: B, k/K/KB/KiB, M/MB/MiB, G/GB/GiB (1024-based,
            any case); no unit means bytes.
        what: What the value is, for error messages (e.g. "RAM budget").

    Returns:
        The size in bytes, at least 1 and at most 4 GiB.

    Raises:
        UsageError: If the text is empty, malformed, negative, has an unknown unit, is not
            a whole number of bytes, or is out of range.
    """
    expected = "a size such as 256k, 1.5MiB or 262144 (bytes)"
    number, unit = _split(text, what, expected, _SIZE_HINT)
    if unit not in _SIZE_UNITS:
        raise UsageError(
            f"{what} {text!r} has an unknown unit {unit!r}; expected B, k, KB, KiB, M, MB, MiB, G, GB or GiB",
            hint=_SIZE_HINT,
        )
    try:
        nbytes = number * _SIZE_UNITS[unit]
        in_range = 0 < nbytes <= MAX_SIZE_BYTES
    except DecimalException:
        in_range = False
    if not in_range:
        raise UsageError(
            f"{what} {text!r} is out of range; expected at least 1 byte and at most "
            f"{format_size(MAX_SIZE_BYTES)}",
            hint=_SIZE_HINT,
        )
    if nbytes != nbytes.to_integral_value():
        raise UsageError(f"{what} {text!r} is {nbytes} bytes, not a whole number of bytes", hint=_SIZE_HINT)
    return int(nbytes)


def format_duration(seconds: float) -> str:
    """Format a duration in milliseconds with three decimals.

    Args:
        seconds: The duration in seconds.

    Returns:
        For example "50.000 ms".
    """
    return f"{seconds * 1000:.3f} ms"


def format_size(nbytes: int) -> str:
    """Format a size in bytes with thousands separators and a 1024-based figure.

    Args:
        nbytes: The size in bytes.

    Returns:
        For example "262,144 bytes (256 KiB)", "1,000 bytes (0.98 KiB)" or
        "1,572,864 bytes (1.5 MiB)": KiB below 1 MiB, MiB below 1 GiB, else GiB, with up
        to two decimals.
    """
    power = 3 if nbytes >= 1024**3 else 2 if nbytes >= 1024**2 else 1
    unit = {1: "KiB", 2: "MiB", 3: "GiB"}[power]
    figure = f"{nbytes / 1024**power:.2f}".rstrip("0").rstrip(".")
    if figure == "0" and nbytes > 0:
        figure = "< 0.01"
    return f"{nbytes:,} {'byte' if nbytes == 1 else 'bytes'} ({figure} {unit})"


@dataclass(frozen=True)
class Budgets:
    """The latency, RAM and flash budgets of a run; None means no budget.

    Attributes:
        latency_s: Latency budget in seconds.
        ram_bytes: RAM budget in bytes.
        flash_bytes: Flash budget in bytes.
    """

    latency_s: float | None = None
    ram_bytes: int | None = None
    flash_bytes: int | None = None

    @classmethod
    def parse(cls, latency: str | None = None, ram: str | None = None, flash: str | None = None) -> Budgets:
        """Build budgets from the human strings given on the command line.

        Args:
            latency: A duration such as "50ms", or None.
            ram: A size such as "256KiB", or None.
            flash: A size such as "1MiB", or None.

        Returns:
            The parsed budgets.

        Raises:
            UsageError: If any given string cannot be parsed.
        """
        return cls(
            latency_s=None if latency is None else parse_duration(latency, "latency budget"),
            ram_bytes=None if ram is None else parse_size(ram, "RAM budget"),
            flash_bytes=None if flash is None else parse_size(flash, "flash budget"),
        )

    def describe(self) -> list[str]:
        """Return one echo line per budget.

        Returns:
            Lines such as "latency budget: 50.000 ms", "RAM budget: 262,144 bytes (256 KiB)"
            or "flash budget: none".
        """

        def show(value: float | None, fmt: Callable[[Any], str]) -> str:
            return "none" if value is None else fmt(value)

        return [
            f"latency budget: {show(self.latency_s, format_duration)}",
            f"RAM budget: {show(self.ram_bytes, format_size)}",
            f"flash budget: {show(self.flash_bytes, format_size)}",
        ]

    def to_json(self) -> dict[str, Any]:
        """Return the budgets as a JSON-serialisable dict (unset budgets are null).

        Returns:
            A dict with keys latency_s, ram_bytes and flash_bytes.
        """
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Budgets:
        """Rebuild budgets from `to_json` output; missing keys mean no budget.

        Args:
            d: A dict with any of the keys latency_s, ram_bytes and flash_bytes.

        Returns:
            The budgets.

        Raises:
            ConfigError: If a key is unknown or a value has the wrong type or is not positive.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown budget keys {unknown}; expected {sorted(names)}")
        for name in names:
            value = d.get(name)
            wanted = (int, float) if name == "latency_s" else int
            if value is not None and (isinstance(value, bool) or not isinstance(value, wanted) or value <= 0):
                raise ConfigError(f"budget {name}={value!r} is invalid; expected a positive number or null")
        latency = d.get("latency_s")
        return cls(
            latency_s=None if latency is None else float(latency),
            ram_bytes=d.get("ram_bytes"),
            flash_bytes=d.get("flash_bytes"),
        )

"""Budgets against figures, in one place.

* the board a command is for (`resolve_board`: a name, a Board, or the default board),
  resolved once and passed down as an object;
* budgets completed from the board (`for_board`), checked against what it has
  (`check_board_has`), and given ones falling back to recorded ones (`fall_back`);
* one comparison of a figure against a budget (`Check`), with one message format:

      {what} {figure} ({note}) exceeds the {kind} budget {budget} ({detail})

  and, for a budget below what any network can reach (the search's feasibility check),
  `the {kind} budget {budget} is below {what}: {figure} ({note})`.

Latency figures and budgets here are milliseconds, sizes bytes; `ms` and `kib` are the only
unit conversions outside `micronas.units` (which parses and formats the human strings).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from micronas_base.errors import BudgetError, ConfigError
from micronas.units import Budgets, format_size

LATENCY, RAM, FLASH = "latency", "RAM", "flash"
KINDS = (LATENCY, RAM, FLASH)


def ms(seconds: float) -> float:
    """Milliseconds of a duration in seconds."""
    return seconds * 1e3


def kib(nbytes: float) -> float:
    """KiB (1024 bytes) of a size in bytes."""
    return nbytes / 1024


def resolve_board(target: Any = None) -> Any:
    """The board a command is for.

    Args:
        target: A board name, a `targets.boards.Board` (returned as is), or None for the
            default board.

    Returns:
        The Board.

    Raises:
        ConfigError: an unknown name (the message lists the boards and the closest match).
    """
    from targets import boards

    if target is None:
        return boards.default_board()
    if isinstance(target, str):
        return boards.get(target)
    return target


def for_board(budgets: Budgets, board: Any) -> Budgets:
    """`budgets` with RAM and flash not given set to what the board has."""
    return fall_back(budgets, Budgets(None, board.sram_bytes, board.flash_bytes))


def defaulted_lines(given: Budgets, board: Any) -> list[str]:
    """One line per RAM or flash budget `for_board` took from the board (echoed by the CLI)."""
    return [f"  ({what} budget not given: {board.name}'s {what})"
            for what, value in ((RAM, given.ram_bytes), (FLASH, given.flash_bytes)) if value is None]


def check_board_has(budgets: Budgets, board: Any) -> None:
    """A RAM or flash budget above what the board has is a ConfigError naming both figures."""
    for what, value, have in ((RAM, budgets.ram_bytes, board.sram_bytes),
                              (FLASH, budgets.flash_bytes, board.flash_bytes)):
        if value is not None and value > have:
            raise ConfigError(f"the {what} budget {format_size(value)} is more than {board.name} has "
                              f"({format_size(have)})", f"lower --{what.lower()} or choose another --target")


def fall_back(given: Budgets | None, recorded: Budgets) -> Budgets:
    """Each budget given, else the recorded one."""
    given = given or Budgets()
    return Budgets(given.latency_s if given.latency_s is not None else recorded.latency_s,
                   given.ram_bytes if given.ram_bytes is not None else recorded.ram_bytes,
                   given.flash_bytes if given.flash_bytes is not None else recorded.flash_bytes)


def budget_of(budgets: Budgets, kind: str) -> float | None:
    """The budget of `kind` in the unit checks use: milliseconds for latency, bytes otherwise."""
    if kind == LATENCY:
        return None if budgets.latency_s is None else ms(budgets.latency_s)
    return budgets.ram_bytes if kind == RAM else budgets.flash_bytes


@dataclass(frozen=True)
class Check:
    """One figure against one budget.

    Attributes:
        kind: "latency", "RAM" or "flash".
        what: What the figure is, e.g. "the micronas runtime arena".
        figure: Milliseconds for latency, bytes otherwise.
        budget: In the same unit; None: no budget, never over.
        note: Said after the figure, e.g. the count unit.
        detail: Said after the budget, e.g. what TFLite Micro would need.
    """

    kind: str
    what: str
    figure: float
    budget: float | None
    note: str = ""
    detail: str = ""

    @property
    def over(self) -> bool:
        """The figure exceeds the budget (a figure equal to its budget fits)."""
        return self.budget is not None and self.figure > self.budget

    @property
    def ratio(self) -> float:
        """figure / budget (1.0 without a budget)."""
        return 1.0 if self.budget is None else self.figure / self.budget

    def _show(self, v: float) -> str:
        return f"{v:.3f} ms" if self.kind == LATENCY else format_size(int(v))

    def _show_budget(self) -> str:  # as the user wrote it: `49.5 ms`, not `49.500 ms`
        return f"{self.budget:g} ms" if self.kind == LATENCY else format_size(int(self.budget))

    def message(self) -> str:
        """`{what} {figure} ({note}) exceeds the {kind} budget {budget} ({detail})`."""
        note = f" ({self.note})" if self.note else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.what} {self._show(self.figure)}{note} exceeds the {self.kind} budget " \
               f"{self._show(self.budget)}{detail}"

    def short(self) -> str:
        """The derivation log's compact form: `latency 51.234 ms > 49.5 ms`."""
        return f"{self.what} {self._show(self.figure)} > {self._show_budget()}"

    def below_message(self) -> str:
        """For a minimum over budget: `the {kind} budget {budget} is below {what}: {figure} ({note})`."""
        note = f" ({self.note})" if self.note else ""
        return f"the {self.kind} budget {self._show_budget()} is below {self.what}: {self._show(self.figure)}{note}"

    def relax_hint(self) -> str:
        """The option value that would admit the figure: `relax --latency to at least 12.346ms`."""
        if self.kind == LATENCY:
            return f"relax --latency to at least {math.ceil(self.figure * 1000) / 1000:g}ms"
        return f"relax --{self.kind.lower()} to at least {int(self.figure)}"


def check(budgets: Budgets, kind: str, what: str, figure: float, note: str = "", detail: str = "") -> Check:
    """`figure` (ms for latency, bytes otherwise) against the budget of `kind` in `budgets`."""
    return Check(kind, what, figure, budget_of(budgets, kind), note, detail)


def over_messages(checks: Iterable[Check]) -> list[str]:
    """The messages of the checks over their budgets, in order."""
    return [c.message() for c in checks if c.over]


def raise_if_over(checks: Iterable[Check], hint: str) -> None:
    """A BudgetError (exit 1) naming every check over its budget.

    Raises:
        BudgetError: at least one check is over.
    """
    over = over_messages(checks)
    if over:
        raise BudgetError("; ".join(over), hint)


def raise_if_infeasible(minimums: Iterable[Check]) -> None:
    """A BudgetError naming every budget below the minimum any network reaches, and the relaxed value.

    Raises:
        BudgetError: at least one minimum is over its budget.
    """
    over = [c for c in minimums if c.over]
    if over:
        raise BudgetError("; ".join(c.below_message() for c in over), "; ".join(c.relax_hint() for c in over))

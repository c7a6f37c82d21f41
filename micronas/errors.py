"""The micronas error hierarchy and exit codes, re-exported for users and notebooks.

The definitions live in `micronas_base.errors`, below every layer, so that `search_space`,
`targets`, `firmware_export` and `latency_tables` can raise them without importing `micronas`.
"""

from micronas_base.errors import (  # noqa: F401
    EXIT_BUDGET,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    BudgetError,
    ConfigError,
    DataError,
    ExportError,
    MicronasError,
    ToolchainError,
    UsageError,
    unknown_name_error,
)

__all__ = ["EXIT_BUDGET", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "BudgetError", "ConfigError", "DataError",
           "ExportError", "MicronasError", "ToolchainError", "UsageError", "unknown_name_error"]

"""The shared basics every micronas layer stands on: errors, atomic file writes, the version.

This package sits below `search_space`, `targets`, `firmware_export`, `latency_tables` and
`micronas`, imports only the standard library, and is imported by all of them. Its name is
project-prefixed on purpose: a generic top-level name such as `common` or `utils` collides with
other distributions installed into the same environment.

One hierarchy of errors (rather than one per layer, mapped by the orchestration) because every
layer's failures reach the user through the same CLI with the same exit-code contract, and a
`ConfigError` raised by a board file means the same thing as one raised by a latency table.
"""

from .version import __version__

__all__ = ["__version__"]

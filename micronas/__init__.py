"""micronas: find, train, quantise and ship an int8 time-series classifier that fits an MCU.

The package `micronas` orchestrates; it is the only package that imports all the others
(`search_space`, `latency_tables`, `firmware_export`, `targets`). Heavy dependencies (torch,
tensorflow, onnx2tf) are imported inside the functions that need them, so importing
`micronas` and `micronas --help` stay instant.
"""

from micronas_base import __version__  # noqa: F401  (from the package metadata)

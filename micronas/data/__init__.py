"""Datasets for micronas: loaders (.npz, UEA .ts, long .csv, builtin BasicMotions) and splits.

Public API:
    load_dataset(spec) -> Dataset       "basicmotions" or a path ending in .npz / .ts / .csv
    make_split(ds, seed, ...) -> Split  deterministic train/val/test indices
    Standardizer.fit(X_train)           per-channel mean/std, JSON-serialisable
    arrays_for(ds, split)               {"train": (X, y), "val": (X, y), "test": (X, y)}

Every unusable file raises `micronas.errors.DataError` (exit code 2) naming the file.
"""

from micronas.data.loaders import (
    BUILTIN_SOURCE,
    CSV_LAYOUT_HELP,
    DEFAULT_DATASET,
    LOADERS,
    SUPPORTED_SUFFIXES,
    Dataset,
    load_builtin,
    load_csv,
    load_dataset,
    load_npz,
    load_ts,
)
from micronas.data.split import Split, Standardizer, arrays_for, make_split

__all__ = [
    "BUILTIN_SOURCE",
    "CSV_LAYOUT_HELP",
    "DEFAULT_DATASET",
    "LOADERS",
    "SUPPORTED_SUFFIXES",
    "Dataset",
    "Split",
    "Standardizer",
    "arrays_for",
    "load_builtin",
    "load_csv",
    "load_dataset",
    "load_npz",
    "load_ts",
    "make_split",
]

"""Deterministic train/val/test splits and per-channel standardisation.

`make_split` returns index arrays into the dataset's pool (`Dataset.X`); the test indices
point into `Dataset.X_test` instead when the file shipped its own test set. With subject ids
the split is by subject (no subject in two parts), otherwise stratified by class. Both are
reproducible from the seed alone and serialise to JSON for the run directory.

`Standardizer` holds per-channel mean and std fitted on the training part only, so that
validation/test statistics never leak into training and the same constants can be baked into
firmware.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from micronas.data.loaders import Dataset
from micronas_base.errors import ConfigError, DataError, UsageError

logger = logging.getLogger(__name__)

_PARTS = ("train", "val", "test")


def _round_half_up(x: float) -> int:
    """Round to the nearest integer, halves upwards (unlike Python's banker's rounding)."""
    return int(math.floor(x + 0.5))


def _index_array(values: Any, name: str) -> np.ndarray:
    """Coerce a JSON list to a sorted, unique, non-negative int64 array or raise ConfigError."""
    try:
        arr = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"split {name!r} is not a list of integers",
                          "re-create the split with make_split") from exc
    if arr.ndim != 1 or (arr.size and (arr.min() < 0 or np.any(np.diff(arr) <= 0))):
        raise ConfigError(f"split {name!r} must be a sorted list of distinct non-negative "
                          "indices", "re-create the split with make_split")
    return arr


@dataclass(frozen=True, eq=False)
class Split:
    """Index sets of a train/val/test split.

    Attributes:
        train: int64 indices into the pool (`Dataset.X`), sorted.
        val: int64 indices into the pool, sorted.
        test: int64 indices into the pool, or into `Dataset.X_test` when `test_from_file`.
        test_from_file: Whether `test` indexes the file's own test set.
        by_subject: Whether whole subjects were assigned to val/test.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_from_file: bool
    by_subject: bool

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return (self.test_from_file == other.test_from_file
                and self.by_subject == other.by_subject
                and all(np.array_equal(getattr(self, p), getattr(other, p)) for p in _PARTS))

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> dict[str, Any]:
        """Serialise to a JSON-compatible dict.

        Returns:
            {"train": [...], "val": [...], "test": [...], "test_from_file": bool,
            "by_subject": bool}.
        """
        out: dict[str, Any] = {p: [int(i) for i in getattr(self, p)] for p in _PARTS}
        out["test_from_file"] = bool(self.test_from_file)
        out["by_subject"] = bool(self.by_subject)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Split:
        """Rebuild a split from `to_json` output.

        Args:
            d: The dict.

        Returns:
            The split.

        Raises:
            ConfigError: A key is missing or a value is malformed.
        """
        if not isinstance(d, dict):
            raise ConfigError("a split must be a JSON object", "re-create it with make_split")
        missing = [k for k in (*_PARTS, "test_from_file", "by_subject") if k not in d]
        if missing:
            raise ConfigError(f"split is missing key(s) {', '.join(missing)}",
                              "re-create it with make_split")
        return cls(train=_index_array(d["train"], "train"), val=_index_array(d["val"], "val"),
                   test=_index_array(d["test"], "test"),
                   test_from_file=bool(d["test_from_file"]), by_subject=bool(d["by_subject"]))


def _check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise UsageError(f"{name} must be between 0 and 1 (exclusive), got {value!r}",
                         f"e.g. {name}=0.2")


def _subject_split(
    ds: Dataset, rng: np.random.Generator, fractions: dict[str, float], pool: np.ndarray | None = None
) -> dict[str, np.ndarray] | None:
    """Assign whole subjects of `pool` (default: all windows) to the parts in `fractions`; None
    when there are too few. Returned indices are into the whole pool."""
    assert ds.subjects is not None
    pool = np.arange(len(ds.subjects)) if pool is None else pool
    subjects = np.asarray(ds.subjects).astype(str)[pool]
    unique, counts = np.unique(subjects, return_counts=True)
    needed = len(fractions) + 1  # plus train
    if unique.size < needed:
        logger.warning(
            "%s: only %d subject(s), need at least %d for a subject split; falling back to a "
            "stratified split (windows of one subject may land in several parts)",
            ds.source, unique.size, needed)
        return None
    order = rng.permutation(unique.size)
    remaining = [int(i) for i in order]
    n = subjects.size
    chosen: dict[str, list[int]] = {}
    parts_left = len(fractions)
    for part, frac in fractions.items():
        target = frac * n
        picked: list[int] = []
        total = 0
        parts_left -= 1
        # keep one subject for train and one for each later part
        max_take = len(remaining) - 1 - parts_left
        for s in list(remaining):
            if len(picked) >= max_take or total >= target:
                break
            c = int(counts[s])
            if not picked or abs(total + c - target) < abs(total - target):
                picked.append(s)
                total += c
                remaining.remove(s)
        chosen[part] = picked
    out: dict[str, np.ndarray] = {}
    for part, picked in chosen.items():
        out[part] = pool[np.isin(subjects, unique[picked])].astype(np.int64)
    out["train"] = pool[np.isin(subjects, unique[remaining])].astype(np.int64)
    return out


def _named_val_split(ds: Dataset, rng: np.random.Generator, val_subjects: tuple[str, ...],
                     test_fraction: float | None) -> dict[str, np.ndarray]:
    """Validation = the windows of `val_subjects`; test (when carved) by subject from the rest."""
    if ds.subjects is None:
        raise UsageError(f"validation subjects {', '.join(val_subjects)} were given but {ds.source} has no subject "
                         "ids", "add a 'subjects' array (.npz) or 'subject' column (.csv), or drop --val-subjects")
    subjects = np.asarray(ds.subjects).astype(str)
    known = sorted(set(subjects.tolist()))
    unknown = [v for v in val_subjects if v not in known]
    if unknown:
        raise DataError(f"{ds.source}: no window of subject(s) {', '.join(map(repr, unknown))} in the training pool",
                        f"choose among the pool's subjects: {', '.join(known[:20])}"
                        + (" ..." if len(known) > 20 else ""))
    is_val = np.isin(subjects, list(val_subjects))
    if is_val.all():
        raise DataError(f"{ds.source}: the validation subjects {', '.join(val_subjects)} are every subject of the pool",
                        "leave at least one subject for training")
    out = {"val": np.flatnonzero(is_val).astype(np.int64)}
    rest = np.flatnonzero(~is_val)
    if test_fraction is None:
        out["train"] = rest.astype(np.int64)
        return out
    carved = _subject_split(ds, rng, {"test": test_fraction / (1.0 - is_val.mean())}, pool=rest)
    if carved is None:
        raise DataError(f"{ds.source}: too few subjects besides {', '.join(val_subjects)} to carve a test set",
                        "give the file its own test set (X_test/y_test, or a 'split' column), or more subjects")
    return {**out, **carved}


def _stratified_split(
    ds: Dataset, rng: np.random.Generator, fractions: dict[str, float]
) -> dict[str, np.ndarray]:
    """Per class: round-half-up(fraction * n_class), at least 1, to each held-out part.

    At least one window per class stays in train; when a class is too small for every part,
    the test share shrinks before the val share.
    """
    parts: dict[str, list[np.ndarray]] = {p: [] for p in ("train", *fractions)}
    for k in range(ds.n_classes):
        idx = np.flatnonzero(ds.y == k)
        n_k = idx.size
        if n_k == 0:
            continue
        idx = idx[rng.permutation(n_k)]
        take = {p: max(1, _round_half_up(f * n_k)) for p, f in fractions.items()}
        while sum(take.values()) > n_k - 1:
            # shrink the larger share; on a tie shrink test first (val drives the search)
            p = max(take, key=lambda q: (take[q], q == "test"))
            take[p] -= 1
        start = 0
        for p in fractions:
            parts[p].append(idx[start:start + take[p]])
            start += take[p]
        parts["train"].append(idx[start:])
    return {p: np.sort(np.concatenate(v)).astype(np.int64) if v else np.zeros(0, np.int64)
            for p, v in parts.items()}


def make_split(
    ds: Dataset, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2,
    val_subjects: tuple[str, ...] | list[str] | None = None,
) -> Split:
    """Split a dataset into train/val/test index sets, deterministically for a given seed.

    If the dataset has its own test set, test is all of it (`test_from_file`) and only val is
    carved from the pool. With subject ids, whole subjects go to val (and test), chosen with
    the seeded RNG so that about the requested fraction of windows lands in each part, with
    at least one subject per part; with too few subjects (fewer than 2, or 3 when test is
    also carved) it falls back to the stratified split and logs a warning. Without subjects,
    each class gives round(fraction * n_class) windows, at least 1, to val (and test), while
    keeping at least one in train.

    Args:
        ds: The dataset.
        seed: Seed for `np.random.default_rng`.
        val_fraction: Fraction of the pool for validation, in (0, 1).
        test_fraction: Fraction of the pool for test, in (0, 1); ignored when the dataset has
            its own test set.
        val_subjects: Subject ids whose windows form the validation part (then `val_fraction`
            is unused), e.g. a fixed protocol's validation subject.

    Returns:
        The split, indices sorted within each part.

    Raises:
        UsageError: A fraction is outside (0, 1) or val + test >= 1, or `val_subjects` is
            given for data without subject ids.
        DataError: Some class ends up with no training window, or a validation subject is
            not in the pool.
    """
    _check_fraction("val_fraction", val_fraction)
    test_from_file = ds.X_test is not None
    fractions: dict[str, float] = {"val": float(val_fraction)}
    if not test_from_file:
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise UsageError(
                f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves no "
                "training data", "keep their sum below 1, e.g. 0.2 and 0.2")
        fractions = {"test": float(test_fraction), "val": float(val_fraction)}
    rng = np.random.default_rng(seed)

    if val_subjects:
        parts = _named_val_split(ds, rng, tuple(str(v) for v in val_subjects),
                                 None if test_from_file else float(test_fraction))
    else:
        parts = _subject_split(ds, rng, fractions) if ds.subjects is not None else None
    by_subject = parts is not None
    if parts is None:
        parts = _stratified_split(ds, rng, fractions)

    present = np.bincount(ds.y[parts["train"]], minlength=ds.n_classes)
    empty = [ds.class_names[k] for k in range(ds.n_classes) if present[k] == 0]
    if empty:
        raise DataError(
            f"{ds.source}: class(es) {', '.join(map(repr, empty))} have no training window "
            f"after the {'subject' if by_subject else 'stratified'} split (seed {seed})",
            "add windows of those classes (from more subjects), try another seed, or lower "
            "val_fraction/test_fraction")
    if ds.X_test is not None:
        test = np.arange(ds.X_test.shape[0], dtype=np.int64)
    else:
        test = parts["test"]
    return Split(train=np.sort(parts["train"]), val=np.sort(parts["val"]), test=np.sort(test),
                 test_from_file=test_from_file, by_subject=by_subject)


def arrays_for(ds: Dataset, split: Split) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Gather the raw (not standardised) arrays of each part of a split.

    Args:
        ds: The dataset the split was made for.
        split: The split.

    Returns:
        {"train": (X, y), "val": (X, y), "test": (X, y)}; X is (n, C, T) float32, y int64.

    Raises:
        ConfigError: The split does not fit the dataset (indices out of range, or a test set
            from the file that the dataset does not have).
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for part in _PARTS:
        idx = getattr(split, part)
        if part == "test" and split.test_from_file:
            if ds.X_test is None or ds.y_test is None:
                raise ConfigError(f"the split uses the file's test set but {ds.source} has none",
                                  "re-create the split with make_split for this dataset")
            X, y = ds.X_test, ds.y_test
        else:
            X, y = ds.X, ds.y
        if idx.size and (idx.min() < 0 or idx.max() >= X.shape[0]):
            raise ConfigError(
                f"split part {part!r} has index {int(idx.max())} but {ds.source} has "
                f"{X.shape[0]} windows there",
                "the split was made for another dataset; re-create it with make_split")
        out[part] = (X[idx], y[idx])
    return out


# Percent of standardised training values clipped at each end (see Standardizer).
CLIP_PERCENT = 0.01


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-channel standardisation, fitted on training windows, then a clip to the range that
    holds all but the rarest training values.

    Why the clip: the model's int8 input has one scale for every channel, and the converter
    takes it from the smallest and largest standardised training value. One spike sets it: on
    the watch data one gyro sample at -28.6 standard deviations (the next 0.01 % of values lie
    within -6.9..6.0) made the input step 0.16 standard deviations, about 5 % error on every
    window before the first layer. Clipping at the 0.01st and 99.99th percentiles of the
    training values makes that step 3.2 times finer; the clipped values are what the board sees
    anyway, since quantising the input saturates at the int8 range (the generated
    `micronas_model_quantize_input`). Training, validation, calibration and evaluation all see
    the clipped values.

    Optionally (`remove_window_mean`) each window's own per-channel mean over time is removed
    first: an accelerometer's mean is mostly gravity, i.e. how the sensor sits on this person's
    wrist, and removing it makes networks generalise better to other people on the watch data
    (benchmarks/window_mean.py, figures in benchmarks/README.md). Whether a dataset gains is decided on its
    validation data (`micronas.stages.search.choose_window_mean`); the board does the same
    (the generated `micronas_model_quantize_window`).

    Attributes:
        mean: (C,) float32 channel means over windows and time (after the window mean's removal
            with `remove_window_mean`: then about zero).
        std: (C,) float32 channel standard deviations. A constant channel (std zero, or
            below 1e-10 of its magnitude, i.e. only float rounding) gets std 1.0, so it maps
            to zeros instead of dividing by zero and producing NaN/inf.
        clip: (low, high) in standardised units, or None (runs made before the clip: none).
        remove_window_mean: Whether each window's per-channel mean is removed before
            standardising (False for runs made before the option).
    """

    mean: np.ndarray
    std: np.ndarray
    clip: tuple[float, float] | None = None
    remove_window_mean: bool = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Standardizer):
            return NotImplemented
        return (np.array_equal(self.mean, other.mean) and np.array_equal(self.std, other.std)
                and self.clip == other.clip and self.remove_window_mean == other.remove_window_mean)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def fit(cls, X_train: np.ndarray, clip_percent: float | None = CLIP_PERCENT,
            remove_window_mean: bool = False) -> Standardizer:
        """Fit channel statistics over N and T, computed in float64, and the clip range.

        Args:
            X_train: Training windows (N, C, T), N >= 1.
            clip_percent: The share (percent) of standardised training values clipped at each
                end, over all channels together; None: no clip.
            remove_window_mean: Remove each window's per-channel mean first (see the class).

        Returns:
            The fitted standardizer.

        Raises:
            DataError: X_train is not (N, C, T) with N >= 1, or holds NaN/inf.
        """
        X = np.asarray(X_train)
        if X.ndim != 3 or X.shape[0] < 1 or X.shape[2] < 1:
            raise DataError(f"cannot fit a standardizer on an array of shape {X.shape}",
                            "pass the training windows, shape (N, C, T) with N, T >= 1")
        X64 = X.astype(np.float64)
        if not np.all(np.isfinite(X64)):
            raise DataError("cannot fit a standardizer on data with NaN/inf values",
                            "load the data with micronas.data.load_dataset, which rejects them")
        if remove_window_mean:
            X64 = X64 - X64.mean(axis=2, keepdims=True)
        mean = X64.mean(axis=(0, 2))
        std = X64.std(axis=(0, 2))
        constant = (std == 0) | (std <= 1e-10 * np.abs(mean))
        std = np.where(constant, 1.0, std)
        mean32, std32 = mean.astype(np.float32), std.astype(np.float32)
        clip = None
        if clip_percent is not None:
            z = cls(mean=mean32, std=std32, remove_window_mean=remove_window_mean).apply(X)  # standardised, not yet clipped
            low, high = (float(np.float32(v)) for v in np.percentile(z, [clip_percent, 100.0 - clip_percent]))
            clip = (low, high) if low < high else None  # every value the same: nothing to clip
        return cls(mean=mean32, std=std32, clip=clip, remove_window_mean=remove_window_mean)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Standardise windows: (X - mean[:, None]) / std[:, None], then clip; with
        `remove_window_mean`, each window's per-channel mean over time is removed first.

        Args:
            X: Windows (N, C, T) with the fitted C.

        Returns:
            float32 array of shape (N, C, T).

        Raises:
            DataError: X is not (N, C, T) with the fitted number of channels.
        """
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[1] != self.mean.shape[0]:
            raise DataError(
                f"cannot standardise an array of shape {X.shape}: expected (N, "
                f"{self.mean.shape[0]}, T)", "pass windows with the channels it was fitted on")
        X = X.astype(np.float32, copy=False)
        if self.remove_window_mean:  # the mean in float64, rounded once: what the generated C computes in double
            X = X - X.mean(axis=2, keepdims=True, dtype=np.float64).astype(np.float32)
        out = (X - self.mean[:, None]) / self.std[:, None]
        if self.clip is not None:
            np.clip(out, np.float32(self.clip[0]), np.float32(self.clip[1]), out=out)
        return out.astype(np.float32, copy=False)

    def to_json(self) -> dict[str, Any]:
        """Serialise to a JSON-compatible dict (exact: float32 values round-trip through JSON).

        Returns:
            {"mean": [...], "std": [...]}, "clip": [low, high] when there is one, and
            "remove_window_mean": true when each window's mean is removed.
        """
        d: dict[str, Any] = {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}
        if self.clip is not None:
            d["clip"] = [self.clip[0], self.clip[1]]
        if self.remove_window_mean:
            d["remove_window_mean"] = True
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Standardizer:
        """Rebuild from `to_json` output.

        Args:
            d: The dict.

        Returns:
            The standardizer.

        Raises:
            ConfigError: Keys missing, lengths differ, values non-finite / std <= 0, or a clip
                that is not two finite numbers, low < high.
        """
        try:
            mean = np.asarray(d["mean"], dtype=np.float32)
            std = np.asarray(d["std"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid standardizer JSON ({exc!r}); expected "
                              "{'mean': [...], 'std': [...]}",
                              "re-create it with Standardizer.fit") from exc
        if (mean.ndim != 1 or mean.shape != std.shape or mean.size == 0
                or not np.all(np.isfinite(mean)) or not np.all(np.isfinite(std))
                or np.any(std <= 0)):
            raise ConfigError("invalid standardizer JSON: 'mean' and 'std' must be equal-length "
                              "non-empty lists of finite numbers, std > 0",
                              "re-create it with Standardizer.fit")
        clip = d.get("clip")
        if clip is not None:
            try:
                low, high = (float(v) for v in clip)
            except (TypeError, ValueError):
                low, high = float("nan"), float("nan")
            if not (np.isfinite(low) and np.isfinite(high) and low < high):
                raise ConfigError(f"invalid standardizer JSON: 'clip' is {clip!r}; expected [low, high], two finite "
                                  "numbers with low < high", "re-create it with Standardizer.fit")
            clip = (low, high)
        remove = d.get("remove_window_mean", False)
        if not isinstance(remove, bool):
            raise ConfigError(f"invalid standardizer JSON: 'remove_window_mean' is {remove!r}; expected true or false",
                              "re-create it with Standardizer.fit")
        return cls(mean=mean, std=std, clip=clip, remove_window_mean=remove)

"""Load a time-series classification dataset from `.npz`, UEA `.ts` or long-format `.csv`.

Every loader returns a `Dataset`: a training pool `X` of shape (N, C, T) float32 with int64
class indices `y`, plus an optional test set and optional subject ids. Every problem with a
file raises `DataError` (exit code 2) whose message names the file and the problem and whose
hint says what the expected layout is.

Supported inputs (`load_dataset(spec)` dispatches on the suffix):

* ``"basicmotions"`` -- the embedded UEA BasicMotions dataset (6 channels, length 100,
  4 classes, 40 train + 40 test series), see ``micronas/data/basicmotions/DATA.md``.
* ``.npz`` -- arrays ``X`` (N, C, T) and ``y`` (N,); optional ``X_test``/``y_test`` (both or
  neither), ``subjects`` (N,) and ``subjects_test`` (M,). ``X`` may be any real numeric dtype
  (converted to float32). A 2-D ``X`` of shape (N, T) is accepted as a single channel (C=1).
  ``y`` holds integer or string labels (float labels only when every value is integral).
  Subject ids may be integers or strings and are stored as strings.
* ``.ts`` -- the UEA/UCR text format. A single file is a training pool without a test set,
  except that a path ending in ``_TRAIN.ts`` whose sibling ``_TEST.ts`` exists loads that
  sibling as the test set (this is how the UEA archive ships its datasets).
* ``.csv`` -- long format, one row per time step; see `CSV_LAYOUT_HELP`:

  A header row, then one row per time step, as sensor loggers write it. Required columns
  ``window`` (the window id, any string) and ``label``; optional ``subject`` and ``split``
  (``train`` or ``test``; without the column every window is training data). Every other
  column is a numeric sensor channel, in header order. The rows of one window are contiguous
  and in time order, every window has the same number of rows, and a window's label,
  subject and split are the same on all its rows. Labels that are all integers are treated
  as integer labels, otherwise as strings.

Class names: for string labels, the sorted unique strings (for ``.ts``, the order declared in
``@classLabel true ...``); for integer labels, ``str(i)`` for the sorted unique integer values,
mapped to 0..K-1 in that order. Test labels must be a subset of the training classes.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from micronas_base.errors import DataError

logger = logging.getLogger(__name__)
_TEST_SIBLINGS_SAID: set[tuple[Path, Path]] = set()  # (.ts, its _TEST.ts) already announced

DEFAULT_DATASET = "basicmotions"
"""The spec of the embedded default dataset."""

BUILTIN_SOURCE = "builtin:basicmotions"
"""`Dataset.source` of the embedded default dataset."""

CSV_LAYOUT_HELP = (
    "expected a CSV with a header row and one row per time step (long format): required "
    "columns 'window' (window id) and 'label'; optional 'subject' and 'split' ('train' or "
    "'test'; absent means all train); every other column is a numeric sensor channel, in "
    "header order. The rows of one window are contiguous and in time order, every window has "
    "the same number of rows, and label/subject/split are constant within a window. Example:\n"
    "    window,label,subject,split,acc_x,acc_y\n"
    "    w0,walk,s1,train,0.12,-0.40\n"
    "    w0,walk,s1,train,0.15,-0.38"
)

NPZ_LAYOUT_HELP = (
    "expected a numpy .npz (np.savez) with arrays 'X' (N, C, T) or (N, T) of a real numeric "
    "dtype and 'y' (N,) of integer or string labels; optional 'X_test' and 'y_test' (both or "
    "neither), 'subjects' (N,) and 'subjects_test' (M,) of integer or string ids"
)

TS_LAYOUT_HELP = (
    "expected a UEA/UCR .ts text file: '#' comments, '@' header lines ('@problemName', "
    "'@dimensions', '@seriesLength', '@classLabel true <labels...>'), then '@data' and one "
    "series per line with channels separated by ':', values by ',' and the class label last"
)

_CSV_REQUIRED = ("window", "label")
_CSV_OPTIONAL = ("subject", "split")
_CSV_SPLITS = ("train", "test")
_INT_RE = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset: a training pool, an optional test set, optional subjects.

    Attributes:
        X: Training pool, shape (N, C, T), float32.
        y: Class indices into `class_names`, shape (N,), int64.
        class_names: Name of each class index.
        X_test: Test set (M, C, T) float32 when the file provides one, else None.
        y_test: Test class indices (M,) int64, else None.
        subjects: Subject id of each pool window (N,) str, else None.
        subjects_test: Subject id of each test window (M,) str, else None.
        source: The file path, or "builtin:basicmotions".
    """

    X: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    subjects: np.ndarray | None = None
    subjects_test: np.ndarray | None = None
    source: str = ""

    @property
    def n_channels(self) -> int:
        """Number of channels C."""
        return int(self.X.shape[1])

    @property
    def length(self) -> int:
        """Window length T (time steps)."""
        return int(self.X.shape[2])

    @property
    def n_classes(self) -> int:
        """Number of classes K."""
        return len(self.class_names)

    @property
    def has_test(self) -> bool:
        """True when the file provided its own test set."""
        return self.X_test is not None


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _read_bytes(path: Path, layout_hint: str) -> bytes:
    """Read a whole file, turning missing/unreadable/empty files into `DataError`."""
    if not path.exists():
        raise DataError(f"{path}: file not found", "check the path (relative paths are "
                        "resolved from the current directory)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file",
                        f"pass a single file; {layout_hint}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})",
                        "check the file's permissions") from exc
    if not data.strip():
        raise DataError(f"{path}: the file is empty", layout_hint)
    return data


def _decode_text(path: Path, data: bytes, kind: str, layout_hint: str) -> str:
    """Decode a text file as UTF-8; binary content raises `DataError`."""
    if b"\x00" in data:
        raise DataError(f"{path}: is not a {kind} text file (it contains binary data)",
                        layout_hint)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: is not a {kind} text file (not UTF-8 text: byte {exc.start})", layout_hint
        ) from exc


def _encode_labels(
    path: Path, labels: Sequence[object] | np.ndarray, integer: bool,
    declared: Sequence[str] | None = None,
) -> tuple[tuple[str, ...], np.ndarray]:
    """Map raw training labels to class indices.

    Args:
        path: The file, for messages.
        labels: Raw labels (ints when `integer`, else strings).
        integer: Whether the labels are integers (names are then str of the sorted values).
        declared: An explicit class order (the .ts `@classLabel` list), or None.

    Returns:
        (class_names, y) with y int64 indices into class_names.
    """
    if declared is not None:
        names = tuple(declared)
    elif integer:
        names = tuple(str(v) for v in sorted({int(v) for v in labels}))
    else:
        names = tuple(sorted({str(v) for v in labels}))
    index = {name: i for i, name in enumerate(names)}
    keys = [str(int(v)) if integer else str(v) for v in labels]
    unknown = sorted({k for k in keys if k not in index})
    if unknown:
        raise DataError(
            f"{path}: labels {', '.join(map(repr, unknown[:10]))} are not among the declared "
            f"classes {', '.join(names)}",
            "add them to the '@classLabel true ...' header line or fix the data lines",
        )
    return names, np.asarray([index[k] for k in keys], dtype=np.int64)


def _map_test_labels(
    path: Path, labels: Sequence[object] | np.ndarray, integer: bool, class_names: Sequence[str]
) -> np.ndarray:
    """Map raw test labels onto the training classes; unknown labels raise `DataError`."""
    index = {name: i for i, name in enumerate(class_names)}
    keys = [str(int(v)) if integer else str(v) for v in labels]
    unknown = sorted({k for k in keys if k not in index})
    if unknown:
        raise DataError(
            f"{path}: test labels {', '.join(map(repr, unknown[:10]))} do not occur among the "
            f"training classes ({', '.join(class_names)})",
            "the test set may only contain classes that the training data has; remove those "
            "test windows or add training windows of those classes",
        )
    return np.asarray([index[k] for k in keys], dtype=np.int64)


def _validate(
    path: Path | str,
    X: np.ndarray,
    y: np.ndarray,
    class_names: Sequence[str],
    *,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    subjects: np.ndarray | None = None,
    subjects_test: np.ndarray | None = None,
    layout_hint: str = "",
) -> None:
    """Checks shared by every loader; raises `DataError` naming `path` on the first problem.

    Checks: shapes (N, C, T) with C >= 1 and T >= 1, label and subject counts equal to the
    window counts, no NaN/inf values, at least two classes present in the training pool, at
    least as many windows as classes, and a test set with the pool's C and T.
    """
    for name, arr, labels, subj in (
        ("X", X, y, subjects),
        ("X_test", X_test, y_test, subjects_test),
    ):
        if arr is None:
            continue
        if arr.ndim != 3:
            raise DataError(f"{path}: {name} has shape {arr.shape}, expected (N, C, T)",
                            layout_hint)
        n, c, t = arr.shape
        if n < 1:
            raise DataError(f"{path}: the file is empty ({name} has no windows)", layout_hint)
        if c < 1:
            raise DataError(f"{path}: {name} has no channels (C = {c})",
                            f"every window needs at least one sensor channel; {layout_hint}")
        if t < 1:
            raise DataError(f"{path}: {name} windows have length T = {t}",
                            f"every window needs at least one time step; {layout_hint}")
        if labels is None or labels.shape[0] != n:
            count = "no" if labels is None else str(labels.shape[0])
            raise DataError(
                f"{path}: {name} has {n} windows but {count} labels",
                f"give exactly one label per window; {layout_hint}",
            )
        if subj is not None and subj.shape[0] != n:
            raise DataError(
                f"{path}: {name} has {n} windows but {subj.shape[0]} subject ids",
                f"give exactly one subject id per window, or none at all; {layout_hint}",
            )
        bad = ~np.isfinite(arr)
        n_bad = int(bad.sum())
        if n_bad:
            w, ch, ts = (int(v) for v in np.argwhere(bad)[0])
            raise DataError(
                f"{path}: {name} contains {n_bad} NaN/inf value(s); the first is at window "
                f"{w}, channel {ch}, step {ts}",
                "fill or interpolate missing samples, or drop the affected windows, before "
                "loading",
            )
    n, c, t = X.shape
    k = len(class_names)
    present = np.unique(y)
    if present.size < 2:
        only = class_names[int(present[0])] if present.size else "none"
        raise DataError(
            f"{path}: the training data contains only one class ({only!r})",
            "a classifier needs windows of at least two classes",
        )
    if n < k:
        raise DataError(
            f"{path}: {n} training windows for {k} classes (fewer windows than classes)",
            "every class needs at least one training window; add data or drop unused classes",
        )
    if X_test is not None and X_test.shape[1:] != (c, t):
        raise DataError(
            f"{path}: the test set has windows of (C, T) = {X_test.shape[1:]} but the training "
            f"pool has {(c, t)}",
            "train and test windows must have the same channels and length",
        )


def _build(path: Path, source: str, X: np.ndarray, y: np.ndarray,
           class_names: Sequence[str], layout_hint: str, **extra: np.ndarray | None) -> Dataset:
    """Validate the pieces and assemble a `Dataset`."""
    _validate(path, X, y, class_names, layout_hint=layout_hint, **extra)
    return Dataset(X=X, y=y, class_names=tuple(class_names), source=source, **extra)


# ---------------------------------------------------------------------------------------------
# .npz
# ---------------------------------------------------------------------------------------------


def _npz_get(path: Path, npz: np.lib.npyio.NpzFile, key: str) -> np.ndarray | None:
    """Read one array from an npz; object arrays and corrupt members raise `DataError`."""
    if key not in npz.files:
        return None
    _check_npz_member_size(path, npz, key)
    try:
        return np.asarray(npz[key])
    except MemoryError as exc:  # a header whose shape the machine cannot hold
        raise DataError(f"{path}: array {key!r} claims more memory than this machine has ({exc})",
                        "the file's header is corrupt, or the data needs a machine with more RAM; "
                        "re-create it with np.savez") from exc
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                f"{path}: array {key!r} has the wrong dtype (object)", NPZ_LAYOUT_HELP
            ) from exc
        raise DataError(f"{path}: array {key!r} cannot be read ({exc})", NPZ_LAYOUT_HELP) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: array {key!r} is corrupt ({exc})",
                        "re-create the file with np.savez") from exc


# Largest array member of an .npz that is loaded: data are held in memory (and copied while
# standardised), and a 2 MB compressed file can inflate to gigabytes. 1 GiB of float32 is
# 268 M values, e.g. 100,000 windows of 9 channels x 300 steps; BasicMotions is 0.1 MB.
MAX_NPZ_MEMBER_BYTES = 1 << 30


def _available_memory() -> int | None:
    """Bytes of memory available to this process now (Linux, macOS), or None when unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_npz_member_size(path: Path, npz: np.lib.npyio.NpzFile, key: str) -> None:
    """Refuse an array too large to load, or whose header claims more bytes than its member holds.

    A corrupt or hand-made header can claim terabytes; numpy would try to allocate them before
    finding the data short. A compressed member can inflate far beyond the file's size. Both are
    known from the archive's directory and the array header, before anything is inflated.
    """
    try:
        info = npz.zip.getinfo(key + ".npy")
    except KeyError:
        return  # not a plain .npy member: np.load reports it
    avail = _available_memory()
    limit = min(MAX_NPZ_MEMBER_BYTES, avail // 2) if avail else MAX_NPZ_MEMBER_BYTES
    if info.file_size > limit:
        why = (f"micronas loads at most {MAX_NPZ_MEMBER_BYTES >> 20:,} MiB per array"
               if limit == MAX_NPZ_MEMBER_BYTES else
               f"half the memory available now ({avail:,} bytes) is {limit:,}")
        raise DataError(f"{path}: array {key!r} inflates to {info.file_size:,} bytes (from {info.compress_size:,} in "
                        f"the file); {why}",
                        "use fewer or shorter windows (or fewer channels), or split the data; if the file is far "
                        "smaller than that, it is corrupt or built to inflate (real sensor data compress little)")
    try:
        with npz.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                return  # a newer format: np.load reads it
            shape, _, dtype = read_header(member)
            header_bytes = member.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return  # not a plain .npy member: np.load reports it
    if dtype.hasobject:
        return  # object arrays are refused when read
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if claimed > info.file_size - header_bytes:
        raise DataError(f"{path}: array {key!r} claims shape {tuple(shape)} of {dtype} ({claimed:,} bytes) but the "
                        f"file holds {max(info.file_size - header_bytes, 0):,} bytes of it",
                        "the file is truncated or its header is corrupt; re-create it with np.savez")


def _npz_values(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    """Check a value array's dtype and rank and return it as float32 (N, C, T)."""
    if arr.dtype.kind not in "fiu":
        raise DataError(
            f"{path}: {key} has the wrong dtype ({arr.dtype}); expected a real numeric dtype "
            "(float or int)",
            "convert it, e.g. X.astype(np.float32), before np.savez",
        )
    if arr.ndim == 2:
        arr = arr[:, None, :]
    elif arr.ndim != 3:
        raise DataError(
            f"{path}: {key} has shape {arr.shape}; expected (N, C, T), or (N, T) for a "
            "single channel",
            NPZ_LAYOUT_HELP,
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32)


def _npz_labels(path: Path, key: str, arr: np.ndarray) -> tuple[list[object], bool]:
    """Check a label array; return (labels, is_integer)."""
    if arr.ndim != 1:
        raise DataError(f"{path}: {key} has shape {arr.shape}; expected (N,)", NPZ_LAYOUT_HELP)
    kind = arr.dtype.kind
    if kind in "iu":
        return [int(v) for v in arr], True
    if kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(
                f"{path}: {key} has the wrong dtype ({arr.dtype}) with non-integral values",
                "labels must be integers or strings; float labels are accepted only when "
                "every value is a whole number",
            )
        return [int(v) for v in arr], True
    if kind == "U":
        return [str(v) for v in arr], False
    if kind == "S":
        return [v.decode("utf-8", "replace") for v in arr], False
    raise DataError(
        f"{path}: {key} has the wrong dtype ({arr.dtype}); expected integer or string labels",
        NPZ_LAYOUT_HELP,
    )


def _npz_subjects(path: Path, key: str, arr: np.ndarray | None) -> np.ndarray | None:
    """Check a subject-id array and return it as a str array."""
    if arr is None:
        return None
    if arr.ndim != 1:
        raise DataError(f"{path}: {key} has shape {arr.shape}; expected (N,)", NPZ_LAYOUT_HELP)
    kind = arr.dtype.kind
    if kind in "iu":
        return np.asarray([str(int(v)) for v in arr], dtype=str)
    if kind == "U":
        return arr.astype(str)
    if kind == "S":
        return np.asarray([v.decode("utf-8", "replace") for v in arr], dtype=str)
    raise DataError(
        f"{path}: {key} has the wrong dtype ({arr.dtype}); expected integer or string subject ids",
        NPZ_LAYOUT_HELP,
    )


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Load a dataset from a numpy `.npz` archive.

    Keys: ``X`` (N, C, T) -- or (N, T), read as a single channel -- of a real numeric dtype,
    converted to float32; ``y`` (N,) integer or string labels (float only if integral);
    optional ``X_test``/``y_test`` (both or neither), ``subjects`` (N,), ``subjects_test`` (M,).

    Args:
        path: The .npz file.

    Returns:
        The dataset; `X_test`/`y_test` set when the file has them.

    Raises:
        DataError: The file is missing, empty, not an npz, lacks X or y, has a wrong dtype or
            shape, NaN/inf values, a single class, or test labels unknown to training.
    """
    path = Path(path)
    data = _read_bytes(path, NPZ_LAYOUT_HELP)
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: is not a valid .npz file ({exc})",
                        f"{NPZ_LAYOUT_HELP}; write it with np.savez(path, X=X, y=y)") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path}: is not a valid .npz file (it holds a single .npy array, not named arrays)",
            f"{NPZ_LAYOUT_HELP}; write it with np.savez(path, X=X, y=y)",
        )
    with npz:
        raw = {k: _npz_get(path, npz, k)
               for k in ("X", "y", "X_test", "y_test", "subjects", "subjects_test")}
        extra_keys = sorted(set(npz.files) - set(raw))
    if extra_keys:
        logger.debug("%s: ignoring arrays %s", path, ", ".join(extra_keys))
    if raw["X"] is None:
        found = sorted([k for k, v in raw.items() if v is not None] + extra_keys)
        raise DataError(f"{path}: has no array 'X' (arrays found: {', '.join(found) or 'none'})",
                        NPZ_LAYOUT_HELP)
    if raw["y"] is None:
        raise DataError(f"{path}: labels missing (no array 'y')",
                        f"{NPZ_LAYOUT_HELP}; e.g. np.savez(path, X=X, y=y)")
    if (raw["X_test"] is None) != (raw["y_test"] is None):
        have, lack = ("X_test", "y_test") if raw["X_test"] is not None else ("y_test", "X_test")
        raise DataError(f"{path}: has {have!r} but no {lack!r}",
                        "give both X_test and y_test, or neither")
    if raw["subjects_test"] is not None and raw["X_test"] is None:
        raise DataError(f"{path}: has 'subjects_test' but no test set",
                        "drop subjects_test, or add X_test and y_test")

    X = _npz_values(path, "X", raw["X"])
    labels, integer = _npz_labels(path, "y", raw["y"])
    class_names, y = _encode_labels(path, labels, integer)
    X_test = y_test = None
    if raw["X_test"] is not None:
        X_test = _npz_values(path, "X_test", raw["X_test"])
        test_labels, test_integer = _npz_labels(path, "y_test", raw["y_test"])
        y_test = _map_test_labels(path, test_labels, test_integer, class_names)
    return _build(
        path, str(path), X, y, class_names, NPZ_LAYOUT_HELP,
        X_test=X_test, y_test=y_test,
        subjects=_npz_subjects(path, "subjects", raw["subjects"]),
        subjects_test=_npz_subjects(path, "subjects_test", raw["subjects_test"]),
    )


# ---------------------------------------------------------------------------------------------
# .ts (UEA / UCR)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TsContent:
    """The parsed content of one .ts file."""

    X: np.ndarray  # (N, C, T) float32
    labels: list[str]
    class_names: tuple[str, ...]


def _ts_bool(path: Path, lineno: int, tag: str, value: str) -> bool:
    """Parse a true/false header value."""
    word = value.split()[0].lower() if value.split() else ""
    if word not in ("true", "false"):
        raise DataError(f"{path}: line {lineno}: {tag} must be 'true' or 'false', got {value!r}",
                        TS_LAYOUT_HELP)
    return word == "true"


def _ts_int(path: Path, lineno: int, tag: str, value: str) -> int:
    """Parse a positive integer header value."""
    try:
        out = int(value.split()[0])
    except (ValueError, IndexError):
        out = 0
    if out < 1:
        raise DataError(f"{path}: line {lineno}: {tag} must be a positive integer, got "
                        f"{value!r}", TS_LAYOUT_HELP)
    return out


def _parse_ts(path: Path) -> _TsContent:
    """Parse one UEA .ts file into values, raw labels and the declared class order."""
    text = _decode_text(path, _read_bytes(path, TS_LAYOUT_HELP), "UEA .ts", TS_LAYOUT_HELP)
    class_names: list[str] | None = None
    labels_declared_false = False
    dimensions: int | None = None
    series_length: int | None = None
    seen_header = False
    in_data = False
    rows: list[np.ndarray] = []
    labels: list[str] = []
    first_shape: tuple[int, int] | None = None
    first_line = 0

    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                if seen_header:
                    raise DataError(
                        f"{path}: line {lineno}: data before the '@data' line", TS_LAYOUT_HELP)
                raise DataError(
                    f"{path}: is not a UEA .ts text file (line {lineno} is neither a '#' "
                    "comment nor an '@' header)", TS_LAYOUT_HELP)
            seen_header = True
            tag, _, value = line.partition(" ")
            tag_l, value = tag.lower(), value.strip()
            if tag_l == "@data":
                if class_names is None:
                    reason = ("@classLabel is false" if labels_declared_false
                              else "no @classLabel line")
                    raise DataError(
                        f"{path}: labels missing ({reason})",
                        "a classification .ts file needs '@classLabel true <label1> <label2> "
                        "...' before '@data', and a label at the end of every data line",
                    )
                in_data = True
            elif tag_l == "@timestamps":
                if _ts_bool(path, lineno, tag, value):
                    raise DataError(
                        f"{path}: line {lineno}: '@timeStamps true' is not supported",
                        "export the series without time stamps (plain comma-separated values, "
                        "equally spaced) and set '@timeStamps false'",
                    )
            elif tag_l == "@classlabel":
                words = value.split()
                if not words or words[0].lower() not in ("true", "false"):
                    raise DataError(f"{path}: line {lineno}: malformed @classLabel {value!r}",
                                    TS_LAYOUT_HELP)
                if words[0].lower() == "false":
                    labels_declared_false = True
                else:
                    if len(words) < 2:
                        raise DataError(
                            f"{path}: line {lineno}: '@classLabel true' lists no labels",
                            "list every class after it: '@classLabel true walk run sit'")
                    class_names = list(dict.fromkeys(words[1:]))
            elif tag_l == "@dimensions":
                dimensions = _ts_int(path, lineno, tag, value)
            elif tag_l == "@serieslength":
                series_length = _ts_int(path, lineno, tag, value)
            elif tag_l in ("@univariate", "@equallength", "@missing"):
                _ts_bool(path, lineno, tag, value)
            elif tag_l == "@problemname":
                pass
            elif tag_l == "@targetlabel":
                raise DataError(
                    f"{path}: line {lineno}: '@targetLabel' marks a regression dataset, which "
                    "is not supported", "micronas needs a classification dataset with "
                    "'@classLabel true <labels...>'")
            else:
                logger.warning("%s: line %d: ignoring unknown header %s", path, lineno, tag)
            continue

        # A data line: channels separated by ':', values by ',', label last.
        parts = line.split(":")
        if len(parts) < 2:
            raise DataError(f"{path}: line {lineno}: no class label (expected "
                            "'v,v,...:v,v,...:label')", TS_LAYOUT_HELP)
        label = parts[-1].strip()
        assert class_names is not None
        if label not in class_names:
            raise DataError(
                f"{path}: line {lineno}: label {label!r} is not in the declared @classLabel "
                f"list ({' '.join(class_names)})",
                "add it to the '@classLabel true ...' line or fix the data line",
            )
        channels: list[list[float]] = []
        for ch, chunk in enumerate(parts[:-1]):
            values: list[float] = []
            for tok in chunk.split(","):
                tok = tok.strip()
                if tok == "?" or tok.lower() == "nan":
                    raise DataError(
                        f"{path}: line {lineno}: missing value ({tok!r}, NaN) in channel {ch}",
                        "fill or interpolate missing samples, or drop that series, before "
                        "loading")
                try:
                    v = float(tok)
                except ValueError:
                    raise DataError(
                        f"{path}: line {lineno}: non-numeric value {tok!r} in channel {ch}",
                        TS_LAYOUT_HELP) from None
                if not math.isfinite(v):
                    raise DataError(f"{path}: line {lineno}: non-finite value {tok!r} (NaN/inf) "
                                    f"in channel {ch}", "replace, clip or interpolate those "
                                    "samples, or drop that series, before loading")
                values.append(v)
            channels.append(values)
        lengths = {len(c) for c in channels}
        if len(lengths) > 1:
            raise DataError(
                f"{path}: line {lineno}: ragged series, channel lengths "
                f"{[len(c) for c in channels]} differ",
                "every channel of a series must have the same length; resample or pad them")
        shape = (len(channels), len(channels[0]))
        if dimensions is not None and shape[0] != dimensions:
            raise DataError(f"{path}: line {lineno}: {shape[0]} channels but @dimensions "
                            f"declares {dimensions}", TS_LAYOUT_HELP)
        if first_shape is None:
            first_shape, first_line = shape, lineno
        elif shape != first_shape:
            raise DataError(
                f"{path}: line {lineno}: ragged data, the series has (channels, length) = "
                f"{shape} but the first series (line {first_line}) has {first_shape}",
                "all series must have the same number of channels and the same length; "
                "resample or pad them to a common length")
        if series_length is not None and shape[1] != series_length:
            raise DataError(f"{path}: line {lineno}: ragged data, series length {shape[1]} but "
                            f"@seriesLength declares {series_length}",
                            "resample or pad every series to the declared length")
        rows.append(np.asarray(channels, dtype=np.float64))
        labels.append(label)

    if not seen_header:
        raise DataError(f"{path}: the file is empty (only comments)", TS_LAYOUT_HELP)
    if not in_data:
        raise DataError(f"{path}: the file is empty (no '@data' section)", TS_LAYOUT_HELP)
    if not rows:
        raise DataError(f"{path}: the file is empty (no data lines after '@data')",
                        TS_LAYOUT_HELP)
    assert class_names is not None
    with np.errstate(over="ignore"):
        X = np.stack(rows).astype(np.float32)
    return _TsContent(X=X, labels=labels, class_names=tuple(class_names))


def _ts_test_sibling(path: Path) -> Path | None:
    """The `_TEST.ts` sibling of a `_TRAIN.ts` path, when it exists."""
    if path.name.endswith("_TRAIN" + path.suffix):
        sibling = path.with_name(path.name[: -len("_TRAIN" + path.suffix)] + "_TEST" + path.suffix)
        if sibling.is_file():
            return sibling
    return None


def _ts_dataset(train_path: Path, test_path: Path | None, source: str) -> Dataset:
    """Combine a parsed training .ts file and an optional test .ts file."""
    train = _parse_ts(train_path)
    class_names, y = _encode_labels(train_path, train.labels, False, train.class_names)
    X_test = y_test = None
    if test_path is not None:
        test = _parse_ts(test_path)
        X_test = test.X
        y_test = _map_test_labels(test_path, test.labels, False, class_names)
        if X_test.shape[1:] != train.X.shape[1:]:
            raise DataError(
                f"{test_path}: test series have (channels, length) = {X_test.shape[1:]} but "
                f"the training file {train_path} has {train.X.shape[1:]}",
                "train and test series must have the same channels and length")
    return _build(train_path, source, train.X, y, class_names, TS_LAYOUT_HELP,
                  X_test=X_test, y_test=y_test)


def load_ts(path: str | os.PathLike[str]) -> Dataset:
    """Load a dataset from a UEA/UCR `.ts` text file.

    A single file is a training pool without a test set. If the path ends in ``_TRAIN.ts``
    and a sibling ``_TEST.ts`` exists, that sibling is loaded as `X_test`/`y_test` (the way
    the UEA archive ships its datasets). Class names follow the ``@classLabel true ...`` order.

    Args:
        path: The .ts file.

    Returns:
        The dataset.

    Raises:
        DataError: The file is missing, empty, binary, has '@timeStamps true', no class
            labels, missing ('?'/NaN) values, ragged series, undeclared labels, or a single class.
    """
    path = Path(path)
    sibling = _ts_test_sibling(path)
    if sibling is not None and (path, sibling) not in _TEST_SIBLINGS_SAID:  # once per process, not per stage
        _TEST_SIBLINGS_SAID.add((path, sibling))
        logger.info("%s: loading %s as its test set", path, sibling.name)
    return _ts_dataset(path, sibling, str(path))


def load_builtin(name: str = DEFAULT_DATASET) -> Dataset:
    """Load the embedded BasicMotions dataset (40 train + 40 test series, 6 x 100, 4 classes).

    Args:
        name: Must be "basicmotions".

    Returns:
        The dataset, with source "builtin:basicmotions".

    Raises:
        DataError: The name is unknown or the embedded files are missing.
    """
    if name != DEFAULT_DATASET:
        raise DataError(f"{name}: unknown builtin dataset", f"the builtin is {DEFAULT_DATASET!r}")
    folder = resources.files("micronas.data") / "basicmotions"
    train_res = folder / "BasicMotions_TRAIN.ts"
    test_res = folder / "BasicMotions_TEST.ts"
    with resources.as_file(train_res) as train_path, resources.as_file(test_res) as test_path:
        if not Path(train_path).is_file() or not Path(test_path).is_file():
            raise DataError(f"{train_path}: the embedded BasicMotions files are missing",
                            "reinstall micronas (they ship as package data)")
        return _ts_dataset(Path(train_path), Path(test_path), BUILTIN_SOURCE)


# ---------------------------------------------------------------------------------------------
# .csv (long format)
# ---------------------------------------------------------------------------------------------


@dataclass
class _CsvWindow:
    """Rows of one window being accumulated."""

    wid: str
    line: int
    label: str
    subject: str | None
    split: str
    rows: list[list[float]]


def load_csv(path: str | os.PathLike[str]) -> Dataset:
    """Load a dataset from a long-format `.csv` (one row per time step); see `CSV_LAYOUT_HELP`.

    Args:
        path: The .csv file.

    Returns:
        The dataset; windows whose `split` is "test" form `X_test`/`y_test`.

    Raises:
        DataError: The file is missing, empty, header-only or binary; a required column is
            missing; a value is not numeric; windows are ragged, non-contiguous or change
            label/subject/split; or the common validation fails.
    """
    path = Path(path)
    text = _decode_text(path, _read_bytes(path, CSV_LAYOUT_HELP), "CSV", CSV_LAYOUT_HELP)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header: list[str] | None = None
        for row in reader:
            if any(cell.strip() for cell in row):
                header = [cell.strip() for cell in row]
                break
        if header is None:
            raise DataError(f"{path}: the file is empty", CSV_LAYOUT_HELP)
        lowered = [h.lower() for h in header]
        dupes = sorted({h for h in lowered if lowered.count(h) > 1})
        if dupes:
            raise DataError(f"{path}: duplicate column(s) {', '.join(dupes)} in the header",
                            CSV_LAYOUT_HELP)
        missing = [c for c in _CSV_REQUIRED if c not in lowered]
        if missing:
            raise DataError(
                f"{path}: the header has no {' and no '.join(repr(c) for c in missing)} column "
                f"(header: {', '.join(header[:8])}{', ...' if len(header) > 8 else ''})",
                CSV_LAYOUT_HELP)
        col = {name: lowered.index(name) for name in _CSV_REQUIRED + _CSV_OPTIONAL
               if name in lowered}
        meta = set(col.values())
        channel_idx = [i for i in range(len(header)) if i not in meta]
        if not channel_idx:
            raise DataError(f"{path}: no sensor channel columns (only {', '.join(header)})",
                            CSV_LAYOUT_HELP)
        channel_names = [header[i] for i in channel_idx]

        windows: list[_CsvWindow] = []
        seen: dict[str, int] = {}
        current: _CsvWindow | None = None
        for row in reader:
            lineno = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {lineno} has {len(row)} fields but the header "
                                f"has {len(header)}", CSV_LAYOUT_HELP)
            wid = row[col["window"]].strip()
            label = row[col["label"]].strip()
            subject = row[col["subject"]].strip() if "subject" in col else None
            split = row[col["split"]].strip().lower() if "split" in col else "train"
            if not wid:
                raise DataError(f"{path}: line {lineno}: empty window id", CSV_LAYOUT_HELP)
            if not label:
                raise DataError(f"{path}: line {lineno}: empty label (window {wid!r})",
                                CSV_LAYOUT_HELP)
            if split not in _CSV_SPLITS:
                raise DataError(
                    f"{path}: line {lineno}: split {row[col['split']]!r} is not 'train' or "
                    "'test'", CSV_LAYOUT_HELP)
            values: list[float] = []
            for i, name in zip(channel_idx, channel_names):
                cell = row[i].strip()
                try:
                    values.append(float(cell))
                except ValueError:
                    raise DataError(
                        f"{path}: line {lineno}, column {name!r}: non-numeric value {cell!r}",
                        "every channel column must hold numbers; " + CSV_LAYOUT_HELP,
                    ) from None
            if current is None or wid != current.wid:
                if wid in seen:
                    raise DataError(
                        f"{path}: window {wid!r} appears in two separate blocks (lines "
                        f"{seen[wid]}... and again at line {lineno})",
                        "the rows of one window must be contiguous; sort the file by window "
                        "(keeping time order) or give each block its own window id")
                current = _CsvWindow(wid, lineno, label, subject, split, [])
                seen[wid] = lineno
                windows.append(current)
            else:
                for what, first, now in (("label", current.label, label),
                                         ("subject", current.subject, subject),
                                         ("split", current.split, split)):
                    if first != now:
                        raise DataError(
                            f"{path}: line {lineno}: window {wid!r} changes its {what} from "
                            f"{first!r} to {now!r}",
                            "label, subject and split must be the same on every row of a "
                            "window; split the window or fix the rows")
            current.rows.append(values)
    except csv.Error as exc:
        raise DataError(f"{path}: is not a readable CSV file ({exc})", CSV_LAYOUT_HELP) from exc

    if not windows:
        raise DataError(f"{path}: the file is empty (a header row but no data rows)",
                        CSV_LAYOUT_HELP)
    first = windows[0]
    for w in windows[1:]:
        if len(w.rows) != len(first.rows):
            raise DataError(
                f"{path}: ragged windows, window {w.wid!r} (line {w.line}) has {len(w.rows)} "
                f"row(s) but the first window {first.wid!r} has {len(first.rows)}",
                "every window must have the same number of time steps; resample, pad or drop "
                "windows of a different length")

    train = [w for w in windows if w.split == "train"]
    test = [w for w in windows if w.split == "test"]
    if not train:
        raise DataError(f"{path}: every window has split 'test'; there is no training data",
                        "mark some windows as 'train' (or drop the split column)")
    integer = all(_INT_RE.match(w.label) for w in windows)

    def stack(ws: list[_CsvWindow]) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.asarray([w.rows for w in ws], dtype=np.float64).transpose(0, 2, 1).astype(
                np.float32)

    def subjects_of(ws: list[_CsvWindow]) -> np.ndarray | None:
        if "subject" not in col:
            return None
        return np.asarray([w.subject for w in ws], dtype=str)

    class_names, y = _encode_labels(path, [int(w.label) if integer else w.label for w in train],
                                    integer)
    X_test = y_test = None
    if test:
        X_test = stack(test)
        y_test = _map_test_labels(path, [int(w.label) if integer else w.label for w in test],
                                  integer, class_names)
    return _build(path, str(path), stack(train), y, class_names, CSV_LAYOUT_HELP,
                  X_test=X_test, y_test=y_test, subjects=subjects_of(train),
                  subjects_test=subjects_of(test) if test else None)


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[[str | os.PathLike[str]], Dataset]] = {
    ".npz": load_npz,
    ".ts": load_ts,
    ".csv": load_csv,
}
"""Loader for each supported file suffix."""

SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(LOADERS)


def load_dataset(spec: str | os.PathLike[str]) -> Dataset:
    """Load a dataset: the builtin "basicmotions" or a `.npz`, `.ts` or `.csv` file.

    Args:
        spec: "basicmotions" (the embedded default) or a path to a data file.

    Returns:
        The dataset.

    Raises:
        DataError: The path is missing, a directory, has an unsupported suffix, or the file
            is not usable (see the individual loaders).
    """
    if isinstance(spec, str) and spec == DEFAULT_DATASET:
        return load_builtin(DEFAULT_DATASET)
    path = Path(spec)
    supported = ", ".join(SUPPORTED_SUFFIXES)
    hint = (f"give {DEFAULT_DATASET!r} or a file ending in {supported}; see "
            "the README's Data section for the layouts")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file "
                        f"(supported: {supported})", hint)
    if not path.exists():
        raise DataError(f"{path}: file not found (supported: {DEFAULT_DATASET!r} or {supported})",
                        hint)
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
                        f"supported: {supported}", hint)
    return loader(path)

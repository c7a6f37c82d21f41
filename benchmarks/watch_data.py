"""seglearn's watch data as a micronas .npz: the realistic wearable benchmark of issue 6.

seglearn ships `watch_dataset.npy` (BSD-3-Clause, see seglearn's LICENSE): 140 recordings of
10 subjects doing 7 shoulder exercises, 6-axis IMU at 50 Hz. seglearn is not a dependency of
micronas: install it with `pip install --no-deps seglearn` (importing it needs pandas, which it
does not declare, so the file is read directly).

Protocol (the reference points of issue 6): 128-sample windows with 50 % overlap, cut within
each recording; subjects 1-7 form the pool (subject 3 is the validation subject), subjects
8-10 the test set, stored as the file's own `X_test`.

    python benchmarks/watch_data.py OUT.npz
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

WINDOW, STEP = 128, 64
TEST_SUBJECTS = (8, 9, 10)
VAL_SUBJECT = "3"


def watch_file() -> Path | None:
    """The path of seglearn's watch_dataset.npy, or None when seglearn is not installed."""
    spec = importlib.util.find_spec("seglearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "watch_dataset.npy"
    return path if path.exists() else None


def windows(path: Path) -> dict[str, np.ndarray]:
    """Cut the recordings into windows; arrays for a micronas .npz."""
    d = np.load(path, allow_pickle=True).item()
    names = list(d["y_labels"])
    parts: dict[bool, dict[str, list]] = {t: {"X": [], "y": [], "s": []} for t in (False, True)}
    for rec, label, subject in zip(d["X"], d["y"], d["subject"]):
        rec = np.asarray(rec, dtype=np.float32)  # (T, 6)
        part = parts[int(subject) in TEST_SUBJECTS]
        for start in range(0, rec.shape[0] - WINDOW + 1, STEP):
            part["X"].append(rec[start:start + WINDOW].T)
            part["y"].append(names[int(label)])
            part["s"].append(str(int(subject)))
    pool, test = parts[False], parts[True]
    return {"X": np.stack(pool["X"]), "y": np.array(pool["y"]), "subjects": np.array(pool["s"]),
            "X_test": np.stack(test["X"]), "y_test": np.array(test["y"]), "subjects_test": np.array(test["s"])}


def in_work(work: Path) -> Path:
    """WORK/watch.npz, written on first use (WORK created); seglearn must be installed."""
    out = work / "watch.npz"
    if not out.exists():
        write(out)
    return out


def write(out: Path) -> Path:
    src = watch_file()
    if src is None:
        raise SystemExit("seglearn is not installed: pip install --no-deps seglearn")
    arrays = windows(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[-1].strip())
    p = write(Path(sys.argv[1]))
    with np.load(p) as z:
        print(f"{p}: pool {z['X'].shape}, test {z['X_test'].shape}, classes {sorted(set(z['y']))}")

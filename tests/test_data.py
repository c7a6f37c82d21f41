"""Tests for micronas.data: loaders, validation errors, splits and standardisation."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from micronas.data import (
    CSV_LAYOUT_HELP,
    DEFAULT_DATASET,
    LOADERS,
    Dataset,
    Split,
    Standardizer,
    arrays_for,
    load_csv,
    load_dataset,
    load_npz,
    load_ts,
    make_split,
)
from micronas_base.errors import ConfigError, DataError, UsageError

# ---------------------------------------------------------------------------------------------
# writers for synthetic data
# ---------------------------------------------------------------------------------------------


def synthetic(n: int = 12, c: int = 3, t: int = 8, k: int = 3, seed: int = 0):
    """Random float32 windows and labels 0..k-1 cycling."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, c, t)).astype(np.float32)
    y = np.arange(n) % k
    return X, y


def write_ts(path: Path, X: np.ndarray, labels, declared=None, header_extra: str = "",
             class_line: str | None = None) -> Path:
    declared = declared if declared is not None else list(dict.fromkeys(labels))
    lines = ["# synthetic test data", "@problemName Synthetic", "@timeStamps false",
             "@missing false", f"@univariate {'true' if X.shape[1] == 1 else 'false'}",
             f"@dimensions {X.shape[1]}", "@equalLength true", f"@seriesLength {X.shape[2]}"]
    if header_extra:
        lines.append(header_extra)
    lines.append(class_line if class_line is not None else
                 "@classLabel true " + " ".join(map(str, declared)))
    lines.append("@data")
    for x, lab in zip(X, labels):
        lines.append(":".join(",".join(repr(float(v)) for v in ch) for ch in x) + f":{lab}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(path: Path, X: np.ndarray, labels, subjects=None, splits=None,
              channel_names=None) -> Path:
    c = X.shape[1]
    channel_names = channel_names or [f"ch{i}" for i in range(c)]
    header = ["window", "label"]
    if subjects is not None:
        header.append("subject")
    if splits is not None:
        header.append("split")
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header + channel_names)
        for i, x in enumerate(X):
            meta = [f"w{i}", labels[i]]
            if subjects is not None:
                meta.append(subjects[i])
            if splits is not None:
                meta.append(splits[i])
            for step in range(x.shape[1]):
                w.writerow(meta + [repr(float(v)) for v in x[:, step]])
    return path


# ---------------------------------------------------------------------------------------------
# builtin
# ---------------------------------------------------------------------------------------------


def test_builtin_basicmotions():
    ds = load_dataset("basicmotions")
    assert DEFAULT_DATASET == "basicmotions"
    assert ds.X.shape == (40, 6, 100)
    assert ds.X_test is not None and ds.X_test.shape == (40, 6, 100)
    assert ds.X.dtype == np.float32 and ds.X_test.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.class_names == ("Standing", "Running", "Walking", "Badminton")
    assert np.bincount(ds.y).tolist() == [10, 10, 10, 10]
    assert np.bincount(ds.y_test).tolist() == [10, 10, 10, 10]
    assert (ds.n_channels, ds.length, ds.n_classes) == (6, 100, 4)
    assert ds.source == "builtin:basicmotions"
    assert ds.subjects is None
    # first value of the first training series, as written in the file
    assert ds.X[0, 0, 0] == np.float32(0.079106)


def test_builtin_split_sizes():
    ds = load_dataset("basicmotions")
    s = make_split(ds, seed=0)
    assert s.test_from_file and not s.by_subject
    assert (len(s.train), len(s.val), len(s.test)) == (32, 8, 40)
    assert np.bincount(ds.y[s.val]).tolist() == [2, 2, 2, 2]
    assert s.test.tolist() == list(range(40))
    arrays = arrays_for(ds, s)
    assert arrays["train"][0].shape == (32, 6, 100)
    assert arrays["val"][0].shape == (8, 6, 100)
    np.testing.assert_array_equal(arrays["test"][0], ds.X_test)
    np.testing.assert_array_equal(arrays["test"][1], ds.y_test)
    np.testing.assert_array_equal(arrays["val"][1], ds.y[s.val])


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


def test_npz_roundtrip_int_labels(tmp_path):
    X, y = synthetic()
    y = np.array([5, 2, 9] * 4)
    X_test, _ = synthetic(n=6, seed=1)
    y_test = np.array([2, 9, 2, 9, 5, 5])
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=y, X_test=X_test, y_test=y_test,
             subjects=np.arange(12) % 4, subjects_test=np.array(["a", "b"] * 3))
    ds = load_dataset(p)
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.X_test, X_test)
    assert ds.class_names == ("2", "5", "9")
    assert ds.y.tolist() == [1, 0, 2] * 4
    assert ds.y_test.tolist() == [0, 2, 0, 2, 1, 1]
    assert ds.subjects.tolist() == [str(i % 4) for i in range(12)]
    assert ds.subjects_test.tolist() == ["a", "b"] * 3
    assert ds.source == str(p)


def test_npz_string_labels_and_2d_int_X(tmp_path):
    X = np.arange(6 * 5, dtype=np.int16).reshape(6, 5)
    y = np.array(["walk", "run", "sit", "walk", "run", "sit"])
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=y)
    ds = load_npz(p)
    assert ds.X.shape == (6, 1, 5) and ds.X.dtype == np.float32
    np.testing.assert_array_equal(ds.X[:, 0, :], X.astype(np.float32))
    assert ds.class_names == ("run", "sit", "walk")
    assert ds.y.tolist() == [2, 0, 1, 2, 0, 1]
    assert ds.X_test is None and ds.y_test is None and ds.subjects is None


def test_npz_integral_float_labels(tmp_path):
    X, _ = synthetic(n=4)
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=np.array([1.0, 0.0, 1.0, 3.0]))
    ds = load_npz(p)
    assert ds.class_names == ("0", "1", "3")
    assert ds.y.tolist() == [1, 0, 1, 2]


def test_ts_roundtrip_with_test_sibling(tmp_path):
    X, y = synthetic(n=9, c=2, t=7)
    names = np.array(["walk", "run", "sit"])[y]
    X_test, y_t = synthetic(n=6, c=2, t=7, seed=3)
    train = write_ts(tmp_path / "Toy_TRAIN.ts", X, names, declared=["sit", "walk", "run"])
    write_ts(tmp_path / "Toy_TEST.ts", X_test, np.array(["walk", "run", "sit"])[y_t],
             declared=["walk", "run", "sit"])
    ds = load_dataset(train)
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.X_test, X_test)
    assert ds.class_names == ("sit", "walk", "run")  # declared order, not sorted
    order = {"sit": 0, "walk": 1, "run": 2}
    assert ds.y.tolist() == [order[n] for n in names]
    assert ds.y_test.tolist() == [order[n] for n in np.array(["walk", "run", "sit"])[y_t]]


def test_a_test_sibling_is_announced_once_per_process(tmp_path, caplog):
    """A search loads its data in every stage: the sibling is said once, not once per stage."""
    import logging

    X, y = synthetic(n=6, c=1, t=5)
    train = write_ts(tmp_path / "Once_TRAIN.ts", X, [str(v) for v in y], declared=["0", "1", "2"])
    write_ts(tmp_path / "Once_TEST.ts", X, [str(v) for v in y], declared=["0", "1", "2"])
    with caplog.at_level(logging.INFO, logger="micronas.data.loaders"):
        for _ in range(3):
            assert load_dataset(train).X_test is not None
    assert caplog.text.count("loading Once_TEST.ts as its test set") == 1


def test_ts_single_file_has_no_test_set(tmp_path):
    X, y = synthetic(n=6, c=1, t=5)
    p = write_ts(tmp_path / "plain.ts", X, [str(v) for v in y], declared=["0", "1", "2"])
    ds = load_ts(p)
    assert ds.X_test is None and ds.y_test is None
    np.testing.assert_array_equal(ds.X, X)
    assert ds.class_names == ("0", "1", "2")
    # a _TRAIN.ts without a sibling is a plain pool too
    q = write_ts(tmp_path / "Alone_TRAIN.ts", X, [str(v) for v in y], declared=["0", "1", "2"])
    assert load_ts(q).X_test is None


def test_ts_header_case_insensitive(tmp_path):
    X, y = synthetic(n=4, c=1, t=3, k=2)
    text = ("@PROBLEMNAME x\n@TIMESTAMPS FALSE\n@CLASSLABEL TRUE a b\n@DATA\n"
            + "\n".join(",".join(repr(float(v)) for v in x[0]) + f":{'ab'[lab]}"
                        for x, lab in zip(X, y)) + "\n")
    p = tmp_path / "upper.ts"
    p.write_text(text)
    ds = load_ts(p)
    np.testing.assert_array_equal(ds.X, X)
    assert ds.class_names == ("a", "b")


def test_csv_roundtrip_with_subjects_and_split(tmp_path):
    X, y = synthetic(n=10, c=2, t=4, k=2)
    labels = np.array(["idle", "shake"])[y]
    subjects = [f"s{i // 3}" for i in range(10)]
    splits = ["train"] * 7 + ["test"] * 3
    p = write_csv(tmp_path / "log.csv", X, labels, subjects, splits)
    ds = load_dataset(p)
    np.testing.assert_array_equal(ds.X, X[:7])
    np.testing.assert_array_equal(ds.X_test, X[7:])
    assert ds.class_names == ("idle", "shake")
    assert ds.y.tolist() == y[:7].tolist() and ds.y_test.tolist() == y[7:].tolist()
    assert ds.subjects.tolist() == subjects[:7]
    assert ds.subjects_test.tolist() == subjects[7:]


def test_csv_integer_labels_without_optional_columns(tmp_path):
    X, y = synthetic(n=6, c=3, t=2)
    labels = np.array(["10", "2", "7"])[y]
    p = write_csv(tmp_path / "ints.csv", X, labels)
    ds = load_csv(p)
    assert ds.class_names == ("2", "7", "10")  # numeric order, not string order
    assert ds.y.tolist() == [2, 0, 1, 2, 0, 1]
    assert ds.X_test is None and ds.subjects is None
    np.testing.assert_array_equal(ds.X, X)


def test_loaders_registry():
    assert set(LOADERS) == {".npz", ".ts", ".csv"}
    assert "window" in CSV_LAYOUT_HELP and "label" in CSV_LAYOUT_HELP


# ---------------------------------------------------------------------------------------------
# bad data: every case raises DataError (exit code 2) naming the file
# ---------------------------------------------------------------------------------------------


def _npz(tmp_path: Path, name: str = "bad.npz", **arrays) -> Path:
    p = tmp_path / name
    with p.open("wb") as fh:
        np.savez(fh, **arrays)
    return p


def _ts_text(tmp_path: Path, body: str, name: str = "bad.ts") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


TS_HEAD = "@problemName t\n@timeStamps false\n@classLabel true a b\n@data\n"
X4, Y4 = synthetic(n=4, c=2, t=3, k=2)


def _nan_X() -> np.ndarray:
    X = X4.copy()
    X[1, 0, 2] = np.nan
    return X


def _inf_X() -> np.ndarray:
    X = X4.copy()
    X[2, 1, 0] = np.inf
    return X


def _csv_rows(tmp_path: Path, rows: list[str], name: str = "bad.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(rows) + "\n")
    return p


BAD_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    # name: (make the file, a phrase the message must contain)
    "nan_npz": (lambda d: _npz(d, X=_nan_X(), y=Y4), "NaN"),
    "inf_npz": (lambda d: _npz(d, X=_inf_X(), y=Y4), "NaN/inf"),
    "nan_ts_question_mark": (lambda d: _ts_text(d, TS_HEAD + "1,?,3:4,5,6:a\n1,2,3:4,5,6:b\n"),
                             "line 5"),
    "nan_ts_word": (lambda d: _ts_text(d, TS_HEAD + "1,2,3:4,5,6:a\n1,2,NaN:4,5,6:b\n"),
                    "line 6"),
    "nan_csv": (lambda d: _csv_rows(d, ["window,label,x", "w0,a,1", "w0,a,nan", "w1,b,2",
                                        "w1,b,3"]), "NaN"),
    "inf_csv": (lambda d: _csv_rows(d, ["window,label,x", "w0,a,1", "w0,a,2", "w1,b,inf",
                                        "w1,b,3"]), "NaN/inf"),
    "nan_in_test_set": (lambda d: _npz(d, X=X4, y=Y4, X_test=_nan_X(), y_test=Y4), "X_test"),
    "ragged_ts_channels": (lambda d: _ts_text(d, TS_HEAD + "1,2,3:4,5:a\n1,2,3:4,5,6:b\n"),
                           "ragged"),
    "ragged_ts_series": (lambda d: _ts_text(d, TS_HEAD + "1,2,3:4,5,6:a\n1,2:4,5:b\n"),
                         "line 6"),
    "ragged_csv": (lambda d: _csv_rows(d, ["window,label,x", "w0,a,1", "w0,a,2", "w1,b,3"]),
                   "'w1'"),
    "one_class_npz": (lambda d: _npz(d, X=X4, y=np.zeros(4, int)), "only one class"),
    "one_class_ts": (lambda d: _ts_text(d, TS_HEAD + "1,2:3,4:a\n5,6:7,8:a\n"),
                     "only one class"),
    "one_class_csv": (lambda d: _csv_rows(d, ["window,label,x", "w0,a,1", "w1,a,2"]),
                      "only one class"),
    "fewer_windows_than_classes": (
        lambda d: _ts_text(d, "@classLabel true a b c\n@data\n1,2:a\n3,4:b\n"),
        "fewer windows than classes"),
    "labels_missing_npz": (lambda d: _npz(d, X=X4), "labels missing"),
    "labels_missing_ts_false": (lambda d: _ts_text(d, "@classLabel false\n@data\n1,2:3\n"),
                                "labels missing"),
    "labels_missing_ts_absent": (lambda d: _ts_text(d, "@problemName p\n@data\n1,2\n"),
                                 "labels missing"),
    "missing_X_npz": (lambda d: _npz(d, y=Y4), "no array 'X'"),
    "wrong_dtype_complex": (lambda d: _npz(d, X=X4.astype(np.complex64), y=Y4), "complex64"),
    "wrong_dtype_bool": (lambda d: _npz(d, X=X4 > 0, y=Y4), "bool"),
    "wrong_dtype_str": (lambda d: _npz(d, X=X4.astype(str), y=Y4), "wrong dtype"),
    "wrong_dtype_object": (lambda d: _npz(d, X=np.array([[[1.0]], "x"], dtype=object), y=Y4[:2]),
                           "object"),
    "wrong_dtype_float_labels": (lambda d: _npz(d, X=X4, y=np.array([0.5, 1, 0, 1])),
                                 "wrong dtype"),
    "bad_rank_X": (lambda d: _npz(d, X=np.zeros(4), y=Y4), "expected (N, C, T)"),
    "no_windows_npz": (lambda d: _npz(d, X=np.zeros((0, 2, 3)), y=np.zeros(0, int)), "empty"),
    "inf_ts": (lambda d: _ts_text(d, TS_HEAD + "1,2:3,4:a\n1,inf:3,4:b\n"), "line 6"),
    "zero_length": (lambda d: _npz(d, X=np.zeros((4, 2, 0)), y=Y4), "length T = 0"),
    "zero_channels": (lambda d: _npz(d, X=np.zeros((4, 0, 3)), y=Y4), "no channels"),
    "label_count_mismatch": (lambda d: _npz(d, X=X4, y=np.array([0, 1, 0])), "3 labels"),
    "subject_count_mismatch": (lambda d: _npz(d, X=X4, y=Y4, subjects=np.arange(3)),
                               "3 subject ids"),
    "x_test_without_y_test": (lambda d: _npz(d, X=X4, y=Y4, X_test=X4), "no 'y_test'"),
    "unknown_test_labels": (lambda d: _npz(d, X=X4, y=Y4, X_test=X4, y_test=np.array([0, 7, 1, 8])),
                            "'7', '8'"),
    "empty_npz": (lambda d: _ts_text(d, "", "empty.npz"), "empty"),
    "empty_ts": (lambda d: _ts_text(d, "", "empty.ts"), "empty"),
    "empty_csv": (lambda d: _ts_text(d, "", "empty.csv"), "empty"),
    "comments_only_ts": (lambda d: _ts_text(d, "# nothing\n# here\n"), "empty"),
    "no_data_section_ts": (lambda d: _ts_text(d, "@problemName p\n@classLabel true a b\n"),
                           "no '@data'"),
    "no_data_lines_ts": (lambda d: _ts_text(d, TS_HEAD), "no data lines"),
    "header_only_csv": (lambda d: _csv_rows(d, ["window,label,x,y"]), "empty"),
    "csv_renamed_npz": (lambda d: _csv_rows(d, ["window,label,x", "w0,a,1"], "fake.npz"),
                        "not a valid .npz"),
    "npy_renamed_npz": (lambda d: _npy_as(d, "fake.npz"), "not a valid .npz"),
    "npz_renamed_ts": (lambda d: _npz(d, "fake.ts", X=X4, y=Y4), "not a UEA .ts"),
    "csv_renamed_ts": (lambda d: _csv_rows(d, ["window,label,x", "w0,a,1"], "fake.ts"),
                       "not a UEA .ts"),
    "binary_renamed_csv": (lambda d: _bytes(d, "fake.csv", bytes(range(256)) * 4),
                           "not a CSV"),
    "npz_renamed_csv": (lambda d: _npz(d, "fake.csv", X=X4, y=Y4), "not a CSV"),
    "latin1_csv": (lambda d: _bytes(d, "latin.csv", "window,label,caf\xe9\n".encode("latin-1")),
                   "not a CSV"),
    "unknown_suffix": (lambda d: _bytes(d, "data.parquet", b"PAR1"), "unsupported"),
    "no_suffix": (lambda d: _bytes(d, "data", b"x"), "unsupported"),
    "missing_file": (lambda d: d / "nope.npz", "not found"),
    "directory": (lambda d: _mkdir(d / "adir.csv"), "directory"),
    "timestamps_true": (lambda d: _ts_text(d, "@timeStamps true\n@classLabel true a b\n@data\n"),
                        "timeStamps"),
    "ts_undeclared_label": (lambda d: _ts_text(d, TS_HEAD + "1,2:3,4:a\n1,2:3,4:zz\n"), "'zz'"),
    "ts_non_numeric": (lambda d: _ts_text(d, TS_HEAD + "1,x:3,4:a\n"), "non-numeric"),
    "ts_dimensions_mismatch": (lambda d: _ts_text(d, "@dimensions 3\n" + TS_HEAD +
                                                  "1,2:3,4:a\n"), "@dimensions"),
    "ts_regression": (lambda d: _ts_text(d, "@targetLabel true\n@data\n1,2:0.5\n"),
                      "regression"),
    "csv_missing_window_column": (lambda d: _csv_rows(d, ["id,label,x", "w0,a,1"]),
                                  "'window'"),
    "csv_non_numeric": (lambda d: _csv_rows(d, ["window,label,x,y", "w0,a,1,2", "w0,a,1,oops"]),
                        "line 3, column 'y'"),
    "csv_label_changes": (lambda d: _csv_rows(d, ["window,label,x", "w0,a,1", "w0,b,2",
                                                  "w1,b,1", "w1,b,2"]), "changes its label"),
    "csv_split_changes": (lambda d: _csv_rows(d, ["window,label,split,x", "w0,a,train,1",
                                                  "w0,a,test,2"]), "changes its split"),
    "csv_bad_split_value": (lambda d: _csv_rows(d, ["window,label,split,x", "w0,a,dev,1"]),
                            "'dev'"),
    "csv_non_contiguous": (lambda d: _csv_rows(d, ["window,label,x", "w0,a,1", "w1,b,1",
                                                   "w0,a,2"]), "two separate blocks"),
    "csv_no_channels": (lambda d: _csv_rows(d, ["window,label", "w0,a"]), "no sensor channel"),
    "csv_short_row": (lambda d: _csv_rows(d, ["window,label,x,y", "w0,a,1"]), "line 2"),
    "csv_all_test": (lambda d: _csv_rows(d, ["window,label,split,x", "w0,a,test,1",
                                             "w1,b,test,1"]), "no training data"),
}


def _npy_as(d: Path, name: str) -> Path:
    p = d / name
    with p.open("wb") as fh:
        np.save(fh, X4)
    return p


def _bytes(d: Path, name: str, data: bytes) -> Path:
    p = d / name
    p.write_bytes(data)
    return p


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_raises(tmp_path, case):
    make, phrase = BAD_CASES[case]
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    err = info.value
    assert err.exit_code == 2
    text = str(err)
    assert path.name in text
    assert phrase in text
    assert err.hint  # every data error says what to do


def test_bad_test_sibling_names_the_test_file(tmp_path):
    X, y = synthetic(n=4, c=1, t=3, k=2)
    train = write_ts(tmp_path / "P_TRAIN.ts", X, ["a", "b", "a", "b"])
    write_ts(tmp_path / "P_TEST.ts", X, ["a", "c", "a", "c"])
    with pytest.raises(DataError) as info:
        load_dataset(train)
    assert "P_TEST.ts" in str(info.value) and "'c'" in str(info.value)


def test_direct_loaders_also_report_missing_file(tmp_path):
    for loader, name in ((load_npz, "a.npz"), (load_ts, "a.ts"), (load_csv, "a.csv")):
        with pytest.raises(DataError, match=name):
            loader(tmp_path / name)


# ---------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------


def _dataset(y, subjects=None, with_test=False, c=2, t=3) -> Dataset:
    y = np.asarray(y, dtype=np.int64)
    X = np.random.default_rng(0).normal(size=(y.size, c, t)).astype(np.float32)
    k = int(y.max()) + 1
    return Dataset(
        X=X, y=y, class_names=tuple(str(i) for i in range(k)),
        X_test=X[:3].copy() if with_test else None, y_test=y[:3].copy() if with_test else None,
        subjects=None if subjects is None else np.asarray(subjects, dtype=str), source="mem",
    )


def test_stratified_split_exact_sizes():
    y = [0] * 10 + [1] * 5 + [2] * 2
    ds = _dataset(y)
    s = make_split(ds, seed=3, val_fraction=0.2, test_fraction=0.2)
    assert not s.by_subject and not s.test_from_file
    ys = np.asarray(y)
    assert np.bincount(ys[s.val], minlength=3).tolist() == [2, 1, 1]
    assert np.bincount(ys[s.test], minlength=3).tolist() == [2, 1, 0]
    assert np.bincount(ys[s.train], minlength=3).tolist() == [6, 3, 1]
    allidx = np.concatenate([s.train, s.val, s.test])
    assert sorted(allidx.tolist()) == list(range(17))
    for part in (s.train, s.val, s.test):
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)


def test_stratified_split_deterministic():
    ds = _dataset([0, 1] * 20)
    assert make_split(ds, seed=7) == make_split(ds, seed=7)
    assert make_split(ds, seed=7) != make_split(ds, seed=8)


def test_stratified_split_with_test_file():
    ds = _dataset([0, 1, 2] * 5, with_test=True)
    s = make_split(ds, seed=0, val_fraction=0.4)
    assert s.test_from_file
    assert s.test.tolist() == [0, 1, 2]
    assert np.bincount(ds.y[s.val]).tolist() == [2, 2, 2]
    assert len(s.train) == 9


def test_subject_split_no_overlap_and_deterministic():
    rng = np.random.default_rng(1)
    subjects = np.repeat([f"p{i}" for i in range(10)], rng.integers(3, 9, size=10))
    y = np.arange(subjects.size) % 3
    ds = _dataset(y, subjects)
    s = make_split(ds, seed=0)
    assert s.by_subject
    parts = [set(subjects[p]) for p in (s.train, s.val, s.test)]
    assert all(parts)  # at least one subject each
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(subjects.size))
    n = subjects.size
    assert abs(len(s.val) - 0.2 * n) <= 8 and abs(len(s.test) - 0.2 * n) <= 8
    assert make_split(ds, seed=0) == s
    assert any(make_split(ds, seed=k) != s for k in range(1, 6))


def test_subject_split_with_test_file_only_carves_val():
    subjects = np.repeat(["a", "b", "c", "d"], 5)
    ds = _dataset(np.arange(20) % 2, subjects, with_test=True)
    s = make_split(ds, seed=2, val_fraction=0.25)
    assert s.by_subject and s.test_from_file
    assert set(subjects[s.val]).isdisjoint(subjects[s.train])
    assert len(s.val) == 5  # exactly one subject = 25 %


def test_named_validation_subjects():
    subjects = np.repeat(["1", "2", "3", "4", "5", "6"], [4, 5, 6, 3, 4, 5])
    y = np.arange(subjects.size) % 2
    # the file has its own test set: val is exactly subject 3, train all the others
    s = make_split(_dataset(y, subjects, with_test=True), seed=4, val_subjects=["3"])
    assert s.by_subject and s.test_from_file
    assert s.val.tolist() == np.flatnonzero(subjects == "3").tolist()
    assert s.train.tolist() == np.flatnonzero(subjects != "3").tolist()
    # no test set in the file: test is carved by subject from the others, never from val
    ds = _dataset(y, subjects)
    s = make_split(ds, seed=4, val_subjects=("3", "5"))
    assert set(subjects[s.val]) == {"3", "5"}
    assert set(subjects[s.test]).isdisjoint({"3", "5"}) and set(subjects[s.test]).isdisjoint(subjects[s.train])
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(subjects.size))
    assert make_split(ds, seed=4, val_subjects=("3", "5")) == s


def test_named_validation_subjects_errors():
    subjects = np.repeat(["a", "b", "c"], 4)
    ds = _dataset(np.arange(12) % 2, subjects, with_test=True)
    with pytest.raises(DataError, match="'z'") as e:
        make_split(ds, val_subjects=["z"])
    assert "a, b, c" in e.value.hint
    with pytest.raises(DataError, match="every subject"):
        make_split(ds, val_subjects=["a", "b", "c"])
    with pytest.raises(UsageError, match="no subject ids"):
        make_split(_dataset(np.arange(12) % 2), val_subjects=["a"])


def test_subject_split_falls_back_with_too_few_subjects(caplog):
    ds = _dataset([0, 1] * 6, subjects=["a"] * 6 + ["b"] * 6)  # 2 subjects, need 3
    with caplog.at_level(logging.WARNING, logger="micronas.data.split"):
        s = make_split(ds, seed=0)
    assert not s.by_subject
    assert "falling back" in caplog.text


def test_split_raises_when_class_has_no_training_window():
    # class 1 only occurs for subject "b"; whenever "b" goes to val, class 1 has no train data
    subjects = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    y = [0] * 4 + [1, 0, 1, 0] + [0] * 4
    ds = _dataset(y, subjects, with_test=True)
    raised = 0
    for seed in range(20):
        try:
            s = make_split(ds, seed=seed)
        except DataError as exc:
            raised += 1
            assert "'1'" in str(exc) and exc.exit_code == 2
        else:
            assert 1 in ds.y[s.train]
    assert raised > 0


def test_split_json_roundtrip():
    ds = _dataset([0, 1, 2] * 6)
    s = make_split(ds, seed=5)
    d = json.loads(json.dumps(s.to_json()))
    back = Split.from_json(d)
    assert back == s
    assert back.train.dtype == np.int64
    with pytest.raises(ConfigError):
        Split.from_json({"train": [1, 0]})


def test_split_bad_fractions():
    ds = _dataset([0, 1] * 5)
    with pytest.raises(UsageError):
        make_split(ds, val_fraction=0.0)
    with pytest.raises(UsageError):
        make_split(ds, val_fraction=0.6, test_fraction=0.5)


def test_arrays_for_pool_test_and_mismatch():
    ds = _dataset([0, 1, 2] * 5)
    s = make_split(ds, seed=0)
    a = arrays_for(ds, s)
    for part in ("train", "val", "test"):
        idx = getattr(s, part)
        np.testing.assert_array_equal(a[part][0], ds.X[idx])
        np.testing.assert_array_equal(a[part][1], ds.y[idx])
    small = _dataset([0, 1])
    with pytest.raises(ConfigError):
        arrays_for(small, s)


# ---------------------------------------------------------------------------------------------
# standardisation
# ---------------------------------------------------------------------------------------------


def test_standardizer_zero_mean_unit_std():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(20, 3, 50)) * [[5.0], [0.01], [100.0]] + [[3.0], [-2.0], [1e3]])
    X = X.astype(np.float32)
    st = Standardizer.fit(X, clip_percent=None)  # the clip (below) moves the moments by ~1e-4
    assert st.mean.dtype == np.float32 and st.std.dtype == np.float32 and st.clip is None
    Z = st.apply(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    # the float32 mean is within half an ulp of the float64 one; divided by a small std
    # (channel 1: |mean| 2, std 0.01) that leaves a residual of ~1e-5
    np.testing.assert_allclose(Z.mean(axis=(0, 2), dtype=np.float64), 0.0, atol=5e-5)
    np.testing.assert_allclose(Z.std(axis=(0, 2), dtype=np.float64), 1.0, atol=1e-5)


def test_standardizer_constant_data_has_no_clip():
    st = Standardizer.fit(np.full((3, 2, 5), 4.0, np.float32))
    assert st.clip is None and Standardizer.from_json(json.loads(json.dumps(st.to_json()))) == st
    assert np.all(st.apply(np.full((1, 2, 5), 9.0, np.float32)) == 5.0)


def test_standardizer_constant_channel():
    X = np.random.default_rng(0).normal(size=(5, 3, 7)).astype(np.float32)
    X[:, 1, :] = 0.1  # constant, not exactly representable: float64 std is rounding noise
    X[:, 2, :] = 0.0
    st = Standardizer.fit(X)
    assert st.std[1] == 1.0 and st.std[2] == 1.0
    Z = st.apply(X)
    assert np.all(Z[:, 1, :] == 0.0) and np.all(Z[:, 2, :] == 0.0)
    assert np.all(np.isfinite(Z))


def test_standardizer_json_roundtrip_exact():
    X = np.random.default_rng(3).normal(size=(8, 4, 9)).astype(np.float32) * 7.3
    st = Standardizer.fit(X)
    back = Standardizer.from_json(json.loads(json.dumps(st.to_json())))
    assert back == st
    np.testing.assert_array_equal(back.mean, st.mean)
    np.testing.assert_array_equal(back.std, st.std)
    assert back.mean.dtype == np.float32
    np.testing.assert_array_equal(back.apply(X), st.apply(X))
    with pytest.raises(ConfigError):
        Standardizer.from_json({"mean": [0.0], "std": [0.0]})


def test_standardizer_clips_a_spike_that_would_set_the_int8_input_range():
    """One sample at -30 standard deviations no longer sets the int8 input's range: the clip is
    the 0.01st / 99.99th percentile of the standardised training values, so the input step the
    converter derives from them is several times finer, and only that share of values changes."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3, 128)).astype(np.float32)
    X[7, 2, 30] = -30.0
    st = Standardizer.fit(X)
    plain = Standardizer.fit(X, clip_percent=None)
    Z, Z0 = st.apply(X), plain.apply(X)
    low, high = st.clip
    assert (low, high) == tuple(float(np.float32(v)) for v in np.percentile(Z0, [0.01, 99.99]))
    assert Z.min() == np.float32(low) and Z.max() == np.float32(high)
    assert -5.0 < low < -3.0 and 3.0 < high < 5.0
    assert (Z0.max() - Z0.min()) / (high - low) > 4  # the step min/max calibration would take, over the clipped one
    changed = int(np.sum(Z != Z0))  # 0.01 % at each end, the percentile's interpolation one more
    assert 0 < changed <= 2 * (math.ceil(Z.size * 0.0001) + 1)
    np.testing.assert_array_equal(Z, np.clip(Z0, np.float32(low), np.float32(high)))
    # new windows outside the training range saturate at the same bounds (what the int8 input does)
    far = st.apply(np.full((1, 3, 128), 1e3, np.float32))
    assert np.all(far == np.float32(high))


def test_standardizer_clip_json_exact_and_older_runs_without_it():
    X = np.random.default_rng(4).standard_t(3, size=(16, 2, 64)).astype(np.float32)
    st = Standardizer.fit(X)
    d = json.loads(json.dumps(st.to_json()))
    assert d["clip"] == [st.clip[0], st.clip[1]]
    back = Standardizer.from_json(d)
    assert back == st and back.clip == st.clip
    np.testing.assert_array_equal(back.apply(X), st.apply(X))
    # normalization.json of a run made before the clip: standardised as before, never clipped
    old = Standardizer.from_json({"mean": d["mean"], "std": d["std"]})
    assert old.clip is None and old != st
    np.testing.assert_array_equal(old.apply(X), Standardizer.fit(X, clip_percent=None).apply(X))
    for bad in ([1.0, -1.0], [0.0, float("inf")], ["a", 1.0], [1.0], 3.0):
        with pytest.raises(ConfigError, match="clip"):
            Standardizer.from_json({**d, "clip": bad})


def test_standardizer_removes_each_windows_mean_when_asked():
    """With remove_window_mean, a window and the same window shifted by a per-channel constant
    (the sensor tilted: gravity on other axes) standardise to the same values; the statistics are
    those of the mean-free windows; JSON round trip; files from before the option keep the mean."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(20, 3, 50)).astype(np.float32)
    offset = np.array([9.8, -4.0, 0.5], np.float32)[None, :, None]
    st = Standardizer.fit(np.concatenate([X, X + offset]), remove_window_mean=True)
    assert st.remove_window_mean
    np.testing.assert_allclose(st.apply(X), st.apply(X + offset), atol=2e-6)
    free = X - X.mean(axis=2, keepdims=True)
    np.testing.assert_allclose(st.mean, 0.0, atol=1e-6)
    np.testing.assert_allclose(st.std, free.std(axis=(0, 2)), rtol=1e-4)
    z = st.apply(X[:1])
    expected = ((X[:1] - X[:1].astype(np.float64).mean(axis=2, keepdims=True).astype(np.float32))
                - st.mean[:, None]) / st.std[:, None]
    np.testing.assert_array_equal(z, np.clip(expected, np.float32(st.clip[0]), np.float32(st.clip[1])))
    kept = Standardizer.fit(np.concatenate([X, X + offset]))
    assert not kept.remove_window_mean and np.abs(kept.apply(X) - kept.apply(X + offset)).max() > 0.1
    d = json.loads(json.dumps(st.to_json()))
    assert d["remove_window_mean"] is True and "remove_window_mean" not in kept.to_json()
    back = Standardizer.from_json(d)
    assert back == st and back != Standardizer.from_json({**d, "remove_window_mean": False})
    assert Standardizer.from_json({k: v for k, v in d.items() if k != "remove_window_mean"}).remove_window_mean is False
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match="remove_window_mean"):
            Standardizer.from_json({**d, "remove_window_mean": bad})


def test_standardizer_rejects_wrong_shape():
    st = Standardizer.fit(np.ones((2, 3, 4), np.float32))
    with pytest.raises(DataError):
        st.apply(np.ones((2, 2, 4), np.float32))
    with pytest.raises(DataError):
        Standardizer.fit(np.ones((3, 4), np.float32))


def test_npz_member_that_inflates_past_the_cap_is_refused_before_loading(tmp_path, monkeypatch):
    """A small compressed file whose member inflates far beyond it: refused from the archive's
    directory, naming the sizes, before anything is inflated."""
    from micronas.data import loaders

    p = tmp_path / "bomb.npz"
    np.savez_compressed(p, X=np.zeros((2048, 4, 64), np.float32), y=np.arange(2048) % 2)  # 2 MiB of zeros
    assert p.stat().st_size < 20_000
    monkeypatch.setattr(loaders, "MAX_NPZ_MEMBER_BYTES", 1 << 20)  # 1 MiB here; 1 GiB as shipped
    inflated = []
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, k: inflated.append(k))
    with pytest.raises(DataError) as e:
        load_dataset(str(p))
    assert "array 'X' inflates to 2,097,280 bytes" in e.value.message and "at most 1 MiB per array" in e.value.message
    assert "built to inflate" in e.value.hint and inflated == []
    monkeypatch.setattr(loaders, "_available_memory", lambda: 3 << 20)  # 3 MiB free: half is below the 4 MiB cap
    monkeypatch.setattr(loaders, "MAX_NPZ_MEMBER_BYTES", 4 << 20)
    with pytest.raises(DataError, match=r"half the memory available now \(3,145,728 bytes\) is 1,572,864"):
        load_dataset(str(p))

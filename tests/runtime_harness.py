"""Compare the generated C runtime with TFLM (bit-exact) and LiteRT (within 1 LSB)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_INPUTS = 1000  # random windows per model (the floor)
N_SANITIZE = 48  # windows through the ASan/UBSan build


@dataclass
class Comparison:
    windows: int
    tflm_exact_rate: float
    litert_exact_rate: float
    litert_max_lsb: int
    arena_bytes: int
    naive_bytes: int


def random_inputs(shape, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n, *shape), dtype=np.int64).astype(np.int8)
    x[0], x[1] = -128, 127  # saturating corners
    return x


def compare(model: bytes, n: int = N_INPUTS, seed: int = 0, sanitize: bool = True) -> Comparison:
    from firmware_export import codegen, hostbuild, verify
    from firmware_export.tflite_graph import read

    g = read(model)
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    x = random_inputs(tin.shape[1:], n, seed)
    ref = verify.run_tflm(model, x).reshape(n, -1)
    with tempfile.TemporaryDirectory(prefix="mn-op-") as td:
        path = Path(td) / "m.tflite"
        path.write_bytes(model)
        lite = verify.run_litert(path, x).reshape(n, -1)
        ch = tin.shape[-1]
        gen = codegen.generate(model, labels=tuple(str(i) for i in range(max(1, tout.shape[-1]))),
                               input_mean=(0.0,) * ch, input_std=(1.0,) * ch)
        c_dir = Path(td) / "c"
        codegen.write(gen, c_dir)
        out = hostbuild.build_and_run(c_dir, x, tout.nbytes)
        if sanitize:
            san = hostbuild.build_and_run(c_dir, x[:N_SANITIZE], tout.nbytes, sanitize=True)
            np.testing.assert_array_equal(san, out[:N_SANITIZE], err_msg="sanitizer build differs")
    mismatch = np.flatnonzero((out != ref).any(axis=1))
    if len(mismatch):
        i = mismatch[0]
        diff = np.abs(out[i].astype(int) - ref[i].astype(int))
        raise AssertionError(f"{len(mismatch)}/{n} windows differ from TFLM; first: window {i}, "
                             f"max diff {diff.max()} at {int(diff.argmax())}: runtime {out[i][:16]} tflm {ref[i][:16]}")
    d = np.abs(out.astype(int) - lite.astype(int))
    return Comparison(n, 1.0, float(np.mean(d.max(axis=1) == 0)), int(d.max()), gen.arena_bytes,
                      gen.arena_naive_bytes)

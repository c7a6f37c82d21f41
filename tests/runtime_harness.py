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


def random_float_inputs(shape, n: int, seed: int, scale: float, zero_point: int) -> np.ndarray:
    """float32 windows for a QUANTIZE of (scale, zero_point): the int8 range and beyond it (clamping),
    a quarter exactly halfway between two steps (the rounding of ties), and far beyond it (but inside
    int32 after division by the scale: TFLM's float -> int32 cast beyond it is undefined behaviour,
    which x86 and Arm resolve differently)."""
    rng = np.random.default_rng(seed)
    lo, hi = (-128 - zero_point) * scale, (127 - zero_point) * scale
    span = hi - lo
    x = rng.uniform(lo - 0.1 * span, hi + 0.1 * span, size=(n, *shape)).astype(np.float32)
    ties = rng.integers(-140, 140, size=(n, *shape)) + 0.5
    pick = rng.random(size=(n, *shape)) < 0.25
    x[pick] = (ties[pick] * np.float64(np.float32(scale))).astype(np.float32)
    x[0], x[1] = np.float32(lo - 1000 * span), np.float32(hi + 1000 * span)
    return x


def compare(model: bytes, n: int = N_INPUTS, seed: int = 0, sanitize: bool = True) -> Comparison:
    from firmware_export import codegen, hostbuild, verify
    from firmware_export.codegen.plan import split_float_edges
    from firmware_export.tflite_graph import read

    g = read(model)
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    _, fin, fout = split_float_edges(g)
    float_api = fin is not None or fout is not None
    if fin is not None:
        x = random_float_inputs(tin.shape[1:], n, seed, fin.scale, fin.zero_point)
    else:
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
        n_out = int(np.prod(tout.shape, dtype=np.int64))
        out = hostbuild.build_and_run(c_dir, x, n_out, float_api=float_api, output_dtype=tout.dtype)
        if sanitize:
            san = hostbuild.build_and_run(c_dir, x[:N_SANITIZE], n_out, sanitize=True, float_api=float_api,
                                          output_dtype=tout.dtype)
            np.testing.assert_array_equal(san, out[:N_SANITIZE], err_msg="sanitizer build differs")
    if fout is not None:  # bit for bit: compare the float32 encodings; differences in output steps
        out, ref, lite = (np.ascontiguousarray(a, np.float32) for a in (out, ref, lite))
        bits = lambda a: a.view(np.int32)  # noqa: E731
        mismatch = np.flatnonzero((bits(out) != bits(ref)).any(axis=1))
        if len(mismatch):
            raise AssertionError(f"{len(mismatch)}/{n} windows differ from TFLM; first: window {mismatch[0]}: "
                                 f"runtime {out[mismatch[0]][:8]} tflm {ref[mismatch[0]][:8]}")
        d = np.rint(np.abs(out.astype(np.float64) - lite) / np.float32(fout.scale)).astype(int)
        return Comparison(n, 1.0, float(np.mean(d.max(axis=1) == 0)), int(d.max()), gen.arena_bytes,
                          gen.arena_naive_bytes)
    mismatch = np.flatnonzero((out != ref).any(axis=1))
    if len(mismatch):
        i = mismatch[0]
        diff = np.abs(out[i].astype(int) - ref[i].astype(int))
        raise AssertionError(f"{len(mismatch)}/{n} windows differ from TFLM; first: window {i}, "
                             f"max diff {diff.max()} at {int(diff.argmax())}: runtime {out[i][:16]} tflm {ref[i][:16]}")
    d = np.abs(out.astype(int) - lite.astype(int))
    return Comparison(n, 1.0, float(np.mean(d.max(axis=1) == 0)), int(d.max()), gen.arena_bytes,
                      gen.arena_naive_bytes)

"""The runtime's SIMD (Armv7E-M DSP) kernels, bit-exact with TFLM on the emulated Cortex-M4.

The host tests (test_runtime_ops.py) compile the portable C path; the DSP path only exists on
Arm. Here every CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, AVERAGE_POOL_2D and
MAX_POOL_2D case of the registry's runtime cases, plus shapes aimed at the SIMD code's own
branches (odd channel counts, windows not a multiple of 16 or 4 bytes and longer than the
128-byte unpacked-weight buffer, stride 2 step pairs, depthwise channels not a multiple of 4,
scales outside the fast requantisation form; elementwise rows by a scalar with 1-3 element
tails, saturating outputs; pool channel tails and windows at and past 256 taps), is
generated as a C model, built into the profiling firmware for the emulated nucleo-f446re (QEMU
mps2-an386, simd=True), and 50 random windows (25 for the extra shapes) are run on it and
compared bit for bit with the tflite-micro host interpreter. One firmware build and one QEMU
launch per model, two models at a time. Also on the host: the kernels' one-step requantisation
(mn_rq) and ADD's and MUL's one-SMMLAR form (mn_sc) against TFLM's two rounding steps.
"""

from __future__ import annotations

import os

import importlib
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from .runtime_cases import CASES, NONE, RELU, RELU6, SAME, VALID, _io_quant, _out_scale, conv_model, dwconv_model, \
    fc_model
from .runtime_cases_elementwise import binary_model
from .runtime_cases_pool_shape import pool_model
from .tflite_builder import ModelBuilder, bias_for, per_channel_weights

importlib.import_module("tests.runtime_cases_fused")  # registers the FUSED_CONV_MUL_ADD cases in CASES

BOARD = "nucleo-f446re"
N_WINDOWS = 50  # per registry case
N_WINDOWS_EXTRA = 25  # per SIMD-specific extra case
WORKERS = 2  # an emulated board busy-waits on its UART, so a QEMU run takes a core
OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D",
       "FUSED_CONV_MUL_ADD")
# issue 14's new forms (NEW_FORMS below): 200 windows per case in the suite, 1,000 with
# MICRONAS_QEMU_WINDOWS=1000 (run once for every such case: 0 mismatches; about 4 min a case)
N_WINDOWS_FUSED = int(os.environ.get("MICRONAS_QEMU_WINDOWS", "200"))

needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="needs arm-none-eabi-gcc and qemu-system-arm (apt-get install gcc-arm-none-eabi "
           "libnewlib-arm-none-eabi qemu-system-arm)")

# The kernels' one-step requantisation (mn_internal.h, mn_rq) against TFLM's two rounding steps,
# written out from docs/runtime-semantics.md section 1, for random int32 accumulators (edges
# included), every multiplier class and every shift -33..31 with output offsets -256..256.
RQ_REF_C = r"""
#include <stdio.h>
#include "mn_internal.h"
static uint64_t s = 88172645463325252ull;
static uint32_t rnd(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (uint32_t)s; }
static int32_t srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31));
}
static int32_t rdbpot(int32_t x, int e) {
    int32_t mask = (int32_t)((1LL << e) - 1), rem = x & mask, thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}
static int32_t ref(int32_t x, int32_t m, int32_t shift) {
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    return rdbpot(srdhm((int32_t)((uint32_t)x << left), m), right);
}
/* a multiplier of every class (0, 2^30, INT32_MAX, random normalised); the k-th output offset */
__attribute__((unused)) static int32_t mult_val(void) {
    const uint32_t r = rnd() % 6;
    return r == 0 ? 0 : r == 1 ? (1 << 30) : r == 2 ? INT32_MAX : (int32_t)((1u << 30) | (rnd() & 0x3FFFFFFF));
}
__attribute__((unused)) static int32_t offset_val(int k) { return k < 2 ? (k ? 256 : -256) : (int32_t)(rnd() % 513) - 256; }
"""
RQ_CHECK_C = RQ_REF_C + r"""
static int32_t xval(void) {
    static const int32_t edge[8] = {0, 1, -1, INT32_MIN, INT32_MAX, INT32_MIN + 1, 1 << 30, -(1 << 30)};
    switch (rnd() & 3) {
    case 0: return (int32_t)rnd();
    case 1: return edge[rnd() & 7];
    default: return (int32_t)rnd() >> (rnd() & 31);
    }
}
int main(void) {
    long bad = 0, n = 0;
    for (int32_t shift = -31; shift <= 30; ++shift) {
        for (int k = 0; k < 60; ++k) {
            const int32_t m = mult_val(), z = offset_val(k);
            const mn_rq q = mn_rq_make(m, shift, z);
            for (int j = 0; j < 500; ++j, ++n) {
                const int32_t x = xval();
                if (mn_rq_apply(&q, x) != ref(x, m, shift) + z && bad++ < 5)
                    printf("x=%d m=%d shift=%d z=%d\n", x, m, shift, z);
            }
        }
    }
    printf("%ld checks, %ld mismatches\n", n, bad);
    return bad != 0;
}
"""


def test_fast_requantisation_equals_tflm_double_rounding(tmp_path):
    """Host gcc: mn_rq_apply (fast form for shifts -22..-2, reference form otherwise) gives
    TFLM's MultiplyByQuantizedMultiplier + offset for every accumulator tried."""
    assert _host_run(tmp_path, RQ_CHECK_C) == "1860000 checks, 0 mismatches"


# mn_rq_make_acc: the one-step forms for every scale a trained layer can have: the pre-shifted
# one for TFLM shift -1, 0 and positive (accumulators within the bound it is given), the e >= 2
# one, and with the offset added after the shift for tiny scales (shift -23..-31); every shift
# -31..30, output offsets -256..256, bounds from 0 to INT32_MAX
RQ_ACC_CHECK_C = RQ_REF_C + r"""
int main(void) {
    long bad = 0, n = 0, onestep = 0, scales = 0, pre = 0;
    for (int32_t shift = -31; shift <= 30; ++shift) {
        for (int k = 0; k < 200; ++k) {
            const int32_t m = mult_val(), z = offset_val(k);
            const int32_t xmax = k < 4 ? (k & 1 ? INT32_MAX : 0) : (int32_t)(rnd() >> (1 + rnd() % 31));
            const mn_rq q = mn_rq_make_acc(m, shift, z, xmax, 0); /* bound |bias| + 0 products */
            ++scales;
            onestep += q.sh >= 0;
            pre += q.pre > 0;
            for (int j = 0; j < 300; ++j, ++n) {
                int32_t x = j < 2 ? xmax : (int32_t)(rnd() % ((uint32_t)xmax + 1u));
                if (j == 1 || (j > 1 && (rnd() & 1))) x = -x;
                if (mn_rq_apply(&q, x) != ref(x, m, shift) + z && bad++ < 5)
                    printf("x=%d m=%d shift=%d z=%d pre=%d\n", x, m, shift, z, q.pre);
            }
        }
    }
    printf("%ld checks, %ld mismatches, one-step form for %ld of %ld scales, pre-shifted %ld\n", n, bad, onestep,
           scales, pre);
    return bad != 0;
}
"""


def test_pre_shifted_requantisation_equals_tflm_double_rounding(tmp_path):
    """Host gcc: mn_rq_make_acc gives a one-step form whose result is TFLM's two rounding steps
    + offset for every accumulator within the bound, also for the scales the e >= 2 form leaves
    to the reference (shifts -1, 0 and positive: a small fan-in; -23..-31: channels training left
    almost dead); it refuses (reference form) where the pre-shifted accumulator could overflow."""
    assert _host_run(tmp_path, RQ_ACC_CHECK_C) == (
        "3720000 checks, 0 mismatches, one-step form for 9405 of 12400 scales, pre-shifted 3405")


def _host_run(tmp_path: Path, source: str) -> str:
    """Compile `source` against the runtime with the host gcc, run it: its stdout (exit 0)."""
    import subprocess

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("host gcc not installed")
    runtime = Path(__file__).resolve().parents[1] / "firmware_export" / "runtime"
    (tmp_path / "check.c").write_text(source)
    subprocess.run([gcc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(runtime), "-o",
                    str(tmp_path / "check"), str(tmp_path / "check.c")], check=True)
    run = subprocess.run([str(tmp_path / "check")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout
    return run.stdout.strip()


# ADD's and MUL's requantisation of a doubled value (mn_internal.h, mn_sc: one SMMLAR) against
# TFLM's two rounding steps: every ADD input (x + offset) << 20 for every shift 0..-31 and
# multiplier class, and random values up to ADD's largest sum and MUL's largest product (edges
# included) with output offsets -256..256. mn_sc_make must accept the scales exported models use.
SC_CHECK_C = RQ_REF_C + r"""
static int32_t mval(uint32_t r) {
    return r == 0 ? 0 : r == 1 ? (1 << 30) : r == 2 ? INT32_MAX : (int32_t)((1u << 30) | (rnd() & 0x3FFFFFFF));
}
int main(void) {
    long bad = 0, n = 0, fast = 0, tried = 0;
    static const struct { int32_t m, shift, z, xmax; } typical[] = {
        {1 << 30, 0, 0, 255 << 20}, {1503238554, -1, 0, 255 << 20}, {1131474820, -19, -128, 2 * (255 << 20) + 2},
        {1 << 30, -7, 10, 65025}, {1 << 30, -6, -128, 65025}, {2147483647, 0, 127, 65025}};
    for (unsigned i = 0; i < sizeof typical / sizeof typical[0]; ++i) {
        mn_sc q;
        if (!mn_sc_make(&q, typical[i].m, typical[i].shift, typical[i].z, typical[i].xmax)) {
            printf("refused m=%d shift=%d z=%d\n", typical[i].m, typical[i].shift, typical[i].z);
            return 1;
        }
    }
    for (int32_t shift = -31; shift <= 0; ++shift) {
        for (int k = 0; k < 60; ++k) {
            const int32_t m = mval(rnd() % 6);
            mn_sc q;
            ++tried;
            if (mn_sc_make(&q, m, shift, 0, 255 << 20)) {
                ++fast;
                for (int32_t v = -255; v <= 255; ++v, ++n) {
                    const int32_t x = v * (1 << 20);
                    if (mn_sc_apply(&q, 2 * x) != ref(x, m, shift) && bad++ < 5) printf("x=%d m=%d shift=%d\n", x, m, shift);
                }
            }
            const int32_t z = k < 2 ? (k ? 256 : -256) : (int32_t)(rnd() % 513) - 256;
            const int32_t xmax = k & 1 ? 2 * (255 << 20) + 2 : 65025;
            ++tried;
            if (mn_sc_make(&q, m, shift, z, xmax)) {
                ++fast;
                for (int j = 0; j < 500; ++j, ++n) {
                    const int32_t x = j < 3 ? (j - 1) * xmax : (int32_t)(rnd() % (2u * (uint32_t)xmax + 1)) - xmax;
                    if (mn_sc_apply(&q, 2 * x) != ref(x, m, shift) + z && bad++ < 5)
                        printf("x=%d m=%d shift=%d z=%d\n", x, m, shift, z);
                }
            }
        }
    }
    printf("%ld checks, %ld mismatches, fast form for %ld of %ld scales", n, bad, fast, tried);
    return bad != 0;
}
"""


def test_elementwise_requantisation_equals_tflm_double_rounding(tmp_path):
    """Host gcc: mn_sc_apply (ADD's and MUL's one-SMMLAR requantisation) gives TFLM's
    MultiplyByQuantizedMultiplier + offset wherever mn_sc_make accepts the scale."""
    assert _host_run(tmp_path, SC_CHECK_C) == "1717620 checks, 0 mismatches, fast form for 3393 of 3840 scales"


def conv_scaled(in_len, in_ch, out_ch, kernel, stride, padding, scale_factor, seed, weight_div=1) -> bytes:
    """conv_model with the output scale multiplied by scale_factor: a small factor gives large
    per-channel scales (TFLM shift -1, 0, positive: the pre-shifted one-step form), a large one
    tiny scales (shift below -22: the reference form). weight_div shrinks the int8 weights (same
    scales), so that with inputs near their zero point (INPUT_SPREAD) large scales still give
    outputs inside the int8 range instead of saturated ones."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in, z_in = _io_quant(rng)
    out_len = -(-in_len // stride) if padding == SAME else (in_len - kernel) // stride + 1
    x = b.tensor([1, 1, in_len, in_ch], scale=s_in, zero_point=z_in)
    w, ws = per_channel_weights(rng, (out_ch, 1, kernel, in_ch))
    w = (w.astype(np.int64) // weight_div).astype(np.int8)
    wt = b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(out_ch, int))
    bt = b.tensor([out_ch], np.int32, scale=s_in * ws, zero_point=np.zeros(out_ch, int),
                  data=bias_for(rng, out_ch) // (64 * weight_div))
    y = b.tensor([1, 1, out_len, out_ch], scale=_out_scale(s_in, float(ws.mean()), kernel * in_ch) * scale_factor,
                 zero_point=int(rng.integers(-20, 20)))
    b.op("CONV_2D", [x, wt, bt], [y], padding=padding, strideW=stride, strideH=1, dilationWFactor=1,
         dilationHFactor=1, fusedActivationFunction=NONE)
    return b.build([x], [y])


EXTRA = {
    "CONV_2D": {
        "simd_cin16_odd_out7_k5": lambda: conv_model(40, 16, 7, 5, 1, SAME, seed=21),
        "simd_cin20_k3_s2_n60": lambda: conv_model(33, 20, 6, 3, 2, SAME, act=RELU, seed=22),
        "simd_cin3_k5_n15_relu6": lambda: conv_model(30, 3, 4, 5, 1, SAME, act=RELU6, seed=23),
        "simd_cin30_k5_valid_n150": lambda: conv_model(19, 30, 8, 5, 1, VALID, seed=24),
        # TFLM shifts -2..1 (the pre-shifted one-step form beside the e >= 2 one in a channel pair),
        # then 1..4 (left shifts); 1 / 80 gave -4..-2 only
        "simd_large_scales": lambda: conv_scaled(24, 8, 12, 3, 1, SAME, 1 / 400, seed=25),
        "simd_left_shift_scales": lambda: conv_scaled(24, 8, 12, 3, 1, SAME, 1 / 3000, seed=25, weight_div=16),
        "simd_tiny_scales": lambda: conv_scaled(24, 8, 4, 3, 1, SAME, 1e6, seed=26),
    },
    "DEPTHWISE_CONV_2D": {
        "simd_ch10_k5": lambda: dwconv_model(30, 10, 1, 5, 1, SAME, seed=27),
        "simd_ch8_k3_s2_relu6": lambda: dwconv_model(25, 8, 1, 3, 2, SAME, act=RELU6, seed=28),
        # TFLM shifts -4..0 (groups of four channels in either form), then -1..3
        "simd_dw_large_scales": lambda: dwconv_model(30, 12, 1, 5, 1, SAME, seed=27, scale_factor=1 / 100, weight_div=64),
        "simd_dw_left_shift_scales": lambda: dwconv_model(30, 12, 1, 5, 1, SAME, seed=27, scale_factor=1 / 1000, weight_div=64),
    },
    "FULLY_CONNECTED": {
        "simd_64_to_7": lambda: fc_model(1, 64, 7, seed=29),
        "simd_batched_per_channel": lambda: fc_model(3, 30, 5, per_channel=True, act=RELU, seed=30),
        "simd_large_scales_per_channel": lambda: fc_model(3, 30, 5, per_channel=True, seed=30, scale_factor=1 / 300, weight_div=16),
    },
    # ADD / MUL (beyond the registry's cases, which include a per-sample scalar, saturation and far
    # shifts): swapped-operand scalar rows, short rows with 1-3 element tails, clamps
    "ADD": {
        "simd_const_first_scalar_relu": lambda: binary_model("ADD", [1, 29, 3], [1, 1, 1], act=RELU,
                                                             const_first=True, seed=32),
        "simd_tail1_relu": lambda: binary_model("ADD", [1, 1, 9, 5], [1, 1, 9, 5], act=RELU, seed=35),
        "simd_rows_of_7_small_second_scale": lambda: binary_model("ADD", [1, 11, 7], [1, 1, 7], c_scale_factor=0.02,
                                                                  seed=34),
        "simd_column_broadcast": lambda: binary_model("ADD", [1, 1, 12, 6], [1, 1, 12, 1], seed=49),
    },
    "MUL": {
        "simd_const_first_scalar_relu": lambda: binary_model("MUL", [1, 1, 30, 5], [1, 1, 1, 1], act=RELU,
                                                             const_first=True, seed=37),
        "simd_tail2_relu": lambda: binary_model("MUL", [1, 1, 10, 3], [1, 1, 10, 3], act=RELU, seed=40),
        "simd_rows_of_7_relu": lambda: binary_model("MUL", [1, 13, 7], [1, 1, 7], act=RELU, seed=39),
        "simd_column_broadcast_const_first": lambda: binary_model("MUL", [1, 1, 12, 6], [1, 1, 12, 1],
                                                                  const_first=True, seed=50),
        # the attention weight is the activation, the expert output the constant
        "simd_activation_is_the_weight": lambda: binary_model("MUL", [1, 1, 1, 1], [1, 1, 16, 9], seed=51),
    },
    # pools: 1-3 channel tails, a 256-tap window (the halfword sums' limit, with the -128 corner;
    # the registry's cases hold a longer one, the scalar path), clamps
    "AVERAGE_POOL_2D": {
        "simd_global_256_ch9": lambda: pool_model("AVERAGE_POOL_2D", 256, 9, 256, 1, VALID, seed=41),
        "simd_k5_s1_same_ch2": lambda: pool_model("AVERAGE_POOL_2D", 33, 2, 5, 1, SAME, seed=44),
        "simd_k3_s2_same_ch11_relu6": lambda: pool_model("AVERAGE_POOL_2D", 35, 11, 3, 2, SAME, act=RELU6, seed=43),
        "simd_k1_s1_ch4": lambda: pool_model("AVERAGE_POOL_2D", 12, 4, 1, 1, VALID, seed=42),
    },
    "MAX_POOL_2D": {
        "simd_k3_s1_same_ch7_relu": lambda: pool_model("MAX_POOL_2D", 31, 7, 3, 1, SAME, act=RELU, seed=45),
        "simd_k5_s2_valid_ch13": lambda: pool_model("MAX_POOL_2D", 41, 13, 5, 2, VALID, seed=46),
        "simd_k2_s2_same_ch3": lambda: pool_model("MAX_POOL_2D", 27, 3, 2, 2, SAME, seed=47),
        "simd_k4_s1_same_ch16_relu6": lambda: pool_model("MAX_POOL_2D", 24, 16, 4, 1, SAME, act=RELU6, seed=48),
    },
}

# cases whose windows lie within +-r of the input zero point (the corners aside): large scales
# then requantise accumulators that do not all saturate
INPUT_SPREAD = {"simd_large_scales": 4, "simd_left_shift_scales": 1, "simd_dw_large_scales": 4,
                "simd_dw_left_shift_scales": 1, "simd_large_scales_per_channel": 1}

ALL = [(op, name, fn) for op in OPS for table in (CASES, EXTRA) for name, fn in table.get(op, {}).items()]
# issue 14's new forms get 1,000 windows on the emulated core: the fused chains and DY-Conv's
# aggregation form (its computed-filter conv and its aggregation FC)
NEW_FORMS = {"FUSED_CONV_MUL_ADD": None, "CONV_2D": "dyagg", "FULLY_CONNECTED": "aggregation"}
WINDOWS = {name: N_WINDOWS_EXTRA if name in EXTRA.get(op, {})
           else N_WINDOWS_FUSED if op in NEW_FORMS and name.startswith(NEW_FORMS[op] or "")
           else N_WINDOWS for op, name, _ in ALL}


def _run_case(root: Path, op: str, name: str, fn) -> tuple[np.ndarray, np.ndarray]:
    """Build the case's firmware, run N_WINDOWS random windows on QEMU: (device, TFLM) outputs."""
    from firmware_export import codegen
    from firmware_export.tflite_graph import read
    from firmware_export.verify import run_tflm
    from targets import boards
    from micronas.device import build_image
    from targets.protocol import DeviceClient
    from targets.qemu import EmulatedBoard

    board = boards.get(BOARD)
    model = fn()
    g = read(model)
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    ch = tin.shape[-1]
    gen = codegen.generate(model, labels=tuple(str(i) for i in range(max(1, tout.shape[-1]))),
                           input_mean=(0.0,) * ch, input_std=(1.0,) * ch)
    c_dir = root / name / "c"
    codegen.write(gen, c_dir)
    image = build_image(board, c_dir, root / name / "fw", emulated=True, simd=True)
    assert image.simd

    rng = np.random.default_rng(sum(map(ord, name)))
    if name in INPUT_SPREAD:
        r, z = INPUT_SPREAD[name], int(tin.zero_points[0])
        x = np.clip(z + rng.integers(-r, r + 1, size=(WINDOWS[name], *tin.shape[1:])), -128, 127).astype(np.int8)
    else:
        x = rng.integers(-128, 128, size=(WINDOWS[name], *tin.shape[1:]), dtype=np.int64).astype(np.int8)
    x[0], x[1] = -128, 127  # saturating corners
    want = run_tflm(model, x).reshape(len(x), -1)
    got = []
    with EmulatedBoard(board.qemu.machine, image.elf, root / name / "qemu") as emu:
        with DeviceClient.open(emu.url, timeout_s=5.0) as dev:
            assert dev.hello().input_bytes == math.prod(tin.shape[1:])
            for window in x:
                dev.set_input(window.tobytes())
                dev.invoke(1)
                got.append(np.frombuffer(dev.get_output(), np.int8))
    return np.stack(got), want


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """case name -> (device outputs, TFLM outputs) or the exception; WORKERS cases at a time
    (build, then QEMU)."""
    root = tmp_path_factory.mktemp("simd")

    def one(case):
        op, name, fn = case
        try:
            return name, _run_case(root, op, name, fn)
        except Exception as e:  # noqa: BLE001 - reported by the case's own test
            return name, e

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(pool.map(one, ALL))


@needs_arm
def test_the_cases_reach_the_simd_code():
    assert {op for op, _, _ in ALL} == set(OPS)
    assert sum(op == "CONV_2D" for op, _, _ in ALL) >= len(CASES["CONV_2D"]) + 4
    assert all(len(EXTRA[op]) >= 4 for op in ("ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D"))


@needs_arm
@pytest.mark.parametrize("op, name", [(op, name) for op, name, _ in ALL])
def test_simd_kernels_bit_exact_with_tflm_on_the_emulated_m4(outcomes, op, name):
    outcome = outcomes[name]
    if isinstance(outcome, BaseException):
        raise outcome
    got, want = outcome
    bad = np.flatnonzero((got != want).any(axis=1))
    assert not len(bad), (f"{op} {name}: {len(bad)}/{len(got)} windows differ from TFLM; first {bad[0]}: "
                          f"device {got[bad[0]][:16]} tflm {want[bad[0]][:16]}")

"""BENCH_OP for every executing runtime op (firmware_export/codegen/bench.py, the generated
dispatcher micronas_bench.c and targets/firmware/bench.c).

The latency tables store, per op configuration, what BENCH_OP measures; the figure must be what
the same kernel call costs inside a generated model. The key test builds ONE int8 model that
holds every case below as an independent layer (each reads a slice of the model input, so that
its input bytes are exactly the pseudo-random stream BENCH_OP fills its inputs with), generates
its C model, builds the profiling firmware for the emulated nucleo-f446re (QEMU mps2-an386,
-icount: ticks convert exactly to instructions), runs INVOKE mode 1 once and compares each
layer's instruction count with BENCH_OP for the cost parameters read back from the generated
params structs (latency_tables.keys.cost_params on the generator's layers, as the product keys a
layer: ADD/MUL's fused ReLU is the cost field `relu`). The model's quantisation is its own
(realistic, not the bench's values; only SOFTMAX's asserted layers use the bench's input scale,
since its cost depends on it), so the comparison also checks that the bench's representative
values take the same kernel paths. INFO layers (not asserted) show the value-dependent costs a
table keyed on cost parameters cannot see. `pytest -s` prints the table; the same model on
other input bytes gives the "data %" column.

Packing and error tests need no toolchain; the device tests skip without arm-none-eabi-gcc and
qemu-system-arm.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
from dataclasses import dataclass

import numpy as np
import pytest

from firmware_export.codegen.bench import bench_fields, bench_request
from firmware_export.codegen.registry import bench_ops, list_runtime_ops
from micronas_base.errors import UsageError

# the registry's answers, as tables (kernel-id order)
BENCH_KERNELS = {op.name: op.kernel_id for op in bench_ops()}
COST_FIELDS = {op.name: op.cost_fields for op in bench_ops()}
PARAM_FIELDS = {op.name: op.param_fields for op in bench_ops()}
VECTOR_FIELDS = {op.name: op.vector_fields for op in bench_ops()}

BOARD = "nucleo-f446re"
REL_TOL = 0.005  # BENCH_OP vs the layer in the model
# Instructions, for layers under 2000 instructions (where REL_TOL is below it): a conv/FC output
# that the activation clamp catches costs 2-4 instructions less than one it does not, and the
# bench's synthetic weights and biases clamp a few outputs more or less than the model's.
ABS_TOL = 10
# CONCATENATION: BENCH_OP builds the input pointer array inside the timed window from its one
# input buffer (a loop), where a generated model stores constant addresses: a few instructions
# more per input (measured: 17 for 2 inputs, 27 for 4, on a call of 230 to 5,000).
CONCAT_SETUP_PER_INPUT = 8

needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="needs arm-none-eabi-gcc and qemu-system-arm (apt-get install gcc-arm-none-eabi "
           "libnewlib-arm-none-eabi qemu-system-arm)")


# ---- packing (no device) -----------------------------------------------------------------------

V = lambda *a: tuple(a)  # noqa: E731  (4-tuples read better this way)

# one case per op: cost parameters -> every i32 of the params, in order
PACKING = {
    "CONV_2D": ({"in_len": 100, "in_ch": 6, "out_len": 100, "out_ch": 16, "kernel": 5, "stride": 1, "dilation": 1,
                 "pad_before": 2, "groups": 1},
                [100, 6, 100, 16, 5, 1, 1, 2, 1, 128, -128, -128, 127]),
    "DEPTHWISE_CONV_2D": ({"in_len": 40, "in_ch": 16, "out_len": 40, "depth_multiplier": 1, "kernel": 3,
                           "stride": 1, "dilation": 1, "pad_before": 1},
                          [40, 16, 40, 1, 3, 1, 1, 1, 128, -128, -128, 127]),
    "FULLY_CONNECTED": ({"batches": 1, "in_features": 32, "out_features": 4, "per_channel": 1, "has_bias": 1},
                        [1, 32, 4, 128, 0, 0, -128, 127, 1, 1]),
    # scale ratio 2 = 2^30 * 2^(2-31), 1/100 folded in: (2^30 << 6) // 100, shift 2 - 6
    "MEAN": ({"outer": 1, "reduce": 100, "inner": 16}, [1, 100, 16, -128, -128, 687194767, -4]),
    "AVERAGE_POOL_2D": ({"in_len": 50, "ch": 24, "out_len": 1, "filter": 50, "stride": 1, "pad_before": 0},
                        [50, 24, 1, 50, 1, 0, -128, 127]),
    "MAX_POOL_2D": ({"in_len": 40, "ch": 8, "out_len": 20, "filter": 2, "stride": 2, "pad_before": 0},
                    [40, 8, 20, 2, 2, 0, -128, 127]),
    # relu 0: output zero point 0, output scale 1.9 (relative): 2 / (2^20 * 1.9) = 1130254566 * 2^(-19-31)
    "ADD": ({"out_dims": V(1, 1, 1, 1200), "in1_strides": V(0, 0, 0, 1), "in2_strides": V(0, 0, 0, 1), "relu": 0},
            [1, 1, 1, 1200, 0, 0, 0, 1, 0, 0, 0, 1, -10, -12, 0, 20, 1 << 30, 0, 1503238528, -1, 1130254566, -19,
             -128, 127]),
    "MUL": ({"out_dims": V(1, 1, 1, 1200), "in1_strides": V(0, 0, 0, 1), "in2_strides": V(0, 0, 0, 0), "relu": 0},
            [1, 1, 1, 1200, 0, 0, 0, 1, 0, 0, 0, 0, -10, 128, 10, 1 << 30, -7, -128, 127]),
    "SOFTMAX": ({"outer": 1, "depth": 4}, [1, 4, 1374389504, 18, -7936]),
    "LOGISTIC": ({"size": 24}, [24, 0, 240, 1 << 30, 23]),
    "PAD": ({"in_dims": V(1, 1, 100, 16), "pad_before": V(0, 0, 2, 0), "pad_after": V(0, 0, 2, 0)},
            [1, 1, 100, 16, 0, 0, 2, 0, 0, 0, 2, 0, -128]),
    # begin is not a cost field: the device slices from index 0
    "STRIDED_SLICE": ({"out_dims": V(1, 1, 1, 1), "in_strides": V(0, 0, 4, 1), "step": V(1, 1, 1, 1)},
                      [1, 1, 1, 1, 0, 0, 4, 1, 0, 0, 0, 0, 1, 1, 1, 1]),
    # input scale 0.05 zero point 0 into 0.025, -128: ratio 2 = 2^30 * 2^(2-31), clamped at -128
    "RELU": ({"size": 1200}, [1200, 0, -128, 1 << 30, 2, -128, 127]),
    # the identity requantisation (2^30, 1) and the input's [0, 6] at scale 0.1, zero point -20
    "RELU6": ({"size": 1200}, [1200, 0, 0, 1 << 30, 1, -20, 40]),
    "TANH": ({"size": 24}, [24, 0, 240, 1 << 30, 23]),  # LOGISTIC's input maths at scale 1/32
    # 0.05/128/0.035 = 23406 * 2^(-6-15) (Q15), 0.05/128/(3/32768) = 17476 * 2^(3-15)
    "HARD_SWISH": ({"size": 1024}, [1024, 0, -117, 17476, 3, 23406, -6]),
    "QUANTIZE": ({"size": 1200}, [1200, -128, -100, 1431655765, 0]),  # 1/1.5 = 1431655765 * 2^-31
    # geometry, experts, att_stride, then the input offset of a ReLU output and filter_stride 0
    # (BENCH_OP gives every expert the same filter: the cost does not depend on the weights)
    "FUSED_CONV_MUL_ADD": ({"in_len": 64, "in_ch": 32, "out_len": 64, "out_ch": 32, "kernel": 5, "stride": 1,
                            "dilation": 1, "pad_before": 2, "groups": 1, "experts": 4, "att_stride": 0},
                           [64, 32, 64, 32, 5, 1, 1, 2, 1, 4, 0, 128, 0]),
    "CONCATENATION": ({"outer": 64, "count": 2, "out_row": 16}, [64, 2, 16]),
}

# relu 1 (a fused ReLU): input zero points 0, output zero point -128 and half the output scale.
# ADD: output scale 0.95 (relative), 2 / (2^20 * 0.95) = 1130254566 * 2^(-18-31), the input
# multipliers unchanged. MUL: input1 offset 0, shift -6 (the product / 128).
# A negative step walks down to index 0: begin is (out_dims - 1) * -step on that axis.
PACKING_MORE = {
    "ADD-relu": ("ADD", {**PACKING["ADD"][0], "relu": 1},
                 [1, 1, 1, 1200, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, -128, 20, 1 << 30, 0, 1503238528, -1, 1130254566,
                  -18, -128, 127]),
    "MUL-relu": ("MUL", {**PACKING["MUL"][0], "relu": 1},
                 [1, 1, 1, 1200, 0, 0, 0, 1, 0, 0, 0, 0, 0, 128, -128, 1 << 30, -6, -128, 127]),
    "STRIDED_SLICE-negative-step": ("STRIDED_SLICE", {"out_dims": V(1, 2, 13, 2), "in_strides": V(0, 117, 9, 1),
                                                      "step": V(1, -3, -1, 2)},
                                    [1, 2, 13, 2, 0, 117, 9, 1, 0, 3, 12, 0, 1, -3, -1, 2]),
}


def test_kernel_ids_and_cost_fields_cover_every_executing_runtime_op():
    # RESHAPE, EXPAND_DIMS, SQUEEZE are views; DEQUANTIZE is an edge of the float API
    executing = {op.name for op in list_runtime_ops() if not op.view and not op.edge}
    assert set(BENCH_KERNELS) == set(COST_FIELDS) == set(PARAM_FIELDS) == executing == set(PACKING)
    # 19..22: issue 14's ids, handed out to branches built side by side
    assert set(range(1, 19)) <= set(BENCH_KERNELS.values()) <= set(range(1, 23))
    for op, fields in COST_FIELDS.items():
        # every cost field is a params field, except ADD/MUL's fused ReLU (the exporter reports it
        # beside the struct: it changes the cost through the output quantisation, not a field)
        assert set(fields) - set(PARAM_FIELDS[op]) == ({"relu"} if op in ("ADD", "MUL") else set()), op
        assert len(set(fields)) == len(fields), op
    assert "begin" in PARAM_FIELDS["STRIDED_SLICE"] and "begin" not in COST_FIELDS["STRIDED_SLICE"]


def test_params_layout_matches_the_runtime_header():
    """PARAM_FIELDS is each params struct's int32 fields in declaration order (arrays flattened)."""
    from firmware_export.codegen import runtime_sources

    header = next(p for p in runtime_sources() if p.name == "micronas_runtime.h").read_text()
    structs = {"CONV_2D": "mn_conv_params", "DEPTHWISE_CONV_2D": "mn_dwconv_params",
               "FULLY_CONNECTED": "mn_fc_params", "MEAN": "mn_mean_params", "AVERAGE_POOL_2D": "mn_pool_params",
               "MAX_POOL_2D": "mn_pool_params", "ADD": "mn_add_params", "MUL": "mn_mul_params",
               "SOFTMAX": "mn_softmax_params", "LOGISTIC": "mn_logistic_params", "PAD": "mn_pad_params",
               "STRIDED_SLICE": "mn_slice_params", "RELU": "mn_relu_params", "RELU6": "mn_relu_params",
               "TANH": "mn_tanh_params", "HARD_SWISH": "mn_hard_swish_params", "QUANTIZE": "mn_quantize_params",
               "CONCATENATION": "mn_concat_params", "FUSED_CONV_MUL_ADD": "mn_conv_mul_add_params"}

    def fields(name: str) -> list[str]:
        body = re.search(r"typedef struct \{([^{}]*)\} " + name + ";", header).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        out: list[str] = []
        for decl in body.split(";"):
            decl = decl.strip()
            if not decl or "*" in decl:
                continue  # pointers are not sent
            typ, names = decl.split(None, 1)
            for n in names.split(","):
                n = n.strip()
                out.extend(fields(typ) if typ.startswith("mn_") else [re.sub(r"\[4\]", "", n)])
        return out

    for op, struct_name in structs.items():
        assert next(o for o in bench_ops() if o.name == op).struct == struct_name, op
        assert list(PARAM_FIELDS[op]) == fields(struct_name), op
        assert VECTOR_FIELDS[op] <= set(PARAM_FIELDS[op])


@pytest.mark.parametrize("op, cost, want", [pytest.param(op, *PACKING[op], id=op) for op in PACKING] +
                         [pytest.param(*case, id=name) for name, case in PACKING_MORE.items()])
def test_bench_request_packs_cost_and_representative_values(op, cost, want):
    kernel, params = bench_request(op, cost)
    assert kernel == BENCH_KERNELS[op]
    assert params == struct.pack(f"<{len(want)}i", *want)
    assert list(bench_fields(op, cost)) == list(PARAM_FIELDS[op])


# The exact request bytes of the code before the runtime-op registry (targets/bench_ops.py, which
# re-implemented the exporter's fixed-point maths), for three keys of every op from the shipped
# tables and more for the ops and branches they do not reach: the registry's representative
# values, computed with the exporter's own maths, must be bit-identical.
REQUEST_BYTES = {
    "CONV_2D(in_len=100,in_ch=6,out_len=100,out_ch=16,kernel=3,stride=1,dilation=1,pad_before=1,groups=1)":
        "6400000006000000640000001000000003000000010000000100000001000000010000008000000080ffffff80ffffff7f000000",
    "CONV_2D(in_len=100,in_ch=6,out_len=100,out_ch=16,kernel=5,stride=1,dilation=1,pad_before=2,groups=1)":
        "6400000006000000640000001000000005000000010000000100000002000000010000008000000080ffffff80ffffff7f000000",
    "CONV_2D(in_len=100,in_ch=6,out_len=100,out_ch=16,kernel=7,stride=1,dilation=1,pad_before=3,groups=1)":
        "6400000006000000640000001000000007000000010000000100000003000000010000008000000080ffffff80ffffff7f000000",
    "DEPTHWISE_CONV_2D(in_len=40,in_ch=16,out_len=40,depth_multiplier=1,kernel=3,stride=1,dilation=1,pad_before=1)":
        "28000000100000002800000001000000030000000100000001000000010000008000000080ffffff80ffffff7f000000",
    "DEPTHWISE_CONV_2D(in_len=33,in_ch=10,out_len=17,depth_multiplier=2,kernel=5,stride=2,dilation=1,pad_before=2)":
        "210000000a0000001100000002000000050000000200000001000000020000008000000080ffffff80ffffff7f000000",
    "FULLY_CONNECTED(batches=1,in_features=12,out_features=2,per_channel=1,has_bias=1)":
        "010000000c0000000200000080000000000000000000000080ffffff7f0000000100000001000000",
    "FULLY_CONNECTED(batches=1,in_features=12,out_features=24,per_channel=1,has_bias=1)":
        "010000000c0000001800000080000000000000000000000080ffffff7f0000000100000001000000",
    "FULLY_CONNECTED(batches=1,in_features=12,out_features=32,per_channel=1,has_bias=1)":
        "010000000c0000002000000080000000000000000000000080ffffff7f0000000100000001000000",
    "FULLY_CONNECTED(batches=3,in_features=30,out_features=5,per_channel=0,has_bias=1)":
        "030000001e0000000500000080000000000000000000000080ffffff7f0000000000000001000000",
    "MEAN(outer=1,reduce=1,inner=8)":
        "01000000010000000800000080ffffff80ffffff0000004002000000",
    "MEAN(outer=1,reduce=3,inner=8)":
        "01000000030000000800000080ffffff80ffffffaaaaaa2a01000000",
    "MEAN(outer=1,reduce=100,inner=16)":
        "01000000640000001000000080ffffff80ffffff8fc2f528fcffffff",
    "MEAN(outer=2,reduce=128,inner=64)":
        "02000000800000004000000080ffffff80ffffff00000040fbffffff",
    "MEAN(outer=1,reduce=16384,inner=1)":
        "01000000004000000100000080ffffff80ffffff00000040f4ffffff",
    "AVERAGE_POOL_2D(in_len=100,ch=16,out_len=1,filter=100,stride=100,pad_before=0)":
        "64000000100000000100000064000000640000000000000080ffffff7f000000",
    "AVERAGE_POOL_2D(in_len=100,ch=24,out_len=1,filter=100,stride=100,pad_before=0)":
        "64000000180000000100000064000000640000000000000080ffffff7f000000",
    "AVERAGE_POOL_2D(in_len=100,ch=8,out_len=1,filter=100,stride=100,pad_before=0)":
        "64000000080000000100000064000000640000000000000080ffffff7f000000",
    "MAX_POOL_2D(in_len=40,ch=8,out_len=20,filter=2,stride=2,pad_before=0)":
        "28000000080000001400000002000000020000000000000080ffffff7f000000",
    "MAX_POOL_2D(in_len=37,ch=16,out_len=37,filter=3,stride=1,pad_before=1)":
        "25000000100000002500000003000000010000000100000080ffffff7f000000",
    "ADD(out_dims=1x1x1x1200,in1_strides=0x0x0x1,in2_strides=0x0x0x1,relu=0)":
        "010000000100000001000000b00400000000000000000000000000000100000000000000000000000000000001000000f6fffffff4ffffff0000000014000000000000400000000080999959ffffffffe6505e43edffffff80ffffff7f000000",
    "ADD(out_dims=1x1x1x1200,in1_strides=0x0x0x1,in2_strides=0x0x0x1,relu=1)":
        "010000000100000001000000b00400000000000000000000000000000100000000000000000000000000000001000000000000000000000080ffffff14000000000000400000000080999959ffffffffe6505e43eeffffff80ffffff7f000000",
    "ADD(out_dims=1x1x1x1600,in1_strides=0x0x0x1,in2_strides=0x0x0x1,relu=0)":
        "010000000100000001000000400600000000000000000000000000000100000000000000000000000000000001000000f6fffffff4ffffff0000000014000000000000400000000080999959ffffffffe6505e43edffffff80ffffff7f000000",
    "MUL(out_dims=1x1x1x1200,in1_strides=0x0x0x1,in2_strides=0x0x0x0,relu=0)":
        "010000000100000001000000b00400000000000000000000000000000100000000000000000000000000000000000000f6ffffff800000000a00000000000040f9ffffff80ffffff7f000000",
    "MUL(out_dims=1x1x1x1600,in1_strides=0x0x0x1,in2_strides=0x0x0x0,relu=0)":
        "010000000100000001000000400600000000000000000000000000000100000000000000000000000000000000000000f6ffffff800000000a00000000000040f9ffffff80ffffff7f000000",
    "MUL(out_dims=1x1x1x600,in1_strides=0x0x0x1,in2_strides=0x0x0x0,relu=0)":
        "010000000100000001000000580200000000000000000000000000000100000000000000000000000000000000000000f6ffffff800000000a00000000000040f9ffffff80ffffff7f000000",
    "MUL(out_dims=1x1x1x1200,in1_strides=0x0x0x1,in2_strides=0x0x0x0,relu=1)":
        "010000000100000001000000b00400000000000000000000000000000100000000000000000000000000000000000000000000008000000080ffffff00000040faffffff80ffffff7f000000",
    "SOFTMAX(outer=1,depth=2)":
        "01000000020000000085eb511200000000e1ffff",
    "SOFTMAX(outer=1,depth=4)":
        "01000000040000000085eb511200000000e1ffff",
    "SOFTMAX(outer=3,depth=16)":
        "03000000100000000085eb511200000000e1ffff",
    "LOGISTIC(size=16)":
        "1000000000000000f00000000000004017000000",
    "LOGISTIC(size=24)":
        "1800000000000000f00000000000004017000000",
    "LOGISTIC(size=32)":
        "2000000000000000f00000000000004017000000",
    "LOGISTIC(size=1200)":
        "b004000000000000f00000000000004017000000",
    "PAD(in_dims=1x1x100x16,pad_before=0x0x1x0,pad_after=0x0x1x0)":
        "01000000010000006400000010000000000000000000000001000000000000000000000000000000010000000000000080ffffff",
    "PAD(in_dims=1x1x100x16,pad_before=0x0x2x0,pad_after=0x0x2x0)":
        "01000000010000006400000010000000000000000000000002000000000000000000000000000000020000000000000080ffffff",
    "PAD(in_dims=1x1x100x16,pad_before=0x0x3x0,pad_after=0x0x3x0)":
        "01000000010000006400000010000000000000000000000003000000000000000000000000000000030000000000000080ffffff",
    "STRIDED_SLICE(out_dims=1x1x1x1,in_strides=0x0x2x1,step=1x1x1x1)":
        "01000000010000000100000001000000000000000000000002000000010000000000000000000000000000000000000001000000010000000100000001000000",
    "STRIDED_SLICE(out_dims=1x1x1x1,in_strides=0x0x4x1,step=1x1x1x1)":
        "01000000010000000100000001000000000000000000000004000000010000000000000000000000000000000000000001000000010000000100000001000000",
    "STRIDED_SLICE(out_dims=1x2x13x2,in_strides=0x117x9x1,step=1x-3x-1x2)":
        "01000000020000000d000000020000000000000075000000090000000100000000000000030000000c0000000000000001000000fdffffffffffffff02000000",
    # ops added after the registry (Keras/PyTorch models): the bytes they shipped with
    "RELU(size=1200)": "b00400000000000080ffffff000000400200000080ffffff7f000000",
    "RELU6(size=1200)": "b004000000000000000000000000004001000000ecffffff28000000",
    "TANH(size=24)": "1800000000000000f00000000000004017000000",
    "HARD_SWISH(size=1024)": "00040000000000008bffffff44440000030000006e5b0000faffffff",
    "QUANTIZE(size=1200)": "b004000080ffffff9cffffff5555555500000000",
    "CONCATENATION(outer=64,count=2,out_row=16)": "400000000200000010000000",
    # added with the op (issue 14): 64, 32, 64, 32, 5, 1, 1, 2, 1, experts 4, att_stride 0, input
    # offset 128, filter_stride 0
    "FUSED_CONV_MUL_ADD(in_len=64,in_ch=32,out_len=64,out_ch=32,kernel=5,stride=1,dilation=1,pad_before=2,groups=1,"
    "experts=4,att_stride=0)":
        "40000000200000004000000020000000050000000100000001000000020000000100000004000000000000008000000000000000",
}


@pytest.mark.parametrize("key", REQUEST_BYTES)
def test_request_bytes_are_those_of_the_code_before_the_registry(key):
    from latency_tables.keys import parse_key

    op, cost = parse_key(key)
    assert bench_request(op, cost) == (BENCH_KERNELS[op], bytes.fromhex(REQUEST_BYTES[key]))


def test_request_bytes_cover_every_op():
    assert {k.split("(")[0] for k in REQUEST_BYTES} == set(BENCH_KERNELS)


def test_mean_multiplier_is_the_exporters_fold():
    from firmware_export.codegen.ops_pool import mean_multiplier

    for reduce in (1, 2, 3, 19, 25, 64, 100, 128):
        f = bench_fields("MEAN", {"outer": 1, "reduce": reduce, "inner": 8})
        assert (f["multiplier"], f["shift"]) == mean_multiplier(1.0, 0.5, reduce)
    # shift <= 0 (the kernel's common branch) from reduce 4 on
    assert bench_fields("MEAN", {"outer": 1, "reduce": 4, "inner": 8})["shift"] <= 0


def test_activation_constants_are_the_exporters():
    from firmware_export.codegen.ops_activation import logistic_params, softmax_params

    f = bench_fields("SOFTMAX", {"outer": 1, "depth": 4})
    assert (f["input_multiplier"], f["input_left_shift"], f["diff_min"]) == softmax_params(1.0, 0.0025)
    f = bench_fields("LOGISTIC", {"size": 4})
    assert (f["input_multiplier"], f["input_left_shift"], f["input_range_radius"]) == logistic_params(1 / 32)


def _requantize(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """mn_requantize (TFLite's MultiplyByQuantizedMultiplier), vectorised."""
    x = x.astype(np.int64) << max(shift, 0)
    high = (x * multiplier + (1 << 30)) >> 31
    e = max(-shift, 0)
    mask = (1 << e) - 1
    return (high >> e) + ((high & mask) > (mask >> 1) + (high < 0))


def _unclamped(op: str, f: dict, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """mn_add_s8 / mn_mul_s8's output before the activation clamp, for broadcast int8 inputs."""
    x1, x2 = np.broadcast_arrays(x1.astype(np.int64), x2.astype(np.int64))
    if op == "ADD":
        s = (_requantize((x1 + f["input1_offset"]) << f["left_shift"], f["input1_multiplier"], f["input1_shift"]) +
             _requantize((x2 + f["input2_offset"]) << f["left_shift"], f["input2_multiplier"], f["input2_shift"]))
        return _requantize(s, f["output_multiplier"], f["output_shift"]) + f["output_offset"]
    return _requantize((x1 + f["input1_offset"]) * (x2 + f["input2_offset"]), f["output_multiplier"],
                       f["output_shift"]) + f["output_offset"]


_PAIRS = [a.astype(np.int64) for a in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))]  # every int8 pair
_ONE = {"out_dims": V(1, 1, 1, 1), "in1_strides": V(0, 0, 0, 1), "in2_strides": V(0, 0, 0, 1)}


def _bench_inputs(n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    """The bench's in1 and in2: one pseudo-random stream, in2 continuing it."""
    b = np.frombuffer(fill_stream(n1 + n2), np.int8).astype(np.int64)
    return b[:n1], b[n1:]


@pytest.mark.parametrize("op", ["ADD", "MUL"])
def test_add_and_mul_representative_values_never_clamp_without_relu(op):
    """The clamp of mn_add_s8 / mn_mul_s8 is a branch; with relu 0 the bench's values keep every
    output of any pair of int8 inputs inside -128..127, the unclamped path of a calibrated layer."""
    f = bench_fields(op, {**_ONE, "relu": 0})
    y = _unclamped(op, f, *_PAIRS)
    assert (f["act_min"], f["act_max"]) == (-128, 127)
    assert f["act_min"] <= y.min() and y.max() <= f["act_max"]


@pytest.mark.parametrize("op", ["ADD", "MUL"])
def test_add_and_mul_relu_values_clamp_about_half(op):
    """relu 1: output zero point -128, and about half the outputs (the negative ones) clamp at
    -128, as in a ReLU-fused layer of a trained model; none clamps at 127. Over every int8 pair
    (half, within a few %) and over the bench's own inputs (ADD: two equal [1200] and [8192];
    MUL: [50, 24] x [24] and [128, 64] x [64], the KernelDNA attention)."""
    f = bench_fields(op, {**_ONE, "relu": 1})
    assert (f["output_offset"], f["act_min"], f["act_max"]) == (-128, -128, 127)
    y = _unclamped(op, f, *_PAIRS)
    assert y.max() <= f["act_max"]
    assert 0.45 < np.mean(y < f["act_min"]) < 0.55, np.mean(y < f["act_min"])
    for a, b in ((1200, 1200), (8192, 8192)) if op == "ADD" else ((1200, 24), (8192, 64)):
        x1, x2 = _bench_inputs(a, b)
        y = _unclamped(op, f, x1.reshape(-1, b) if op == "MUL" else x1, x2)
        assert y.max() <= f["act_max"]
        assert 0.3 < np.mean(y < f["act_min"]) < 0.7, (a, b, np.mean(y < f["act_min"]))
    # the same inputs without the fused ReLU: nothing clamps
    assert _unclamped(op, bench_fields(op, {**_ONE, "relu": 0}), *_PAIRS).min() >= -128


@pytest.mark.parametrize("op, cost, match", [
    ("TRANSPOSE", {}, r"op 'TRANSPOSE' has no BENCH_OP kernel; expected one of CONV_2D"),
    ("RESHAPE", {}, "no BENCH_OP kernel"),
    ("SOFTMAX", {"outer": 1}, r"missing depth; expected exactly outer, depth"),
    ("SOFTMAX", {"outer": 1, "depth": 4, "beta": 1}, r"unknown beta; expected exactly outer, depth"),
    ("LOGISTIC", {"size": 4.0}, r"size = 4.0 \(float\); expected an int"),
    ("LOGISTIC", {"size": True}, r"size = True \(bool\); expected an int"),
    ("LOGISTIC", {"size": "4"}, r"expected an int"),
    ("LOGISTIC", {"size": 1 << 31}, r"size = 2147483648; expected a value that fits int32"),
    ("PAD", {"in_dims": (1, 25, 6), "pad_before": V(0, 0, 1, 0), "pad_after": V(0, 0, 1, 0)},
     r"in_dims = \(1, 25, 6\); expected a 4-tuple of ints"),
    ("PAD", {"in_dims": 6, "pad_before": V(0, 0, 1, 0), "pad_after": V(0, 0, 1, 0)}, "4-tuple"),
    ("ADD", {"out_dims": V(1, 1, 1, 8), "in1_strides": V(0, 0, 0, 1.5), "in2_strides": V(0, 0, 0, 1), "relu": 0},
     r"in1_strides\[3\] = 1.5 \(float\); expected an int"),
    # the fused ReLU is a required cost field of ADD and MUL, 0 or 1
    ("ADD", {"out_dims": V(1, 1, 1, 8), "in1_strides": V(0, 0, 0, 1), "in2_strides": V(0, 0, 0, 1)},
     r"ADD cost parameters: missing relu; expected exactly out_dims, in1_strides, in2_strides, relu"),
    ("MUL", {**PACKING["MUL"][0], "relu": 2}, r"MUL cost field relu = 2; expected 0 or 1"),
    ("MUL", {**PACKING["MUL"][0], "relu": -1}, r"relu = -1; expected 0 or 1"),
    ("ADD", {**PACKING["ADD"][0], "relu": True}, r"relu = True \(bool\); expected an int"),
    ("ADD", {**PACKING["ADD"][0], "relu": V(1, 1, 1, 1)}, r"relu = \(1, 1, 1, 1\) \(tuple\); expected an int"),
    ("SOFTMAX", {"outer": 1, "depth": 4, "relu": 0}, r"unknown relu; expected exactly outer, depth"),
    # begin is not a cost field of STRIDED_SLICE (it moves the start, not the work)
    ("STRIDED_SLICE", {**PACKING["STRIDED_SLICE"][0], "begin": V(0, 0, 0, 2)},
     r"STRIDED_SLICE cost parameters: unknown begin; expected exactly out_dims, in_strides, step"),
    ("MEAN", [("outer", 1)], "expected a mapping"),
    ("MEAN", {"outer": 1, "reduce": 0, "inner": 4}, "reduce = 0; expected at least 1"),
])
def test_bad_requests_raise_usage_error(op, cost, match):
    with pytest.raises(UsageError, match=match):
        bench_request(op, cost)


def test_numpy_integers_and_lists_are_accepted():
    a = bench_request("PAD", {"in_dims": [np.int64(1), 1, 100, 16], "pad_before": (0, 0, np.int32(2), 0),
                              "pad_after": V(0, 0, 2, 0)})
    assert a == bench_request("PAD", PACKING["PAD"][0])


# ---- the emulated board ------------------------------------------------------------------------

def fill_stream(n: int) -> bytes:
    """The device's pseudo-random input stream (bench.c fill_stream from FILL_SEED)."""
    x, out = 12345, bytearray(n)
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out[i] = x >> 24
    return bytes(out)


SAME, VALID = 0, 1
NONE, RELU = 0, 1
X_BYTES = 16384  # the model input: the longest pair of inputs (ADD of two [1, 128, 64])


@dataclass
class Layer:
    op: str
    name: str
    asserted: bool  # False: shown for information (a value-dependent cost the table does not model)
    index: int  # the op's index in the flatbuffer (the code generator may run the ops in another order)
    relu: int = 0  # ADD/MUL: the fused ReLU, which the layer's `relu` cost field must report


class Net:
    """One model of independent layers; each case's inputs are slices of the model input X."""

    def __init__(self):
        from .tflite_builder import ModelBuilder

        self.b = ModelBuilder()
        self.rng = np.random.default_rng(7)
        self.x = self.b.tensor([1, X_BYTES], scale=0.05, zero_point=0)
        self.layers: list[Layer] = []
        self.last = -1

    def feed(self, shape, scale: float, zp: int, offset: int = 0) -> int:
        """X[0, offset:offset+n] (a STRIDED_SLICE layer) viewed as `shape` (RESHAPE), quantised (scale, zp)."""
        b, n = self.b, math.prod(shape)
        s = b.tensor([1, n], scale=scale, zero_point=zp)
        self._op("STRIDED_SLICE", f"feed {n} bytes at {offset}", True,
                 [self.x, b.const_i32([0, offset]), b.const_i32([1, offset + n]), b.const_i32([1, 1])], [s],
                 beginMask=0, endMask=0, shrinkAxisMask=0, ellipsisMask=0, newAxisMask=0)
        if list(shape) == [1, n]:
            return s
        r = b.tensor(list(shape), scale=scale, zero_point=zp)
        b.op("RESHAPE", [s, b.const_i32(list(shape))], [r], newShape=np.asarray(shape, np.int32))
        return r

    def _op(self, op: str, name: str, asserted: bool, inputs, outputs, **options) -> None:
        self.b.op(op, inputs, outputs, **options)
        relu = int(op in ("ADD", "MUL") and options.get("fusedActivationFunction") == RELU)
        self.layers.append(Layer(op, name, asserted, len(self.b.ops) - 1, relu))
        self.last = outputs[0]

    def out(self, shape, scale: float, zp: int) -> int:
        return self.b.tensor(list(shape), scale=scale, zero_point=zp)

    # -- cases --
    def conv(self, name, shape, out_ch, k, stride, padding, groups=1, in_zp=-128, act=RELU):
        from .tflite_builder import per_channel_weights

        time_on_w = shape[1] == 1
        t, c = (shape[2] if time_on_w else shape[1]), shape[3]
        out_len = -(-t // stride) if padding == SAME else (t - k) // stride + 1
        s_in = 0.04
        x = self.feed(shape, s_in, in_zp)
        fshape = (out_ch, 1, k, c // groups) if time_on_w else (out_ch, k, 1, c // groups)
        w, ws = per_channel_weights(self.rng, fshape)
        b = self.b
        wt = b.tensor(fshape, data=w, scale=ws, zero_point=np.zeros(out_ch, int))
        bt = b.tensor([out_ch], np.int32, scale=s_in * ws, zero_point=np.zeros(out_ch, int),
                      data=self.rng.integers(-2000, 2000, out_ch).astype(np.int32))
        s_out = float(3 * 74 * 73 * math.sqrt(k * c // groups) * s_in * ws.mean() / 128)
        y = self.out([1, 1, out_len, out_ch] if time_on_w else [1, out_len, 1, out_ch], s_out,
                     -128 if act == RELU else 3)
        strides = dict(strideW=stride, strideH=1) if time_on_w else dict(strideW=1, strideH=stride)
        self._op("CONV_2D", name, True, [x, wt, bt], [y], padding=padding, dilationWFactor=1, dilationHFactor=1,
                 fusedActivationFunction=act, **strides)

    def dwconv(self, name, t, c, mult, k, stride, padding):
        from .tflite_builder import per_channel_weights

        out_len = -(-t // stride) if padding == SAME else (t - k) // stride + 1
        s_in = 0.04
        x = self.feed([1, 1, t, c], s_in, -128)
        w, ws = per_channel_weights(self.rng, (1, 1, k, c * mult), qdim=3)
        b = self.b
        wt = b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(c * mult, int), quantized_dimension=3)
        bt = b.tensor([c * mult], np.int32, scale=s_in * ws, zero_point=np.zeros(c * mult, int),
                      data=self.rng.integers(-2000, 2000, c * mult).astype(np.int32))
        y = self.out([1, 1, out_len, c * mult], float(3 * 74 * 73 * math.sqrt(k) * s_in * ws.mean() / 128), -128)
        self._op("DEPTHWISE_CONV_2D", name, True, [x, wt, bt], [y], padding=padding, strideW=stride, strideH=1,
                 depthMultiplier=mult, dilationWFactor=1, dilationHFactor=1, fusedActivationFunction=RELU)

    def fc(self, name, batches, n_in, n_out, per_channel, act=NONE):
        s_in = 0.03
        x = self.feed([1, batches, n_in] if batches > 1 else [1, n_in], s_in, -128)
        b = self.b
        w = self.rng.integers(-127, 128, size=(n_out, n_in)).astype(np.int8)
        ws = self.rng.uniform(0.002, 0.05, size=n_out if per_channel else 1).astype(np.float32)
        wt = b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(len(ws), int))
        bt = b.tensor([n_out], np.int32, scale=s_in * ws, zero_point=np.zeros(len(ws), int),
                      data=self.rng.integers(-2000, 2000, n_out).astype(np.int32))
        y = self.out([batches, n_out], float(3 * 74 * 73 * math.sqrt(n_in) * s_in * ws.mean() / 128), -20)
        self._op("FULLY_CONNECTED", name, True, [x, wt, bt], [y], fusedActivationFunction=act)

    def mean(self, name, shape, axes):
        x = self.feed(shape, 0.05, -128)
        rank, red = len(shape), {a % len(shape) for a in axes}
        y = self.out([n for d, n in enumerate(shape) if d not in red], 0.05 / 3.1, -128)
        assert rank in (3, 4)
        self._op("MEAN", name, True, [x, self.b.const_i32(axes)], [y], keepDims=False)

    def pool(self, op, name, shape, filt, stride, padding):
        time_on_w = shape[1] == 1
        t = shape[2] if time_on_w else shape[1]
        out_len = -(-t // stride) if padding == SAME else (t - filt) // stride + 1
        x = self.feed(shape, 0.05, -5)
        y = self.out([1, 1, out_len, shape[3]] if time_on_w else [1, out_len, 1, shape[3]], 0.05, -5)
        geo = (dict(filterWidth=filt, filterHeight=1, strideW=stride, strideH=1) if time_on_w
               else dict(filterWidth=1, filterHeight=filt, strideW=1, strideH=stride))
        self._op(op, name, True, [x], [y], padding=padding, fusedActivationFunction=NONE, **geo)

    def binary(self, op, name, shape, shape2, q1, q2, qout, act=NONE, asserted=True):
        x1 = self.feed(shape, *q1)
        x2 = self.feed(shape2, *q2, offset=math.prod(shape))
        y = self.out(list(np.broadcast_shapes(tuple(shape), tuple(shape2))), *qout)
        self._op(op, name, asserted, [x1, x2], [y], fusedActivationFunction=act)

    def softmax(self, name, shape, scale, zp, asserted=True):
        x = self.feed(shape, scale, zp)
        self._op("SOFTMAX", name, asserted, [x], [self.out(shape, 1 / 256, -128)], beta=1.0)

    def logistic(self, name, shape, scale, zp, asserted=True):
        x = self.feed(shape, scale, zp)
        self._op("LOGISTIC", name, asserted, [x], [self.out(shape, 1 / 256, -128)])

    def pad(self, name, shape, pads):
        x = self.feed(shape, 0.05, -128)
        y = self.out([n + a + b for n, (a, b) in zip(shape, pads)], 0.05, -128)
        self._op("PAD", name, True, [x, self.b.const_i32(pads)], [y])

    def slice(self, name, shape, begin, end, strides, out_shape, begin_mask=0, end_mask=0, shrink=0, asserted=True):
        b = self.b
        x = self.feed(shape, 0.05, 0)
        self._op("STRIDED_SLICE", name, asserted,
                 [x, b.const_i32(begin), b.const_i32(end), b.const_i32(strides)], [self.out(out_shape, 0.05, 0)],
                 beginMask=begin_mask, endMask=end_mask, shrinkAxisMask=shrink, ellipsisMask=0, newAxisMask=0)

    def unary(self, op, name, shape, q_in, q_out, asserted=True):
        x = self.feed(shape, *q_in)
        self._op(op, name, asserted, [x], [self.out(shape, *q_out)])

    def concat(self, name, shapes, axis, asserted=True):
        """Inputs fed one after the other from X, as BENCH_OP lays them in its input stream."""
        q, xs, at = (0.05, -7), [], 0
        for shape in shapes:
            xs.append(self.feed(shape, *q, offset=at))
            at += math.prod(shape)
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        self._op("CONCATENATION", name, asserted, xs, [self.out(out, *q)], axis=axis, fusedActivationFunction=NONE)

    def dyconv(self, name, t, c, o, k, experts, kdna=False):
        """A split-form DY-Conv (kdna: KernelDNA's conv -> MUL) over X[0:t*c], its attention X[0:n]:
        the code generator fuses it into one FUSED_CONV_MUL_ADD layer (the index of its last op)."""
        from .tflite_builder import per_channel_weights

        b, s_in = self.b, 0.04
        x = self.feed([1, 1, t, c], s_in, -128)
        att = self.feed([1, o if kdna else experts], 1 / 256, -128)
        total = None
        for e in range(experts):
            w, ws = per_channel_weights(self.rng, (o, 1, k, c))
            s_c = float(3 * 74 * 73 * math.sqrt(k * c) * s_in * ws.mean() / 128)
            y4 = self.out([1, 1, t, o], s_c, 0)
            b.op("CONV_2D", [x, b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(o, int)),
                             b.tensor([o], np.int32, scale=s_in * ws, zero_point=np.zeros(o, int),
                                      data=self.rng.integers(-2000, 2000, o).astype(np.int32))],
                 [y4], padding=SAME, strideW=1, strideH=1, dilationWFactor=1, dilationHFactor=1,
                 fusedActivationFunction=NONE)
            y = self.out([1, t, o], s_c, 0)
            b.op("RESHAPE", [y4, b.const_i32([1, t, o])], [y], newShape=np.asarray([1, t, o], np.int32))
            if kdna:
                a = att
            else:
                a1 = self.out([1, 1], 1 / 256, -128)
                b.op("STRIDED_SLICE", [att, b.const_i32([0, e]), b.const_i32([1, e + 1]), b.const_i32([1, 1])],
                     [a1], beginMask=0, endMask=0, shrinkAxisMask=0, ellipsisMask=0, newAxisMask=0)
                a = self.out([1, 1, 1], 1 / 256, -128)
                b.op("RESHAPE", [a1, b.const_i32([1, 1, 1])], [a], newShape=np.asarray([1, 1, 1], np.int32))
            m = self.out([1, t, o], s_c * 0.5, -128 if kdna else 0)
            args = dict(fusedActivationFunction=RELU if kdna else NONE)
            if experts == 1:
                self._op("MUL", name, True, [y, a], [m], **args)
                self.layers[-1].op = "FUSED_CONV_MUL_ADD"
                return
            b.op("MUL", [y, a], [m], **args)
            if total is None:
                total = (m, s_c * 0.5)
                continue
            last = e == experts - 1
            s_sum = total[1] * 1.2
            out = self.out([1, t, o], s_sum, -128 if last else 0)
            act = RELU if last else NONE
            if last:
                self._op("ADD", name, True, [total[0], m], [out], fusedActivationFunction=act)
                self.layers[-1].op, self.layers[-1].relu = "FUSED_CONV_MUL_ADD", 0
            else:
                b.op("ADD", [total[0], m], [out], fusedActivationFunction=act)
            total = (out, s_sum)

    def build(self) -> bytes:
        return self.b.build([self.x], [self.last])


ADD_Q = ((0.04, 7), (0.06, -15), (0.13, 4))  # input1, input2, output (scale, zero point): input2 the larger
MUL_Q = ((0.05, 12), (1 / 256, -128), (0.045, 9))  # an activation times a softmax/sigmoid weight
# ReLU-fused, output zero point -128, the output scale calibrated to the positive half
ADD_RELU_Q = (ADD_Q[0], ADD_Q[1], (0.065, -128))
# the KernelDNA attention: ReLU(conv output (no activation) * sigmoid weight per channel)
MUL_RELU_Q = ((0.05, 3), (1 / 256, -128), (0.025, -128))


def the_model() -> Net:
    n = Net()
    # CONV_2D: the stem, a ReLU conv, a depthwise-as-grouped conv (onnx2tf's lowering), a pointwise
    # conv, time on H, and the largest shape (T 128, 32 -> 64)
    n.conv("stem k5 [1,1,100,6]->16", [1, 1, 100, 6], 16, 5, 1, SAME, in_zp=5)
    n.conv("k3 [1,1,50,24]->32", [1, 1, 50, 24], 32, 3, 1, SAME)
    n.conv("grouped 24 k3 s2 valid [1,1,52,24]", [1, 1, 52, 24], 24, 3, 2, VALID, groups=24)
    n.conv("pointwise [1,1,25,24]->32", [1, 1, 25, 24], 32, 1, 1, VALID)
    n.conv("time on H k5 s2 [1,37,1,8]->12", [1, 37, 1, 8], 12, 5, 2, SAME)
    n.conv("k3 [1,1,128,32]->64", [1, 1, 128, 32], 64, 3, 1, SAME)
    n.dwconv("k3 [1,1,40,16]", 40, 16, 1, 3, 1, SAME)
    n.dwconv("k5 s2 [1,1,33,10]", 33, 10, 1, 5, 2, SAME)
    n.dwconv("mult 2 k3 [1,1,19,4]", 19, 4, 2, 3, 1, SAME)
    n.fc("classifier 32->4 per-channel", 1, 32, 4, True)
    n.fc("16->4 per-tensor relu", 1, 16, 4, False, act=RELU)
    n.fc("batched 3x30->5 per-channel", 3, 30, 5, True)
    n.fc("64->64 per-channel", 1, 64, 64, True)
    n.mean("[1,1,100,16] axes 1,2", [1, 1, 100, 16], [1, 2])
    n.mean("[1,25,32] axis 1", [1, 25, 32], [1])
    n.mean("[1,128,64] axis 1", [1, 128, 64], [1])
    n.mean("[1,19,4] axis 1", [1, 19, 4], [1])
    for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        n.pool(op, "global over time [1,50,1,24]", [1, 50, 1, 24], 50, 1, VALID)
        n.pool(op, "global over time [1,128,1,64]", [1, 128, 1, 64], 128, 1, VALID)
        n.pool(op, "global over time [1,19,1,4]", [1, 19, 1, 4], 19, 1, VALID)
        n.pool(op, "k2 s2 valid [1,1,40,8]", [1, 1, 40, 8], 2, 2, VALID)
        n.pool(op, "k3 s1 same [1,1,37,16]", [1, 1, 37, 16], 3, 1, SAME)
    for op, q in (("ADD", ADD_Q), ("MUL", MUL_Q)):
        n.binary(op, "equal [1,1,50,24]", [1, 1, 50, 24], [1, 1, 50, 24], *q)
        n.binary(op, "equal [1,128,64]", [1, 128, 64], [1, 128, 64], *q)
        n.binary(op, "equal [1,19,4]", [1, 19, 4], [1, 19, 4], *q)
        n.binary(op, "broadcast [1,50,24] x [1,1,1]", [1, 50, 24], [1, 1, 1], *q)
        n.binary(op, "broadcast [1,128,64] x [1,1,1]", [1, 128, 64], [1, 1, 1], *q)
        n.binary(op, "broadcast [1,19,4] x [1,1,1]", [1, 19, 4], [1, 1, 1], *q)
    # relu 1: about half the outputs clamp (a dyconv's last sum; the KernelDNA attention, [1,T,C] x [1,C])
    n.binary("ADD", "relu-fused equal [1,1,50,24]", [1, 1, 50, 24], [1, 1, 50, 24], *ADD_RELU_Q, act=RELU)
    n.binary("ADD", "relu-fused equal [1,128,64]", [1, 128, 64], [1, 128, 64], *ADD_RELU_Q, act=RELU)
    n.binary("ADD", "relu-fused broadcast [1,50,24] x [1,24]", [1, 50, 24], [1, 24], *ADD_RELU_Q, act=RELU)
    n.binary("MUL", "relu-fused attention [1,50,24] x [1,24]", [1, 50, 24], [1, 24], *MUL_RELU_Q, act=RELU)
    n.binary("MUL", "relu-fused attention [1,128,64] x [1,64]", [1, 128, 64], [1, 64], *MUL_RELU_Q, act=RELU)
    n.binary("MUL", "relu-fused attention [1,19,12] x [1,12]", [1, 19, 12], [1, 12], *MUL_RELU_Q, act=RELU)
    # softmax's cost depends on the input bytes and scale (one multiply per set bit of each
    # scaled difference): the asserted cases use the bench's input scale, the INFO ones others
    n.softmax("dyconv attention [1,4]", [1, 4], 0.0025, 3)
    n.softmax("dyconv attention [1,2]", [1, 2], 0.0025, -7)
    n.softmax("10 classes [1,10]", [1, 10], 0.0025, 0)
    n.softmax("[3,16]", [3, 16], 0.0025, 0)
    n.logistic("gate [1,1,24]", [1, 1, 24], 0.03, 4)
    n.logistic("gate [1,50,24]", [1, 50, 24], 1 / 32, 0)
    n.pad("time 2+2 [1,1,100,16]", [1, 1, 100, 16], [[0, 0], [0, 0], [2, 2], [0, 0]])
    n.pad("time 1+1 [1,1,50,24]", [1, 1, 50, 24], [[0, 0], [0, 0], [1, 1], [0, 0]])
    n.pad("3-D time 1+2 [1,25,6]", [1, 25, 6], [[0, 0], [1, 2], [0, 0]])
    n.pad("time on H 2+2 [1,128,1,64]", [1, 128, 1, 64], [[0, 0], [2, 2], [0, 0], [0, 0]])
    n.slice("dyconv expert weight [1,4] -> [1,1]", [1, 4], [0, 2], [0, 3], [1, 1], [1, 1], begin_mask=1, end_mask=1)
    # rows 4, 6, .. 18, each starting at a multiple of 4 bytes as the bench's rows (from index 0) do
    n.slice("time step 2 [1,20,6] -> [1,8,4]", [1, 20, 6], [0, -16, 0], [1, 19, 4], [1, 2, 1], [1, 8, 4])
    n.slice("reverse time, channel step 2 [1,1,13,3]", [1, 1, 13, 3], [0, 0, -1, 0], [0, 0, 0, 0], [1, 1, -1, 2],
            [1, 1, 13, 2], begin_mask=0b1011, end_mask=0b1111)
    # the activations Keras and PyTorch models hold standalone, with the bench's quantisations
    for shape in ([1, 1, 64, 16], [1, 50, 24], [1, 24]):
        dims = "x".join(map(str, shape))
        n.unary("RELU", f"[{dims}]", shape, (0.05, 0), (0.025, -128))
        n.unary("RELU6", f"[{dims}]", shape, (0.1, -20), (0.1, -20))
        n.unary("TANH", f"[{dims}]", shape, (1 / 32, 0), (1 / 128, 0))
        n.unary("HARD_SWISH", f"[{dims}]", shape, (0.05, 0), (0.035, -117))
        n.unary("QUANTIZE", f"[{dims}]", shape, (0.06, -128), (0.09, -100))
    n.concat("channels 2 x [1,64,8]", [[1, 64, 8], [1, 64, 8]], 2)
    n.concat("channels 4 x [1,1,32,8]", [[1, 1, 32, 8]] * 4, 3)
    n.concat("time 2 x [1,20,6]", [[1, 20, 6], [1, 20, 6]], 1)
    # split-form DY-Conv and KernelDNA chains, fused by the code generator into one call
    n.dyconv("dyconv K=4 [1,1,64,32]->32 k5", 64, 32, 32, 5, 4)
    n.dyconv("dyconv K=2 [1,1,50,24]->24 k3", 50, 24, 24, 3, 2)
    n.dyconv("kdna [1,1,64,32]->32 k5", 64, 32, 32, 5, 1, kdna=True)
    # for information only: costs the table does not model (value-dependent paths)
    n.softmax("INFO input scale 0.00245 (the demo's) [1,4]", [1, 4], 0.00245, 3, asserted=False)
    n.softmax("INFO input scale 0.05 [1,4]", [1, 4], 0.05, 0, asserted=False)
    n.logistic("INFO input scale 0.1 (beyond the radius) [1,50,24]", [1, 50, 24], 0.1, 0, asserted=False)
    # begin is not a cost field, but it moves the copied rows: rows at odd addresses cost memcpy's
    # unaligned path (the bench slices from index 0, i.e. word-aligned rows)
    n.slice("INFO unaligned rows, time step 2 [1,20,6] -> [1,7,4]", [1, 20, 6], [0, -15, 1], [1, 19, 5], [1, 2, 1],
            [1, 7, 4], asserted=False)
    # the Keras test model's concatenation: rows 8, 8, 8, 4 (the bench splits 28 as 7 x 4)
    n.concat("INFO uneven rows [1,64,8] x 3 + [1,64,4]", [[1, 64, 8]] * 3 + [[1, 64, 4]], 2, asserted=False)
    return n


_FIELD = re.compile(r"\.(\w+) = (\{[^{}]*\}|-?\d+)")


def layer_params(source: str) -> dict[str, dict[str, int | tuple[int, ...]]]:
    """params struct name (mn_pN) -> its integer fields, read from the generated micronas_model.c."""
    out = {}
    for m in re.finditer(r"static const mn_\w+_params (mn_p\d+) = \{(.*?)\n\};", source, re.S):
        fields: dict[str, int | tuple[int, ...]] = {}
        for name, value in _FIELD.findall(m.group(2)):
            fields[name] = tuple(int(v) for v in value.strip("{}").split(",")) if value.startswith("{") else int(value)
        out[m.group(1)] = fields
    return out


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """(DeviceClient, to_instructions, generated model, Net) on one emulated board, for the module."""
    from firmware_export import codegen
    from targets import boards
    from micronas.device import build_image
    from targets.protocol import DeviceClient
    from targets.qemu import EmulatedBoard, instructions_from_ticks

    root = tmp_path_factory.mktemp("bench_ops")
    net = the_model()
    gen = codegen.generate(net.build(), labels=("y",), input_mean=(0.0,) * X_BYTES, input_std=(1.0,) * X_BYTES)
    codegen.write(gen, root / "c")
    board = boards.get(BOARD)
    image = build_image(board, root / "c", root / "fw", emulated=True, simd=True)
    with EmulatedBoard(board.qemu.machine, image.elf, root / "qemu") as emu:
        with DeviceClient.open(emu.url, timeout_s=20.0) as dev:
            hello = dev.hello()
            yield dev, (lambda t: instructions_from_ticks(t, hello.timer_hz, emu.icount_shift)), gen, net


@pytest.fixture(scope="module")
def comparison(device):
    """One row per layer: (op, name, asserted, cost, in-model instructions, BENCH_OP instructions)."""
    from latency_tables.keys import cost_params

    dev, instr, gen, net = device
    by_index = {la.index: la for la in net.layers}
    assert sorted(g.index for g in gen.layers) == sorted(by_index)
    # the same model on other input bytes: how much each layer's cost depends on the data
    dev.set_input(np.random.default_rng(1).integers(-128, 128, X_BYTES).astype(np.int8).tobytes())
    dev.invoke(1, per_layer=True)
    other_data = dev.get_layers()
    dev.set_input(fill_stream(X_BYTES))
    dev.invoke(1, per_layer=True)
    in_model = dev.get_layers()
    params = layer_params(gen.source)
    rows = []
    for k, g in enumerate(gen.layers):
        la = by_index[g.index]
        assert la.op == g.op
        cost = cost_params(g.op, g.fields)  # as the product keys a layer (latency_tables.keys)
        # ... from the params struct the C source holds, plus ADD/MUL's fused ReLU
        p = params[re.search(r"&(mn_p\d+)", g.call).group(1)]
        assert {f: v for f, v in cost.items() if f != "relu"} == {f: p[f] for f in cost if f != "relu"}, la.name
        if la.op in ("ADD", "MUL"):
            assert cost["relu"] == la.relu, la.name
        bench = dev.bench_op(*bench_request(la.op, cost), count=1)
        rows.append((la.op, la.name, la.asserted, cost, instr(in_model[k]), instr(bench.min_ticks),
                     instr(other_data[k])))
    rows.sort(key=lambda r: (list(BENCH_KERNELS).index(r[0]), r[1]))
    lines = [f"{'op':<18} {'case':<48} {'model':>10} {'bench':>10} {'diff':>7} {'rel %':>7} {'data %':>7}"]
    shown = set()
    for op, name, asserted, _, m, b, o in rows:
        if (name, m, b) in shown:  # the many equal feed slices once
            continue
        shown.add((name, m, b))
        lines.append(f"{op:<18} {name:<48} {m:>10.1f} {b:>10.1f} {b - m:>7.1f} {100 * (b - m) / m:>7.3f} "
                     f"{100 * (o - m) / m:>7.3f}")
    print("\nBENCH_OP vs the layer in the generated model (instructions, nucleo-f446re under QEMU; data %: "
          "the layer on other input bytes vs on the bench's)\n" + "\n".join(lines))
    return [r[:6] for r in rows]


@needs_arm
def test_bench_op_equals_the_layer_in_a_generated_model(comparison):
    """THE key property of the latency tables: for every op, BENCH_OP's instruction count for
    the layer's cost parameters is the layer's own count in INVOKE mode 1, within REL_TOL (or
    ABS_TOL instructions for very small layers)."""
    assert {op for op, _, asserted, *_ in comparison if asserted} == set(BENCH_KERNELS)
    def tolerance(op: str, cost: dict, m: float) -> float:
        setup = CONCAT_SETUP_PER_INPUT * cost["count"] if op == "CONCATENATION" else 0
        return max(REL_TOL * m, ABS_TOL) + setup

    bad = [f"{op} {name}: model {m:.1f}, bench {b:.1f} ({100 * (b - m) / m:+.3f}%)"
           for op, name, asserted, cost, m, b in comparison
           if asserted and abs(b - m) > tolerance(op, cost, m)]
    assert not bad, "\n".join(bad)


@needs_arm
def test_the_value_dependent_costs_are_what_the_docs_say(device, comparison):
    """A fused ReLU clamps about half the outputs of an ADD/MUL, which the key must tell apart
    (the relu = 0 figure is off by more than REL_TOL); the INFO layers: softmax of a larger input
    scale and logistic inputs beyond the radius differ from the table."""
    dev, instr = device[:2]
    relu = [(op, name, cost, m, b) for op, name, asserted, cost, m, b in comparison if cost.get("relu")]
    assert {op for op, *_ in relu} == {"ADD", "MUL"}
    for op, name, cost, m, b in relu:
        b0 = instr(dev.bench_op(*bench_request(op, {**cost, "relu": 0}), count=1).min_ticks)
        print(f"{op} {name}: model {m:.1f}, bench relu=1 {b:.1f} ({100 * (b - m) / m:+.3f}%), "
              f"relu=0 {b0:.1f} ({100 * (b0 - m) / m:+.3f}%)")
        assert abs(b0 - m) > REL_TOL * m and 0.01 < (b0 - b) / b < 0.06, (op, name, m, b, b0)
    info = {name: (m, b) for op, name, asserted, _, m, b in comparison if not asserted}
    rel = {name: (b - m) / m for name, (m, b) in info.items()}
    assert 0.0 < rel["INFO input scale 0.00245 (the demo's) [1,4]"] < 0.01  # "0.7% less" than the table
    assert -0.08 < rel["INFO input scale 0.05 [1,4]"] < -0.02  # "~5% more"
    assert 0.02 < rel["INFO input scale 0.1 (beyond the radius) [1,50,24]"] < 0.1  # faster than the table
    m, b = info["INFO unaligned rows, time step 2 [1,20,6] -> [1,7,4]"]
    assert m - b > ABS_TOL  # ~2 instructions more per unaligned 4-byte row


@needs_arm
def test_device_rejects_bad_lengths_and_values(device):
    from targets.protocol import DeviceReportedError, ErrorCode

    dev = device[0]

    def code(kernel: int, params: bytes) -> tuple[int, str]:
        with pytest.raises(DeviceReportedError) as e:
            dev.bench_op(kernel, params, count=1)
        return e.value.code, e.value.detail

    for op, (cost, want) in PACKING.items():
        kernel, params = bench_request(op, cost)
        if kernel > 3:
            c, detail = code(kernel, params[:-4])
            assert c == ErrorCode.BAD_LENGTH and f"{len(want)} x i32" in detail, (op, detail)
            assert code(kernel, params + b"\0\0\0\0")[0] == ErrorCode.BAD_LENGTH
    assert code(max(BENCH_KERNELS.values()) + 1, b"")[0] == ErrorCode.UNSUPPORTED

    def raw(op: str, fields: dict) -> bytes:
        """The params bytes of every field of PARAM_FIELDS[op], packed here (not by bench_request)."""
        values = [v for name in PARAM_FIELDS[op] for v in (fields[name] if name in VECTOR_FIELDS[op]
                                                            else (fields[name],))]
        return struct.pack(f"<{len(values)}i", *values)

    def bad_raw(op: str, fields: dict, match: str) -> None:
        c, detail = code(BENCH_KERNELS[op], raw(op, fields))
        assert c == ErrorCode.OUT_OF_RANGE and re.search(match, detail), (op, fields, detail)

    def bad(op: str, cost: dict, match: str, **override) -> None:
        """OUT_OF_RANGE for the fields of `cost` (+ representative values) with `override` applied."""
        bad_raw(op, {**bench_fields(op, cost), **override}, match)

    mean, pool = PACKING["MEAN"][0], PACKING["MAX_POOL_2D"][0]
    bad("MEAN", mean, "mean sizes", reduce=0)
    bad("MEAN", {**mean, "reduce": 16385}, "mean sizes")
    bad("MEAN", mean, "zero points", input_zero_point=128)
    bad("MEAN", mean, "shift -31..30", shift=31)
    bad("MEAN", mean, "multiplier must be >= 0", multiplier=-1)
    bad("MEAN", {"outer": 4096, "reduce": 4096, "inner": 16}, "do not fit")
    bad("AVERAGE_POOL_2D", {**pool, "pad_before": 2}, "every pool window must cover an input")
    bad("MAX_POOL_2D", {**pool, "out_len": 21}, "every pool window must cover an input")
    bad("MAX_POOL_2D", {**pool, "stride": 0}, "pool sizes")
    bad("MAX_POOL_2D", pool, "activation range", act_min=10, act_max=9)
    add, mul = PACKING["ADD"][0], PACKING["MUL"][0]
    bad("ADD", {**add, "in1_strides": V(0, 0, 0, -1)}, "strides 0..16777216")
    bad("ADD", {**add, "out_dims": V(1, 1, 0, 1200)}, "out_dims")
    bad("ADD", {**add, "in2_strides": V(0, 0, 0, 1 << 20)}, "do not fit")  # in2 would span 1.2 GB
    bad("ADD", {**add, "out_dims": V(1 << 24, 1 << 24, 1, 1)}, "do not fit")
    bad("ADD", add, "left_shift", left_shift=21)
    bad("ADD", add, "input shifts -31..0", input1_shift=1)
    bad("ADD", add, "offsets", input2_offset=257)
    bad("MUL", {**mul, "in2_strides": V(0, 1 << 25, 0, 0)}, "strides")
    bad("MUL", mul, "output_shift", output_shift=31)
    bad("SOFTMAX", {"outer": 1, "depth": 512}, "depth 1..511")
    bad("SOFTMAX", {"outer": 1, "depth": 4}, "diff_min <= 0", diff_min=1)
    bad("SOFTMAX", {"outer": 1, "depth": 4}, "below 2\\^31", input_left_shift=24)  # 255 << 24 overflows
    bad("LOGISTIC", {"size": 0}, "size")
    bad("LOGISTIC", {"size": 8}, "2\\^31", input_range_radius=1000, input_left_shift=24)
    bad("LOGISTIC", {"size": 8}, "zero_point", input_zero_point=-129)
    bad("RELU", {"size": 8}, "activation range", act_min=0, act_max=-1)
    bad("RELU6", {"size": 0}, "relu6 size")
    bad("TANH", {"size": 8}, "2\\^31", input_range_radius=1000, input_left_shift=24)
    bad("HARD_SWISH", {"size": 8}, "output_exponent -15..0", output_exponent=1)
    bad("HARD_SWISH", {"size": 8}, "multipliers must be 0..32767", reluish_multiplier=32768)
    bad("QUANTIZE", {"size": 8}, "shift -31..30", shift=31)
    bad("CONCATENATION", {"outer": 4, "count": 11, "out_row": 16}, "count 1..10")
    bad("CONCATENATION", {"outer": 4, "count": 5, "out_row": 4}, "at most out_row")
    bad("CONCATENATION", {"outer": 1 << 24, "count": 2, "out_row": 16384}, "do not fit")
    pad = PACKING["PAD"][0]
    bad("PAD", {**pad, "pad_after": V(0, 0, -1, 0)}, "pad_before and pad_after 0..16384")
    bad("PAD", {**pad, "in_dims": V(64, 64, 64, 64)}, "do not fit")
    bad("PAD", pad, "pad_value", pad_value=128)
    sl = PACKING["STRIDED_SLICE"][0]
    bad("STRIDED_SLICE", {**sl, "step": V(1, 1, 1, 0)}, "step")
    # a non-zero begin is not a cost parameter: these requests are packed here
    sl_raw = {**sl, "begin": V(0, 0, 0, 2)}
    assert raw("STRIDED_SLICE", {**sl, "begin": V(0, 0, 0, 0)}) == bench_request("STRIDED_SLICE", sl)[1]
    assert dev.bench_op(BENCH_KERNELS["STRIDED_SLICE"], raw("STRIDED_SLICE", sl_raw), count=1).count == 1
    bad_raw("STRIDED_SLICE", {**sl_raw, "out_dims": V(1, 1, 1, 3), "step": V(1, 1, 1, -1), "begin": V(0, 0, 0, 1)},
            r"begin \+ \(out_dims-1\)\*step")
    bad_raw("STRIDED_SLICE", {**sl_raw, "begin": V(0, 0, 1 << 20, 0), "in_strides": V(0, 0, 1 << 10, 1)},
            "do not fit")
    # the device still works and the model still runs after the errors
    assert dev.bench_op(*bench_request("SOFTMAX", {"outer": 1, "depth": 4}), count=2).count == 2

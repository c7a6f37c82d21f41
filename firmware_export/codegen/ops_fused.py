"""The fused CONV_2D -> MUL(attention) -> ADD chain (split-form DY-Conv, KernelDNA): its emitter.

Not a TFLite builtin: `fusion.fuse` recognises the chain in the graph and replaces it by one op
of this name before planning, so that the generated C makes one call (mn_conv_mul_add_s8,
firmware_export/runtime/mn_fused.c) and the arena holds none of the chain's intermediate
tensors. Every constant is the unfused ops' own (TFLM's Prepare maths of CONV_2D, MUL and ADD,
reused from their emitters), so the kernel forms each intermediate int8 exactly as they do.
"""

from __future__ import annotations

import numpy as np

from micronas_base.errors import ExportError

from ..tflite_graph import Op
from .fusion import FUSED_OP, Chain
from .ops_elementwise import add_multipliers, mul_multiplier
from .ops import _BENCH_MULT, _BENCH_SHIFT, _QUANT_MESSAGE, Conv2D, conv_1d, has_bias, per_channel_multipliers
from .plan import NULL, CodeGen, PlannedLayer
from .quant import activation_range
from .registry import Bench, BenchTensor, RuntimeOp, check, runtime_op

QUANT_FIELDS = 23  # MN_FUSED_QUANT: int32 per expert in `quant` (micronas_runtime.h)


def expert_quant(chain: Chain, e: int, cg: CodeGen) -> list[int]:
    """Expert `e`'s row of the kernel's `quant` table (the order of micronas_runtime.h)."""
    b = chain.branches[e]
    conv_out = cg.t(b.conv.outputs[0])
    conv_act = activation_range(b.conv.options["fusedActivationFunction"], conv_out.scale, conv_out.zero_point)
    xc, xa, ym = cg.t(b.mul.inputs[b.conv_slot]), cg.t(b.mul.inputs[1 - b.conv_slot]), cg.t(b.mul.outputs[0])
    s1, s2 = cg.t(b.mul.inputs[0]).scale, cg.t(b.mul.inputs[1]).scale  # TFLM's order: in1 * in2 / out
    mul_m, mul_s = mul_multiplier(s1, s2, ym.scale)
    mul_act = activation_range(b.mul.options.get("fusedActivationFunction", 0), ym.scale, ym.zero_point)
    row = [b.att_index, conv_out.zero_point, *conv_act, -xc.zero_point, -xa.zero_point, ym.zero_point, mul_m, mul_s,
           *mul_act]
    if e == 0:
        return row + [0] * (QUANT_FIELDS - len(row))
    add = chain.adds[e - 1]
    prev = chain.prev_slot[e - 1]
    x1, x2, y = cg.t(add.inputs[0]), cg.t(add.inputs[1]), cg.t(add.outputs[0])
    m = add_multipliers(add.name, x1.scale, x2.scale, y.scale)
    side = {"1": ("input1_multiplier", "input1_shift", x1), "2": ("input2_multiplier", "input2_shift", x2)}
    mp, sp, tp = side["1" if prev == 0 else "2"]
    mn, sn, tn = side["2" if prev == 0 else "1"]
    add_act = activation_range(add.options.get("fusedActivationFunction", 0), y.scale, y.zero_point)
    return row + [-tp.zero_point, -tn.zero_point, y.zero_point, m["left_shift"], m[mp], m[sp], m[mn], m[sn],
                  m["output_multiplier"], m["output_shift"], *add_act]


def _bench_helpers() -> str:
    """C helper filling BENCH_OP's `quant` table with an exported model's kind of values."""
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    # conv outputs zero point 0, no activation; MUL: conv (scale 1) x softmax weight (1/256, zero
    # point -128) -> scale 0.5; ADD: running sum (scale 1) + branch (0.5) -> scale 1, the last
    # with the ReLU at zero point -128 (about half the outputs clamp), as DyConvBlock exports.
    mm, ms = mul_multiplier(f32(1.0), f32(1 / 256), f32(0.5))
    a = add_multipliers("ADD", f32(1.0), f32(0.5), f32(1.0))
    return f"""\
static void mn_bench_fused_quant(const mn_conv_mul_add_params *p, int32_t *q, uint64_t n) {{
    (void)n;
    for (int32_t e = 0; e < p->experts; ++e, q += MN_FUSED_QUANT) {{
        const int last = e == p->experts - 1;
        const int32_t row[MN_FUSED_QUANT] = {{
            p->att_stride ? 0 : e, 0, -128, 127,
            0, 128, last && p->experts == 1 ? -128 : 0, {mm}, {ms}, -128, 127,
            0, 0, last ? -128 : 0, {a["left_shift"]}, {a["input1_multiplier"]}, {a["input1_shift"]},
            {a["input2_multiplier"]}, {a["input2_shift"]}, {a["output_multiplier"]}, {a["output_shift"]}, -128, 127}};
        for (int i = 0; i < MN_FUSED_QUANT; ++i) q[i] = e == 0 && i >= 11 ? 0 : row[i];
    }}
}}
"""


_GEOMETRY = ("in_len", "in_ch", "out_len", "out_ch", "kernel", "stride", "dilation", "pad_before", "groups")


@runtime_op(
    FUSED_OP,
    summary="a split-form DY-Conv's K CONV_2D -> MUL(attention) -> ADD chain (K = 1: KernelDNA's CONV_2D -> "
            "MUL) as one kernel, fused by the code generator (no intermediate tensors)",
    produced_by=("dyconv", "kdna"),
    struct="mn_conv_mul_add_params", function="mn_conv_mul_add_s8", kernel_id=19,
    cost_fields=(*_GEOMETRY, "experts", "att_stride"),
    param_fields=(*_GEOMETRY, "experts", "att_stride", "input_offset", "filter_stride"),
    bench=Bench(
        call="mn_conv_mul_add_s8(p, in, w, bias, att, out)",
        tensors=(BenchTensor("in", "int8_t", "(uint64_t)p->in_len * p->in_ch", "seeded"),
                 # one filter read by every expert (filter_stride 0), so that the widest layers fit
                 BenchTensor("w", "int8_t", "(uint64_t)p->out_ch * p->kernel * (p->in_ch / p->groups)", "seeded"),
                 BenchTensor("att", "int8_t", "(uint64_t)(p->att_stride ? p->out_ch : p->experts)", "stream"),
                 BenchTensor("out", "int8_t", "(uint64_t)p->out_len * p->out_ch", output=True),
                 BenchTensor("bias", "int32_t", "(uint64_t)p->experts * p->out_ch", 0),
                 BenchTensor("mult", "int32_t", "(uint64_t)p->experts * p->out_ch", _BENCH_MULT, into="out_multiplier"),
                 BenchTensor("shift", "int32_t", "(uint64_t)p->experts * p->out_ch", _BENCH_SHIFT, into="out_shift"),
                 BenchTensor("quant", "int32_t", "(uint64_t)p->experts * MN_FUSED_QUANT", "helper:mn_bench_fused_quant",
                             into="quant")),
        checks=(check("fused conv sizes must be 1..16384 (pad_before 0..16384)",
                      dim=("in_len", "in_ch", "out_len", "out_ch", "kernel", "stride", "dilation", "groups"),
                      pad="pad_before"),
                check("groups must divide in_ch and out_ch", "p->in_ch % p->groups == 0 && p->out_ch % p->groups == 0"),
                check("fused experts must be 1..16 and att_stride 0 or 1", "mn_bench_in(p->experts, 1, 16)",
                      flag="att_stride"),
                check(_QUANT_MESSAGE, offset="input_offset"),
                check("fused filter_stride must be 0 (BENCH_OP allocates one filter for every expert)",
                      "p->filter_stride == 0")),
        helpers=_bench_helpers(),
    ),
)
class FusedConvMulAdd(RuntimeOp):
    """K expert convs, each scaled by its attention value, summed: the unfused ops' arithmetic."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        chain: Chain = op.options["chain"]
        convs = [b.conv for b in chain.branches]
        w0 = cg.t(convs[0].inputs[1])
        o_ch, kh, kw, cf = w0.shape
        g = conv_1d(convs[0], cg, kh, kw)
        if o_ch != g.out_ch or g.in_ch % cf:
            raise ExportError(f"CONV_2D filter {list(w0.shape)} does not fit {g.in_ch} -> {g.out_ch} channels")
        x = cg.t(convs[0].inputs[0])
        mults, shifts, biases = [], [], []
        for c in convs:
            m, s = per_channel_multipliers(x, cg.t(c.inputs[1]), cg.t(c.outputs[0]))
            mults += m
            shifts += s
            biased = has_bias(c)
            if biased and cg.t(c.inputs[2]).dtype != np.int32:
                raise ExportError(f"CONV_2D bias {cg.t(c.inputs[2]).name!r} is {cg.t(c.inputs[2]).dtype}; "
                                  "expected int32")
            biases.append(cg.t(c.inputs[2]).data if biased else None)
        quant = [expert_quant(chain, e, cg) for e in range(len(convs))]
        fields = {
            "in_len": g.in_len, "in_ch": g.in_ch, "out_len": g.out_len, "out_ch": g.out_ch,
            "kernel": g.kernel, "stride": g.stride, "dilation": g.dilation, "pad_before": g.pad_before,
            "groups": g.in_ch // cf, "experts": len(convs), "att_stride": chain.branches[0].att_stride,
            "input_offset": -x.zero_point, "filter_stride": g.out_ch * g.kernel * cf, "quant": cg.const(np.asarray(quant, np.int32).reshape(-1), shared=False),
            # per-layer tables, not shared by value: trained layers (and the lowering's synthetic
            # ones) repeat them only by chance, so sharing them would make flash figures a lottery
            "out_multiplier": cg.const(np.asarray(mults, np.int32), shared=False),
            "out_shift": cg.const(np.asarray(shifts, np.int32), shared=False),
        }
        # one array of filters (and of biases) in expert order; a single expert keeps its own
        # filter array, so a KernelDNA parent shared by several layers stays one constant
        filters = cg.const(np.concatenate([cg.t(c.inputs[1]).data.reshape(-1) for c in convs])
                           if len(convs) > 1 else cg.t(convs[0].inputs[1]).data)
        bias = NULL if all(b is None for b in biases) else cg.const(np.concatenate(
            [b.reshape(-1) if b is not None else np.zeros(g.out_ch, np.int32) for b in biases]).astype(np.int32),
            shared=False)
        return cg.layer(op, fields, [cg.ptr(convs[0].inputs[0]), filters, bias, cg.ptr(op.inputs[1]),
                                     cg.ptr(op.outputs[0])])

    def macs(self, op: Op, cg: CodeGen) -> int:
        """The convs' multiply-accumulates plus one multiply per element per MUL (as unfused)."""
        chain: Chain = op.options["chain"]
        conv = Conv2D()
        return sum(conv.macs(b.conv, cg) + int(np.prod(cg.t(b.mul.outputs[0]).shape, dtype=np.int64))
                   for b in chain.branches)

    def bench_values(self, cost) -> dict[str, int]:
        # a ReLU output's zero point -128, as every DY-Conv's input; one filter for all experts
        return {"input_offset": 128, "filter_stride": 0}


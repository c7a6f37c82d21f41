"""FUSED_CONV_MUL_ADD cases: split-form DY-Conv chains and KernelDNA's conv -> MUL, as graphs.

The code generator fuses these (firmware_export/codegen/fusion.py); TFLM runs the unfused ops.
Each model computes its attention from the input (AVERAGE_POOL_2D over time, FULLY_CONNECTED,
SOFTMAX or LOGISTIC), so every random window has its own attention values, and its experts
from the same input: K CONV_2D, each MUL'd by its STRIDED_SLICE of the softmax (KernelDNA: by the
whole per-channel vector), summed by K - 1 ADD, the last with the ReLU. Every expert, MUL and ADD
has its own quantisation.
"""

from __future__ import annotations

import numpy as np

from .runtime_cases import NONE, RELU, SAME, VALID, _io_quant, _out_scale, case
from .tflite_builder import ModelBuilder, bias_for, per_channel_weights


def _reshape(b: ModelBuilder, x: int, shape, scale: float, zp: int) -> int:
    y = b.tensor(shape, scale=scale, zero_point=zp)
    b.op("RESHAPE", [x, b.const_i32(shape)], [y], newShape=np.asarray(shape, np.int32))
    return y


def chain_model(in_len: int, in_ch: int, out_ch: int, kernel: int, experts: int, stride: int = 1,
                padding: int = SAME, kdna: bool = False, swap: bool = False, conv_act: int = NONE,
                mul_act: int | None = None, seed: int = 0) -> bytes:
    """A DY-Conv (or, kdna=True, KernelDNA) layer in split form over a [1, in_len, in_ch] input.

    Args:
        swap: Put the attention first in every MUL and the new branch first in every ADD (the
            running sum second), so the fused kernel must take each operand's own constants.
        conv_act: The experts' fused activation (exported DY-Convs have none; a KernelDNA's conv
            has ReLU, and its output zero point is then -128).
        mul_act: The MUL's fused activation (None: ReLU for KernelDNA as it exported before the
            ReLU moved onto its conv, none for DY-Conv).
    """
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in, z_in = _io_quant(rng)
    x = b.tensor([1, in_len, in_ch], scale=s_in, zero_point=z_in)
    # attention: mean over time -> FC -> softmax (DY-Conv) or logistic (KernelDNA)
    pooled = b.tensor([1, 1, 1, in_ch], scale=s_in, zero_point=z_in)
    b.op("AVERAGE_POOL_2D", [_reshape(b, x, [1, in_len, 1, in_ch], s_in, z_in)], [pooled], padding=VALID,
         strideW=1, strideH=in_len, filterWidth=1, filterHeight=in_len, fusedActivationFunction=NONE)
    n_att = out_ch if kdna else experts
    wf = rng.integers(-127, 128, size=(n_att, in_ch)).astype(np.int8)
    wfs = float(rng.uniform(0.01, 0.05))
    logits = b.tensor([1, n_att], scale=_out_scale(s_in, wfs, in_ch) / 4, zero_point=int(rng.integers(-10, 10)))
    b.op("FULLY_CONNECTED", [_reshape(b, pooled, [1, in_ch], s_in, z_in),
                             b.tensor(wf.shape, data=wf, scale=wfs, zero_point=0),
                             b.tensor([n_att], np.int32, scale=s_in * wfs, zero_point=0,
                                      data=rng.integers(-500, 500, n_att).astype(np.int32))],
         [logits], fusedActivationFunction=NONE)
    att = b.tensor([1, n_att], scale=1 / 256, zero_point=-128)
    if kdna:
        b.op("LOGISTIC", [logits], [att])
    else:
        b.op("SOFTMAX", [logits], [att], beta=1.0)
    x4 = _reshape(b, x, [1, 1, in_len, in_ch], s_in, z_in)
    out_len = -(-in_len // stride) if padding == SAME else (in_len - kernel) // stride + 1
    total, s_total, z_total = None, 0.0, 0
    for e in range(1 if kdna else experts):
        w, ws = per_channel_weights(rng, (out_ch, 1, kernel, in_ch))
        s_conv, z_conv = _out_scale(s_in, float(ws.mean()), kernel * in_ch), int(rng.integers(-20, 20))
        if kdna and conv_act == RELU:
            z_conv = -128
        y4 = b.tensor([1, 1, out_len, out_ch], scale=s_conv, zero_point=z_conv)
        b.op("CONV_2D", [x4, b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(out_ch, int)),
                         b.tensor([out_ch], np.int32, scale=s_in * ws, zero_point=np.zeros(out_ch, int),
                                  data=bias_for(rng, out_ch))],
             [y4], padding=padding, strideW=stride, strideH=1, dilationWFactor=1, dilationHFactor=1,
             fusedActivationFunction=conv_act)
        y = _reshape(b, y4, [1, out_len, out_ch], s_conv, z_conv)
        if kdna:
            a = att
        else:
            a1 = b.tensor([1, 1], scale=1 / 256, zero_point=-128)
            b.op("STRIDED_SLICE", [att, b.const_i32([0, e]), b.const_i32([1, e + 1]), b.const_i32([1, 1])], [a1],
                 beginMask=0, endMask=0, ellipsisMask=0, newAxisMask=0, shrinkAxisMask=0, offset=False)
            a = _reshape(b, a1, [1, 1, 1], 1 / 256, -128)
        s_m = s_conv * float(rng.uniform(0.3, 0.7)) * (0.5 if kdna else 1.0)
        z_m = -128 if kdna else int(rng.integers(-20, 20))
        m = b.tensor([1, out_len, out_ch], scale=s_m, zero_point=z_m)
        b.op("MUL", [a, y] if swap else [y, a], [m],
             fusedActivationFunction=(RELU if kdna else NONE) if mul_act is None else mul_act)
        if total is None:
            total, s_total, z_total = m, s_m, z_m
            continue
        last = e == experts - 1
        s_sum = (s_total + s_m) * float(rng.uniform(0.5, 0.8))
        z_sum = -128 if last else int(rng.integers(-20, 20))
        out = b.tensor([1, out_len, out_ch], scale=s_sum, zero_point=z_sum)
        b.op("ADD", [m, total] if swap else [total, m], [out], fusedActivationFunction=RELU if last else NONE)
        total, s_total, z_total = out, s_sum, z_sum
    return b.build([x], [total])


# LiteRT's optimized AVERAGE_POOL_2D / SOFTMAX / LOGISTIC round differently from TFLM's reference
# kernels in a few windows (3-5 % here); one LSB of an attention weight moves a whole expert's
# contribution, so the outputs then differ by up to ~35 LSB. TFLM, which the runtime follows, is
# matched exactly.
_LITERT = "LiteRT's attention path (pool, softmax, logistic) rounds differently from TFLM's"

for _name, _args in [
    ("dyconv_k2_32x32_k5", dict(in_len=64, in_ch=32, out_ch=32, kernel=5, experts=2)),
    ("dyconv_k4_32x32_k5", dict(in_len=64, in_ch=32, out_ch=32, kernel=5, experts=4, seed=1)),
    ("dyconv_k3_swapped_stride2_valid_odd", dict(in_len=37, in_ch=6, out_ch=7, kernel=3, experts=3, stride=2,
                                                 padding=VALID, swap=True, seed=2)),
    ("dyconv_k2_conv_relu_odd_channels", dict(in_len=29, in_ch=5, out_ch=9, kernel=5, experts=2, conv_act=RELU,
                                              seed=3)),
    ("kdna_32x32_k5", dict(in_len=64, in_ch=32, out_ch=32, kernel=5, experts=1, kdna=True, seed=4)),
    ("kdna_relu_conv_k7", dict(in_len=64, in_ch=24, out_ch=48, kernel=7, experts=1, kdna=True, conv_act=RELU,
                               mul_act=NONE, seed=6)),
    ("kdna_swapped_k3_s2", dict(in_len=41, in_ch=8, out_ch=12, kernel=3, experts=1, kdna=True, stride=2, swap=True,
                                seed=5)),
]:
    case("FUSED_CONV_MUL_ADD", _name, litert_differs=_LITERT)(lambda a=_args: chain_model(**a))

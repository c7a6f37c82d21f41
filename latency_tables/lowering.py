"""Lowering: a search-space architecture -> the int8 runtime ops that will execute, with shapes.

`lower(arch)` builds the graph the exporter (torch -> ONNX -> onnx2tf -> TFLiteConverter)
produces for `arch`, as a `firmware_export.tflite_graph.Graph`: the same ops, tensor shapes,
options and data flow, with synthetic constants. Fed to the code generator it yields, without
training or converting anything, the exact kernel calls and params structs (hence the latency
table keys), the exact static arena and the constant bytes of the exported model. A test
exports architectures of every op family and compares them with this lowering, op by op.

How onnx2tf 1.29.24 lowers each search op (time series are [1, T, C] or [1, 1, T, C]):

* conv / wconv, stride 1: CONV_2D SAME (fused ReLU) on [1, 1, T, C].
* stride 2 (any conv): PAD [[0, 0], [k//2, k//2], [0, 0]] on [1, T, C], then CONV_2D VALID.
* dwsep: grouped CONV_2D (filter [C, 1, K, 1], ReLU), then a 1x1 CONV_2D (ReLU).
* dyconv: attention AVERAGE_POOL_2D over [1, T, 1, C] -> FULLY_CONNECTED (ReLU) ->
  FULLY_CONNECTED -> SOFTMAX -> one STRIDED_SLICE per expert; K expert CONV_2D (no
  activation), each MUL'd by its [1, 1, 1] weight on [1, T', O], summed by a chain of ADD (the
  last one with the ReLU).
* kdna: the same attention with LOGISTIC instead of SOFTMAX over O filters, one CONV_2D (ReLU) of
  the shared parent (one constant per (in, out, kernel) shape), MUL [1, T', O] x [1, O].
* dyagg: the same attention as dyconv, then (firmware_export.dyagg's form) FULLY_CONNECTED
  [1, K] -> [1, O*k*C] over the stacked experts (per-tensor weights, no bias, output symmetric
  at the weights' scale), RESHAPE to the OHWI filter [O, 1, k, C], one CONV_2D (ReLU) with that
  computed filter and a constant bias.
* skip: nothing. Head: AVERAGE_POOL_2D over [1, T, 1, C], FULLY_CONNECTED to the classes.

The code generator then fuses every dyconv's CONV_2D -> MUL -> ADD chain and every kdna's
CONV_2D -> MUL into one FUSED_CONV_MUL_ADD call (firmware_export/codegen/fusion.py), in the
exported model and in this lowering alike: the latency tables, arena and flash figures are those
of the fused call, and the lowering itself stays what the converter emits.

No torch here: the lowering runs inside the search loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from firmware_export.tflite_graph import Graph, Op, Tensor
from search_space.arch import Arch, LayerSpec
from search_space.registry import SEARCH_OPS, Registry

SAME, VALID = 0, 1  # TFLite Padding
RELU, NONE = 1, 0  # TFLite ActivationFunctionType
ACT_SCALE = 0.05  # synthetic quantisation: any valid values give the same shapes and params sizes
ATTENTION_OUT_SCALE = 1.0 / 256.0  # SOFTMAX / LOGISTIC int8 output quantisation (fixed by TFLite)


def attention_hidden(in_channels: int) -> int:
    """Hidden width of the dyconv/kdna attention MLP (search_space.layers: ratio 4, at least 4)."""
    return max(4, in_channels // 4)


@dataclass
class _Builder:
    """Accumulates tensors and ops; constants get distinct pseudo-random contents, so the code
    generator shares a buffer only where the exporter shares it by construction (a KernelDNA
    parent). A trained model may, by chance, repeat a small table (say, two layers with the
    same per-channel shifts): the lowering's constant bytes are an upper bound."""

    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    shared: dict[str, int] = field(default_factory=dict)  # parent key -> its constant tensor
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def _tensor(self, shape, dtype=np.int8, scales=(ACT_SCALE,), zero_points=(0,), qdim=0, data=None) -> int:
        i = len(self.tensors)
        self.tensors.append(Tensor(i, f"t{i}", tuple(int(s) for s in shape), np.dtype(dtype),
                                   np.asarray(scales, np.float32), np.asarray(zero_points, np.int64), qdim, data))
        return i

    def act(self, shape, scale=ACT_SCALE, zero_point=0) -> int:
        return self._tensor(shape, scales=(scale,), zero_points=(zero_point,))

    def weights(self, shape, per_channel: bool) -> int:
        n = shape[0] if per_channel else 1
        scales = self.rng.uniform(0.004, 0.02, n)
        data = self.rng.integers(-127, 128, shape, dtype=np.int8)
        return self._tensor(shape, scales=scales, zero_points=[0] * n, data=data)

    def bias(self, n: int) -> int:
        return self._tensor((n,), np.int32, scales=(1e-4,), data=self.rng.integers(-5000, 5000, n).astype(np.int32))

    def i32(self, values) -> int:
        v = np.asarray(values, np.int32)
        return self._tensor(v.shape, np.int32, scales=(), zero_points=(), data=v)

    def op(self, name: str, inputs: list[int], out: int, **options) -> int:
        self.ops.append(Op(len(self.ops), name, list(inputs), [out], options))
        return out

    def shape(self, t: int) -> tuple[int, ...]:
        return self.tensors[t].shape

    # -- views ---------------------------------------------------------------------------
    def reshape(self, x: int, shape) -> int:
        shape = tuple(shape)
        if self.shape(x) == shape:
            return x
        src = self.tensors[x]
        y = self.act(shape, float(src.scales[0]), int(src.zero_points[0]))
        return self.op("RESHAPE", [x, self.i32(shape)], y)

    def as_nwc(self, x: int) -> int:  # [1, T, C]
        s = self.shape(x)
        return self.reshape(x, (1, s[-2], s[-1]))

    def as_conv_input(self, x: int) -> int:  # [1, 1, T, C]
        s = self.shape(x)
        return self.reshape(x, (1, 1, s[-2], s[-1]))

    # -- ops -----------------------------------------------------------------------------
    def conv_input(self, x: int, kernel: int, stride: int) -> tuple[int, int, int]:
        """(input tensor, padding, output length) of a conv over `x`; stride 2 pads explicitly
        (one PAD, shared by every conv that reads it) and runs VALID."""
        s = self.shape(x)
        t, c = s[-2], s[-1]
        if stride == 1:
            return self.as_conv_input(x), SAME, t
        p = kernel // 2
        padded = self.act((1, t + 2 * p, c))
        self.op("PAD", [self.as_nwc(x), self.i32([[0, 0], [p, p], [0, 0]])], padded)
        return self.as_conv_input(padded), VALID, (t + 2 * p - kernel) // stride + 1

    def conv(self, xin: tuple[int, int, int], out: int, kernel: int, stride: int, act: int, groups: int = 1,
             filter_tensor: int | None = None) -> int:
        """CONV_2D over time on `xin` from `conv_input`."""
        x4, padding, t_out = xin
        c = self.shape(x4)[-1]
        w = filter_tensor if filter_tensor is not None else self.weights((out, 1, kernel, c // groups), True)
        y = self.act((1, 1, t_out, out))
        return self.op("CONV_2D", [x4, w, self.bias(out)], y, padding=padding, strideW=stride, strideH=1,
                       fusedActivationFunction=act, dilationWFactor=1, dilationHFactor=1)

    def global_average(self, x: int) -> int:
        """AVERAGE_POOL_2D over the whole window: [1, T, 1, C] -> [1, 1, 1, C]."""
        s = self.shape(x)
        t, c = s[-2], s[-1]
        y = self.act((1, 1, 1, c))
        return self.op("AVERAGE_POOL_2D", [self.reshape(x, (1, t, 1, c))], y, padding=VALID, strideW=1, strideH=t,
                       filterWidth=1, filterHeight=t, fusedActivationFunction=NONE)

    def fc(self, x: int, out: int, act: int) -> int:
        in_features = self.shape(x)[-1]
        y = self.act((1, out))
        return self.op("FULLY_CONNECTED", [x, self.weights((out, in_features), True), self.bias(out)], y,
                       fusedActivationFunction=act, weightsFormat=0, keepNumDims=False)

    def attention(self, x: int, hidden: int, out: int, final: str) -> int:
        a = self.fc(self.fc(self.global_average(x), hidden, RELU), out, NONE)
        y = self.act((1, out), ATTENTION_OUT_SCALE, -128)
        return self.op(final, [a], y, **({"beta": 1.0} if final == "SOFTMAX" else {}))

    def elementwise(self, name: str, a: int, b: int, act: int) -> int:
        y = self.act(self.shape(a))
        return self.op(name, [a, b], y, fusedActivationFunction=act)


# --------------------------------------------------------------------------------------------
# One lowering per search op, registered beside its definition and looked up by the op's name
# (tests/test_latency_tables.py fails when a registered search op has none).

Lowering = Callable[[_Builder, int, LayerSpec, int], int]  # (builder, input, layer, in channels) -> output
LOWERINGS: Registry[Lowering] = Registry("search-op lowering")


def lowers(*names: str) -> Callable[[Lowering], Lowering]:
    """Register the decorated function as the lowering of the search ops `names`."""

    def register(fn: Lowering) -> Lowering:
        for name in names:
            LOWERINGS.add(name, fn)
        return fn

    return register


@lowers("skip")
def _identity(b: _Builder, x: int, layer: LayerSpec, c: int) -> int:
    return x


@lowers("conv", "wconv")
def _conv(b: _Builder, x: int, layer: LayerSpec, c: int) -> int:
    return b.conv(b.conv_input(x, layer.kernel, layer.stride), layer.out, layer.kernel, layer.stride, RELU)


@lowers("dwsep")
def _dwsep(b: _Builder, x: int, layer: LayerSpec, c: int) -> int:
    dw = b.conv(b.conv_input(x, layer.kernel, layer.stride), c, layer.kernel, layer.stride, RELU, groups=c)
    return b.conv(b.conv_input(dw, 1, 1), layer.out, 1, 1, RELU)


@lowers("dyconv")
def _dyconv(b: _Builder, x: int, layer: LayerSpec, c: int) -> int:
    k = layer.experts
    pi = b.attention(x, attention_hidden(c), k, "SOFTMAX")  # [1, K]
    xin = b.conv_input(x, layer.kernel, layer.stride)
    total = None
    for e in range(k):
        w = b.act((1, 1), ATTENTION_OUT_SCALE, -128)
        b.op("STRIDED_SLICE", [pi, b.i32([0, e]), b.i32([1, e + 1]), b.i32([1, 1])], w,
             beginMask=0, endMask=0, ellipsisMask=0, newAxisMask=0, shrinkAxisMask=0, offset=False)
        y = b.as_nwc(b.conv(xin, layer.out, layer.kernel, layer.stride, NONE))
        scaled = b.elementwise("MUL", y, b.reshape(w, (1, 1, 1)), NONE)
        total = scaled if total is None else b.elementwise("ADD", total, scaled, RELU if e == k - 1 else NONE)
    return total


@lowers("dyagg")
def _dyagg(b: _Builder, x: int, layer: LayerSpec, c: int) -> int:
    k = layer.experts
    pi = b.attention(x, attention_hidden(c), k, "SOFTMAX")  # [1, K]
    n = layer.out * layer.kernel * c
    stack = b.weights((n, k), False)  # per tensor: the aggregated filter's scale is the stack's
    s_w = float(b.tensors[stack].scales[0])
    agg = b._tensor((1, n), scales=(s_w,))
    b.op("FULLY_CONNECTED", [pi, stack, -1], agg, fusedActivationFunction=NONE, weightsFormat=0, keepNumDims=False)
    filt = b._tensor((layer.out, 1, layer.kernel, c), scales=(s_w,))
    b.op("RESHAPE", [agg, b.i32((layer.out, 1, layer.kernel, c))], filt)
    xin = b.conv_input(x, layer.kernel, layer.stride)
    return b.conv(xin, layer.out, layer.kernel, layer.stride, RELU, filter_tensor=filt)


@lowers("kdna")
def _kdna(b: _Builder, x: int, layer: LayerSpec, c: int) -> int:
    att = b.attention(x, attention_hidden(c), layer.out, "LOGISTIC")  # [1, O]
    key = SEARCH_OPS.get(layer.op).parent_key(c, layer.out, layer.kernel)
    if key not in b.shared:  # one parent per shape: the converter stores it once, so do we
        b.shared[key] = b.weights((layer.out, 1, layer.kernel, c), True)
    xin = b.conv_input(x, layer.kernel, layer.stride)
    y = b.as_nwc(b.conv(xin, layer.out, layer.kernel, layer.stride, RELU, filter_tensor=b.shared[key]))
    return b.elementwise("MUL", y, att, NONE)


def _layer(b: _Builder, x: int, layer: LayerSpec, c: int) -> int:
    return LOWERINGS.get(layer.op)(b, x, layer, c)


def lower(arch: Arch) -> Graph:
    """The exporter's graph for `arch` (synthetic constants; shapes, options and flow exact)."""
    b = _Builder()
    x = inp = b.act((1, arch.input_length, arch.input_channels))
    c = arch.input_channels
    for layer in arch.layers:
        x = _layer(b, x, layer, c)
        c = layer.out if layer.out is not None else c
    logits = b.fc(b.global_average(x), arch.num_classes, NONE)
    return Graph(b.tensors, b.ops, [inp], [logits])


def lower_layer(layer: LayerSpec, in_channels: int, in_length: int) -> Graph:
    """One layer alone, its input a graph input [1, T, C] (for enumerating table entries)."""
    b = _Builder()
    x = b.act((1, in_length, in_channels))
    y = _layer(b, x, layer, in_channels)
    return Graph(b.tensors, b.ops, [x], [y])


def lower_head(in_channels: int, in_length: int, num_classes: int) -> Graph:
    b = _Builder()
    x = b.act((1, in_length, in_channels))
    return Graph(b.tensors, b.ops, [x], [b.fc(b.global_average(x), num_classes, NONE)])

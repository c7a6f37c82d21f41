"""Build small int8 `.tflite` models directly with the flatbuffer schema (tests only).

Lets the runtime tests choose every shape and quantisation parameter, instead of whatever a
converter would produce, and covers ops in isolation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

_TYPES = {np.dtype(np.int8): 9, np.dtype(np.int32): 2, np.dtype(np.float32): 0, np.dtype(np.int64): 4}

# op name -> (BuiltinOptions member, options class name) ; None when the op has no options
_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", "Conv2DOptionsT"),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", "DepthwiseConv2DOptionsT"),
    "FULLY_CONNECTED": ("FullyConnectedOptions", "FullyConnectedOptionsT"),
    "MEAN": ("ReducerOptions", "ReducerOptionsT"),
    "AVERAGE_POOL_2D": ("Pool2DOptions", "Pool2DOptionsT"),
    "MAX_POOL_2D": ("Pool2DOptions", "Pool2DOptionsT"),
    "ADD": ("AddOptions", "AddOptionsT"),
    "MUL": ("MulOptions", "MulOptionsT"),
    "SOFTMAX": ("SoftmaxOptions", "SoftmaxOptionsT"),
    "RESHAPE": ("ReshapeOptions", "ReshapeOptionsT"),
    "STRIDED_SLICE": ("StridedSliceOptions", "StridedSliceOptionsT"),
    "PAD": ("PadOptions", "PadOptionsT"),
    "LOGISTIC": None,
    "TANH": None,
    "HARD_SWISH": None,
    "RELU": None,
    "RELU6": None,
    "QUANTIZE": None,
    "DEQUANTIZE": None,
    "CONCATENATION": ("ConcatenationOptions", "ConcatenationOptionsT"),
    "EXPAND_DIMS": ("ExpandDimsOptions", "ExpandDimsOptionsT"),
    "SQUEEZE": ("SqueezeOptions", "SqueezeOptionsT"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("UnidirectionalSequenceLSTMOptions", "UnidirectionalSequenceLSTMOptionsT"),
}


class ModelBuilder:
    """Accumulate tensors and ops, then `build()` a single-subgraph flatbuffer (16-aligned)."""

    def __init__(self):
        from ai_edge_litert import schema_py_generated as S

        self.S = S
        self.tensors: list = []
        self.buffers: list = [S.BufferT()]  # buffer 0: the empty sentinel
        self.ops: list = []
        self.codes: dict[str, int] = {}

    def tensor(self, shape, dtype=np.int8, scale=None, zero_point=None, data=None, quantized_dimension=0,
               name=None) -> int:
        S = self.S
        t = S.TensorT()
        t.shape = np.asarray(shape, np.int32)
        t.type = _TYPES[np.dtype(dtype)]
        t.name = name or f"t{len(self.tensors)}"
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data, dtype).tobytes(), np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            zps = np.atleast_1d(zero_point if zero_point is not None else 0)
            q.zeroPoint = [int(z) for z in (zps if len(zps) == len(q.scale) else np.repeat(zps, len(q.scale)))]
            q.quantizedDimension = quantized_dimension
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const_i32(self, values) -> int:
        v = np.asarray(values, np.int32)
        return self.tensor(v.shape, np.int32, data=v)

    def op(self, name: str, inputs, outputs, **options) -> None:
        S = self.S
        if name not in self.codes:
            self.codes[name] = len(self.codes)
        o = S.OperatorT()
        o.opcodeIndex = self.codes[name]
        o.inputs = np.asarray(inputs, np.int32)
        o.outputs = np.asarray(outputs, np.int32)
        spec = None if name.startswith("CUSTOM:") else _OPTIONS[name]
        if spec is not None:
            enum_name, cls_name = spec
            o.builtinOptionsType = getattr(S.BuiltinOptions, enum_name)
            opts = getattr(S, cls_name)()
            for k, v in options.items():
                if not hasattr(opts, k):
                    raise AttributeError(f"{cls_name} has no field {k}")
                setattr(opts, k, v)
            o.builtinOptions = opts
        self.ops.append(o)

    def build(self, inputs, outputs) -> bytes:
        import flatbuffers
        from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as align

        S = self.S
        m = S.ModelT()
        m.version = 3
        m.description = "micronas test model"
        for name in sorted(self.codes, key=self.codes.get):
            c = S.OperatorCodeT()
            custom = name.startswith("CUSTOM:")  # "CUSTOM:FlexErf": a custom (Flex) op
            if custom:
                c.customCode = name.split(":", 1)[1]
            code = S.BuiltinOperator.CUSTOM if custom else getattr(S.BuiltinOperator, name)
            c.builtinCode = code
            c.deprecatedBuiltinCode = min(code, 127)
            c.version = 1
            m.operatorCodes = (m.operatorCodes or []) + [c]
        g = S.SubGraphT()
        g.tensors, g.operators = self.tensors, self.ops
        g.inputs, g.outputs = np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
        m.subgraphs = [g]
        m.buffers = self.buffers
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        raw = bytes(b.Output())
        with tempfile.TemporaryDirectory() as td:
            src, dst = Path(td) / "a.tflite", Path(td) / "b.tflite"
            src.write_bytes(raw)
            align.align_tflite_model(str(src), str(dst))
            return dst.read_bytes()


def per_channel_weights(rng, shape, qdim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random symmetric int8 weights and per-channel scales along `qdim`."""
    w = rng.integers(-127, 128, size=shape, dtype=np.int64).astype(np.int8)
    scales = rng.uniform(0.002, 0.05, size=shape[qdim]).astype(np.float32)
    return w, scales


def bias_for(rng, n: int) -> np.ndarray:
    return rng.integers(-20000, 20000, size=n).astype(np.int32)

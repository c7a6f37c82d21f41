"""Read an int8 `.tflite` flatbuffer into a small graph IR for the code generator.

Uses the flatbuffer schema bindings that ship with ai-edge-litert (no TensorFlow import).
Constant tensors carry their data; activation tensors do not. Op options are plain dicts
with the schema's field names (`strideW`, `padding`, `fusedActivationFunction`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from micronas_base.errors import ExportError

# schema TensorType -> numpy dtype (only the types an int8 model uses)
_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8, 7: np.int16}


@dataclass
class Tensor:
    """One tensor of the graph."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scales: np.ndarray  # (1,) per-tensor or (C,) per-channel; empty when not quantised
    zero_points: np.ndarray
    quantized_dimension: int
    data: np.ndarray | None = None  # constants only, shaped

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def scale(self) -> float:
        """The per-tensor scale (raises for a per-channel tensor)."""
        if len(self.scales) != 1:
            raise ExportError(f"tensor {self.name!r} has {len(self.scales)} scales; expected one")
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if len(self.zero_points) else 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Op:
    """One operator: its builtin name, input/output tensor indices and options."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def tensor(self, i: int) -> Tensor:
        return self.tensors[i]


def _builtin_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as S

    return {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}


def read(path_or_bytes: Path | bytes) -> Graph:
    """Parse a single-subgraph `.tflite` model.

    Raises:
        ExportError: the file is not a TFLite flatbuffer, or has several subgraphs.
    """
    from ai_edge_litert import schema_py_generated as S

    buf = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ExportError("not a TFLite flatbuffer (no TFL3 identifier)")
    model = S.ModelT.InitFromPackedBuf(buf, 0)
    if len(model.subgraphs) != 1:
        raise ExportError(f"the model has {len(model.subgraphs)} subgraphs; micronas runs single-subgraph models")
    g = model.subgraphs[0]
    names = _builtin_names()
    tensors = []
    for i, t in enumerate(g.tensors):
        if t.type not in _DTYPES:
            raise ExportError(f"tensor {i} ({t.name!r}) has unsupported type code {t.type}")
        dtype = np.dtype(_DTYPES[t.type])
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else []))
        q = t.quantization
        scales = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zps = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        data = None
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buffer is not None:
            raw = None
            if buffer.data is not None and len(buffer.data):
                raw = np.asarray(buffer.data, np.uint8).tobytes()
            elif buffer.offset and buffer.size:  # large models store buffers after the flatbuffer
                raw = buf[buffer.offset : buffer.offset + buffer.size]
            if raw is not None:
                data = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, shape, dtype, scales, zps, int(q.quantizedDimension) if q else 0, data))
    ops = []
    for i, op in enumerate(g.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"CODE_{code.builtinCode}")
        if name == "CUSTOM":
            name = "CUSTOM:" + (code.customCode.decode() if code.customCode else "?")
        opts = vars(op.builtinOptions) if op.builtinOptions is not None else {}
        ops.append(Op(i, name, [int(x) for x in op.inputs], [int(x) for x in op.outputs], dict(opts)))
    return Graph(tensors, ops, [int(x) for x in g.inputs], [int(x) for x in g.outputs])

"""The code generator's conv -> MUL(attention) -> ADD fusion (firmware_export/codegen/fusion.py).

Bit-exactness of the fused kernel against TFLM is in test_runtime_ops.py (host, the
FUSED_CONV_MUL_ADD cases of runtime_cases_fused.py) and test_simd_qemu.py (emulated Cortex-M4);
exported dyconv / kdna networks are fused and checked in test_latency_tables.py. Here: what the
planner sees (the arena without the chain's tensors, exactly), and what must not be fused.
"""

from __future__ import annotations

import pytest

from firmware_export.codegen.plan import plan_model
from firmware_export.tflite_graph import Graph
from latency_tables.lowering import NONE, RELU, _Builder, lower_layer
from search_space.arch import LayerSpec


# A layer of 32 -> 32 channels, kernel 5, over 64 steps, its input a graph input: (arena bytes
# fused, unfused, kernel calls fused, unfused). Fused: the input (2,048 bytes at 0) and the output
# (2,048 at 2,048) and the softmax's K bytes (at 4,096) are all the layer holds; unfused it also
# holds an expert's conv output, its MUL output and the running sum (each 2,048, 16-aligned).
ARENA = {
    "dyconv_k2": (LayerSpec("dyconv", 32, 5, 1, 2), 2048 + 2048 + 2, 6161, 5, 11),
    "dyconv_k4": (LayerSpec("dyconv", 32, 5, 1, 4), 2048 + 2048 + 4, 8225, 5, 19),
    # KernelDNA: the unfused MUL already writes over its dead input; fusion saves the call only
    "kdna": (LayerSpec("kdna", 32, 5, 1), 4128, 4128, 5, 6),
    "dyconv_k4_stride2": (LayerSpec("dyconv", 32, 5, 2, 4), None, None, 6, 20),
}


@pytest.mark.parametrize("name", ARENA)
def test_fusion_shrinks_the_arena_by_the_chain_tensors_exactly(name):
    spec, fused_bytes, unfused_bytes, fused_calls, unfused_calls = ARENA[name]
    g = lower_layer(spec, 32, 64)
    fused, unfused = plan_model(g), plan_model(g, fuse=False)
    assert [la.op for la in fused.layers].count("FUSED_CONV_MUL_ADD") == 1
    assert not {"MUL", "ADD", "STRIDED_SLICE"} & {la.op for la in fused.layers}
    assert (len(fused.layers), len(unfused.layers)) == (fused_calls, unfused_calls)
    if fused_bytes is not None:
        assert (fused.arena_bytes, unfused.arena_bytes) == (fused_bytes, unfused_bytes)
    # the plan is self-consistent: no two live buffers overlap, and the MACs are the unfused ones
    assert sum(la.macs for la in fused.layers) == sum(la.macs for la in unfused.layers)
    assert fused.arena_bytes < unfused.arena_bytes or spec.op == "kdna"


def test_fused_layer_key_fields():
    g = lower_layer(LayerSpec("dyconv", 32, 5, 1, 4), 32, 64)
    layer = next(la for la in plan_model(g).layers if la.op == "FUSED_CONV_MUL_ADD")
    from latency_tables.keys import op_key

    assert op_key(layer.op, layer.key_fields) == (
        "FUSED_CONV_MUL_ADD(in_len=64,in_ch=32,out_len=64,out_ch=32,kernel=5,stride=1,dilation=1,pad_before=2,"
        "groups=1,experts=4,att_stride=0)")


def _conv_mul_graph(other: str) -> Graph:
    """x -> CONV_2D -> MUL by `other` ("full": a [1, T, O] activation, "scalar": a [1, 1, 1] one)."""
    b = _Builder()
    x = b.act((1, 16, 8))
    y = b.as_nwc(b.conv(b.conv_input(x, 3, 1), 8, 3, 1, NONE))
    if other == "full":
        z = b.elementwise("ADD", y, y, NONE)  # the conv output read twice: not a fusable branch
        m = b.elementwise("MUL", z, x, RELU)
    else:
        s = b.act((1, 1, 1))
        b.op("MEAN", [x, b.i32([1, 2])], s)
        m = b.elementwise("MUL", y, s, RELU)
    return Graph(b.tensors, b.ops, [x], [m])


def test_chains_outside_the_pattern_are_not_fused():
    assert "FUSED_CONV_MUL_ADD" not in [la.op for la in plan_model(_conv_mul_graph("full")).layers]
    ops = [la.op for la in plan_model(_conv_mul_graph("scalar")).layers]
    assert ops == ["MEAN", "FUSED_CONV_MUL_ADD"], ops  # a one-element attention from any op fuses


def test_a_shared_conv_output_stays_unfused():
    """An expert's conv output also read elsewhere keeps its conv and MUL."""
    b = _Builder()
    x = b.act((1, 16, 8))
    y = b.as_nwc(b.conv(b.conv_input(x, 3, 1), 8, 3, 1, NONE))
    s = b.act((1, 1, 1))
    b.op("MEAN", [x, b.i32([1, 2])], s)
    m = b.elementwise("MUL", y, s, NONE)
    out = b.elementwise("ADD", m, y, NONE)  # y read by the MUL and the ADD
    ops = [la.op for la in plan_model(Graph(b.tensors, b.ops, [x], [out])).layers]
    assert "FUSED_CONV_MUL_ADD" not in ops and ops.count("MUL") == 1, ops

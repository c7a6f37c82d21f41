"""Where int8 loses: each layer's int8 output against the fp32 network's, over the same windows.

The fp32 side is the exported (batch-norm folded) torch network, read at the output of each
block and at the logits. The int8 side is the converted model run by LiteRT with every tensor
kept (`firmware_export.verify.run_litert_intermediates`); a block's output is found among the
tensors every path passes through (cuts), in order, as the one of the block's shape closest to
the fp32 output (a reshape of it carries the same values). The errors accumulate: a layer's
figure includes what the layers before it lost, so the layer where the figure jumps is the one
that loses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SOURCE = ("int8: LiteRT with all tensors kept (its kernels agree with TFLite Micro within a few LSB); "
          "fp32: the exported network; error = RMS(int8 - fp32) / RMS(fp32) of each layer's output")


def _fp32_outputs(model: Any, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    import torch

    outs: list[np.ndarray] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: outs.append(out.detach().numpy().astype(np.float64)))
             for b in model.blocks]
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(X)).numpy().astype(np.float64)
    finally:
        for h in hooks:
            h.remove()
    return outs, logits


def _rel(q: np.ndarray, f: np.ndarray) -> float:
    return float(np.sqrt(np.mean((q - f) ** 2)) / max(np.sqrt(np.mean(f ** 2)), 1e-12))


def layer_errors(tflite_path: Path, model: Any, names: list[str], X: np.ndarray, x_int8: np.ndarray) -> list[dict]:
    """Per layer: the relative RMS error of the int8 output and that error in the tensor's LSB.

    Args:
        tflite_path: The int8 model.
        model: The exported fp32 network (a `search_space.network.Network`, eval mode).
        names: One short description per block (for the report).
        X: (N, C, T) standardised windows.
        x_int8: The same windows quantised as the model's input (N, T, C).

    Returns:
        [{"layer", "name", "relative_error", "rms_error_lsb", "scale"}], the blocks then "logits";
        a block whose output was not found is left out.
    """
    from firmware_export import verify

    fp_blocks, fp_logits = _fp32_outputs(model, X)
    inter = verify.run_litert_intermediates(tflite_path, x_int8)
    rows, position = [], -1
    for n, (name, f) in enumerate(zip(names, fp_blocks)):
        c, t = f.shape[1:]
        best = None
        for k in (p for p in inter.cuts if p >= position):
            tensor = inter.tensor_at(k)
            v = inter.values[tensor]
            if v[0].size != c * t or v.shape[-1] != c:
                continue
            q = inter.dequantized(tensor).reshape(len(v), t, c).transpose(0, 2, 1)
            err = _rel(q, f)
            if best is None or err < best[0]:
                best = (err, k, tensor, q)
        if best is None:
            continue
        err, position, tensor, q = best
        scale = inter.quant[tensor][0]
        rows.append({"layer": n, "name": name, "relative_error": err,
                     "rms_error_lsb": float(np.sqrt(np.mean((q - f) ** 2)) / scale), "scale": scale})
    q = inter.dequantized(inter.output_index).reshape(fp_logits.shape)
    scale = inter.quant[inter.output_index][0]
    rows.append({"layer": len(fp_blocks), "name": "logits", "relative_error": _rel(q, fp_logits),
                 "rms_error_lsb": float(np.sqrt(np.mean((q - fp_logits) ** 2)) / scale), "scale": scale})
    return rows

"""torch -> ONNX -> full-integer int8 TFLite.

The route (RECIPES.md, measured): the dynamo ONNX exporter writes one self-contained file;
onnx2tf turns a *copy* of it (it rewrites its input in place) into a SavedModel without running
onnxsim; our own `TFLiteConverter` then quantises with real calibration windows and
`TFLITE_BUILTINS_INT8` only, so an op without an int8 kernel fails the conversion loudly instead
of becoming a Flex op. The flatbuffer is finally re-laid out with 16-byte aligned buffers by
tflite-micro's align tool, so the C array can be used in place on the device.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from micronas_base import tempdirs
from micronas_base.errors import ExportError

from ._fdcapture import capture_fds

log = logging.getLogger(__name__)


def export_onnx(model, input_shape: tuple[int, int], path: Path, log_path: Path | None = None) -> None:
    """Export an eval-mode torch model to a single-file ONNX model (dynamo exporter).

    Args:
        model: A `torch.nn.Module` taking (1, C, T) float input, batch norms already folded.
        input_shape: (C, T).
        path: Destination `.onnx`; written to a temporary file, then renamed.
        log_path: Where the exporter's console output goes.

    Raises:
        ExportError: the exporter failed.
    """
    import torch

    x = torch.zeros(1, *input_shape)  # (1, C, T)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with capture_fds(log_path):
            torch.onnx.export(model, (x,), str(tmp), dynamo=True, external_data=False,
                              input_names=["input"], output_names=["logits"])
        os.replace(tmp, path)
    except Exception as e:  # the exporter raises many types; all mean "could not export"
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {e}",
                          f"see {log_path}" if log_path else None) from e
    finally:  # also on Ctrl-C: never leave a partial file beside the artefacts
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _temp_files_under(folder: Path):
    """Python's temp files go into `folder` meanwhile: TensorFlow's autograph writes the modules
    it generates to the system temp dir and removes them only at interpreter exit, so a process
    that ends otherwise (a killed worker, os._exit) would leave them there; inside the
    conversion's own temp folder they go with it."""
    folder.mkdir(parents=True, exist_ok=True)
    before = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = before


def _computed_filter_layouts(onnx_path: Path, json_path: Path) -> Path | None:
    """onnx2tf's parameter-replacement file for convolutions whose filter is computed (dyagg).

    onnx2tf 1.29.24 hands a Conv's non-constant weight to TensorFlow unchanged, i.e. in ONNX's
    (O, C, k) order where TensorFlow expects (k, C, O), and the conversion fails on shapes. The
    documented fix is a transpose after the Reshape that produces the weight: one entry per such
    Conv. Returns None when the model has none.

    Raises:
        ExportError: a computed conv weight that is not produced by a Reshape of rank 3 (1-D).
    """
    import json

    import onnx

    m = onnx.load(str(onnx_path))
    consts = {i.name for i in m.graph.initializer}
    consts |= {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    producers = {o: n for n in m.graph.node for o in n.output}
    ops = []
    for n in m.graph.node:
        if n.op_type != "Conv" or n.input[1] in consts:
            continue
        src = producers.get(n.input[1])
        if src is None or src.op_type != "Reshape":
            raise ExportError(f"ONNX Conv {n.name!r} has a computed weight {n.input[1]!r} not produced by a Reshape",
                              "computed conv filters are exported only by the dyagg layer")
        ops.append({"op_name": src.name, "param_target": "outputs", "param_name": src.output[0],
                    "post_process_transpose_perm": [2, 1, 0]})  # (O, C, k) -> TensorFlow's (k, C, O)
    if not ops:
        return None
    json_path.write_text(json.dumps({"format_version": 1, "operations": ops}, indent=1))
    return json_path


def onnx_to_int8_tflite(onnx_path: Path, calibration_ntc: np.ndarray, out_path: Path,
                        log_path: Path | None = None) -> None:
    """Convert an ONNX model to a full-integer int8 TFLite flatbuffer with 16-aligned buffers.

    Args:
        onnx_path: The model from `export_onnx` (input (1, C, T)).
        calibration_ntc: Calibration windows, channel-last (N, T, C) float32, standardised like
            the training data. The TFLite input becomes [1, T, C] int8.
        out_path: Destination `.tflite`; written to a temporary file, then renamed.
        log_path: Where onnx2tf's and TensorFlow's console output goes.

    Raises:
        ExportError: onnx2tf or the converter failed (for example an op with no int8 kernel).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if calibration_ntc.ndim != 3 or len(calibration_ntc) == 0:
        raise ExportError(f"calibration data has shape {calibration_ntc.shape}; expected (N>0, T, C)")
    with tempdirs.temp_dir("tflite") as td:
        work = Path(td)
        onnx_copy = work / "model.onnx"
        shutil.copyfile(onnx_path, onnx_copy)  # onnx2tf rewrites its input in place
        saved_model = work / "saved_model"
        try:
            with capture_fds(log_path), _temp_files_under(work / "tmp"):
                import onnx2tf
                import tensorflow as tf

                replacements = _computed_filter_layouts(onnx_copy, work / "param_replacement.json")
                onnx2tf.convert(input_onnx_file_path=str(onnx_copy), output_folder_path=str(saved_model),
                                not_use_onnxsim=True, non_verbose=True,
                                param_replacement_file=str(replacements) if replacements else "")
                converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
                calib = calibration_ntc.astype(np.float32)

                def representative():
                    for i in range(len(calib)):
                        yield [calib[i : i + 1]]  # (1, T, C)

                converter.representative_dataset = representative
                flatbuffer = converter.convert()
        except Exception as e:  # TF raises ConverterError, ValueError, RuntimeError...
            raise ExportError(f"int8 TFLite conversion failed: {type(e).__name__}: {str(e)[:500]}",
                              f"see {log_path}" if log_path else None) from e
        from . import dyagg

        flatbuffer, _ = dyagg.finalize(flatbuffer)  # computed (dyagg) conv filters: symmetric, OHWI
        unaligned = work / "unaligned.tflite"
        unaligned.write_bytes(flatbuffer)
        aligned = work / "aligned.tflite"
        from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as align

        align.align_tflite_model(str(unaligned), str(aligned))
        tmp = out_path.with_name(out_path.name + ".tmp")
        shutil.copyfile(aligned, tmp)
        os.replace(tmp, out_path)
    log.debug("wrote %s (%d bytes)", out_path, out_path.stat().st_size)

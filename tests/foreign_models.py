"""Models made the way users make them, outside micronas: a Keras Conv1D network through
tf.lite.TFLiteConverter and a PyTorch one through the project's converter (torch -> ONNX ->
onnx2tf -> TFLiteConverter), both full-integer int8 with a representative dataset.

    python -m tests.foreign_models OUT_DIR     # writes the test models and a wider one (docs/runtime.md)

Both have the layers a HAR CNN has: Conv1D + ReLU, max pooling, a second Conv1D, the global
average (MEAN) and a dense head; input (1, 64, 3), 4 outputs. Weights are seeded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

T, C, K = 64, 3, 4  # samples, channels, classes
CALIBRATION = 32  # representative windows


def calibration(t: int = T, c: int = C) -> np.ndarray:
    """(N, t, c) float32, seeded: the representative dataset of both converters."""
    return np.random.default_rng(0).standard_normal((CALIBRATION, t, c)).astype(np.float32)


def keras_conv1d(path: Path, quantize: bool = True, batch: int | None = 1, wide: bool = False) -> Path:
    """A Keras Conv1D network converted by tf.lite.TFLiteConverter.

    Args:
        path: The .tflite to write.
        quantize: Full-integer int8 (False: the float model a converter writes by default).
        batch: The Input's batch size. 1 gives RESHAPE around each Conv1D; None (Keras's default)
            makes the converter emit EXPAND_DIMS instead.
        wide: A HAR-sized variant (input 128 x 6, 32 and 64 filters of 5, 6 classes), for the
            flag costs of docs/runtime.md.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    t, c, k, (w1, k1), (w2, k2) = (128, 6, 6, (32, 5), (64, 5)) if wide else (T, C, K, (8, 5), (16, 3))
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((t, c), batch_size=batch)
    x = tf.keras.layers.Conv1D(w1, k1, padding="same", activation="relu")(inp)  # (B, t, w1)
    x = tf.keras.layers.MaxPooling1D(2)(x)  # (B, t/2, w1)
    x = tf.keras.layers.Conv1D(w2, k2, padding="same", activation="relu")(x)  # (B, t/2, w2)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)  # (B, w2)
    out = tf.keras.layers.Dense(k)(x)  # (B, k)
    converter = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out))
    if quantize:
        cal = calibration(t, c)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        converter.representative_dataset = lambda: ([cal[i : i + 1]] for i in range(len(cal)))
    path.write_bytes(converter.convert())
    return path


def torch_conv1d(path: Path) -> Path:
    """A PyTorch Conv1d network through firmware_export.convert (the search's own route)."""
    import torch

    from firmware_export import convert

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv1d(C, 8, 5, padding=2)
            self.pool = torch.nn.MaxPool1d(2)
            self.c2 = torch.nn.Conv1d(8, 16, 3, padding=1)
            self.fc = torch.nn.Linear(16, K)

        def forward(self, x):  # (B, C, T)
            x = self.pool(torch.relu(self.c1(x)))  # (B, 8, T/2)
            x = torch.relu(self.c2(x))  # (B, 16, T/2)
            return self.fc(x.mean(dim=2))  # (B, K)

    onnx = path.with_suffix(".onnx")
    convert.export_onnx(Net().eval(), (C, T), onnx, path.with_suffix(".log"))
    convert.onnx_to_int8_tflite(onnx, calibration(), path, path.with_suffix(".log"))
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    print(keras_conv1d(out / "keras_conv1d.tflite"))
    print(torch_conv1d(out / "torch_conv1d.tflite"))
    print(keras_conv1d(out / "keras_wide.tflite", wide=True))

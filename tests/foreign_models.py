"""Models made the way users make them, outside micronas: a Keras Conv1D network through
tf.lite.TFLiteConverter and a PyTorch one through the project's converter (torch -> ONNX ->
onnx2tf -> TFLiteConverter), both full-integer int8 with a representative dataset.

    python -m tests.foreign_models OUT_DIR     # writes the .tflite files the tests compile

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


def calibration() -> np.ndarray:
    """(N, T, C) float32, seeded: the representative dataset of both converters."""
    return np.random.default_rng(0).standard_normal((CALIBRATION, T, C)).astype(np.float32)


def keras_conv1d(path: Path, quantize: bool = True, batch: int | None = 1) -> Path:
    """A Keras Conv1D network converted by tf.lite.TFLiteConverter.

    Args:
        path: The .tflite to write.
        quantize: Full-integer int8 (False: the float model a converter writes by default).
        batch: The Input's batch size. 1 gives RESHAPE around each Conv1D; None (Keras's default)
            makes the converter emit EXPAND_DIMS instead.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((T, C), batch_size=batch)
    x = tf.keras.layers.Conv1D(8, 5, padding="same", activation="relu")(inp)  # (B, T, 8)
    x = tf.keras.layers.MaxPooling1D(2)(x)  # (B, T/2, 8)
    x = tf.keras.layers.Conv1D(16, 3, padding="same", activation="relu")(x)  # (B, T/2, 16)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)  # (B, 16)
    out = tf.keras.layers.Dense(K)(x)  # (B, K)
    converter = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out))
    if quantize:
        cal = calibration()
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

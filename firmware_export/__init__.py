"""Export: ONNX, full-integer int8 TFLite with verification, and C arrays for firmware.

Builds on `search_space`; imported by `micronas` only. Heavy dependencies (torch, onnx2tf,
tensorflow, ai-edge-litert, tflite-micro) are imported inside the functions that need them.
"""

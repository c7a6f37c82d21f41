"""Latency lookup tables keyed by runtime op, and the peak-memory / flash model.

Not built yet (issue: tables). Keys on the runtime-op registry (`firmware_export.codegen.registry`); imports no torch.
"""

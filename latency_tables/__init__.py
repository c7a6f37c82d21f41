"""Latency lookup tables keyed by runtime op, and the peak-memory / flash model.

Not built yet (issue: tables). Keys on `search_space.registry.RUNTIME_OPS`; imports no torch.
"""

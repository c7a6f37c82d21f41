"""The search space: op registry, architecture encoding, torch layers and network builder.

At the bottom of the layering with `targets`: imports nothing from the other micronas packages
(only the stdlib-only `micronas_base`). `registry` and `arch` import no torch, so
`latency_tables` can key on the registry cheaply; `layers` and `network` import torch.
"""

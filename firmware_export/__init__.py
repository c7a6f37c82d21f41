"""Export: ONNX, full-integer int8 TFLite with verification, the generated C model, and the
runtime-op registry (`codegen.registry`: every op the C runtime executes, which the latency
tables key on and the profiling firmware's BENCH_OP dispatcher is generated from).

Above `search_space` and `targets`; imported by `latency_tables` and `micronas`. Heavy dependencies (torch, onnx2tf,
tensorflow, ai-edge-litert, tflite-micro) are imported inside the functions that need them.
"""

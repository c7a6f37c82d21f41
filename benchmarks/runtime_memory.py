"""RAM and flash of the micronas C runtime vs TensorFlow Lite Micro, for the same int8 model.

Reads an exported run (default: runs/demo from `make demo`; exported into a temporary
directory first when absent) and prints, side by side:
  - the planned static arena of the generated C (exact) vs the smallest arena the tflite-micro
    host interpreter runs the model with (measured), with TFLM's own breakdown of that arena;
  - the generated const data vs the int8 flatbuffer TFLM reads from flash.

    .venv/bin/python benchmarks/runtime_memory.py [RUN]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def tflm_breakdown(tflite: Path) -> list[str]:
    from firmware_export._fdcapture import capture_fds
    from tflite_micro import runtime

    import numpy as np

    with capture_fds(fds=(2,)) as cap:
        it = runtime.Interpreter.from_bytes(tflite.read_bytes(), arena_size=1 << 22)
        shape = it.get_input_details(0)["shape"]
        it.set_input(np.zeros(shape, np.int8), 0)
        it.invoke()
        it.print_allocations()
    return [re.sub(r"^\[RecordingMicroAllocator\] ", "", ln) for ln in cap[0].splitlines() if "Allocator" in ln]


def main() -> None:
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/demo")
    tmp = None
    if not (run / "metrics.json").exists():
        tmp = tempfile.TemporaryDirectory()
        run = Path(tmp.name) / "demo"
        for args in (["train", "--out", str(run)], ["export", str(run)]):
            subprocess.run([sys.executable, "-m", "micronas", *args], check=True, capture_output=True)
    m = json.loads((run / "metrics.json").read_text())
    planned, tflm, naive = m["arena_bytes_planned"], m["tflm_arena_bytes"], m["arena_bytes_without_reuse"]
    consts, fb = m["flash_bytes_weights"], m["tflite_bytes"]
    print(f"model: {run / 'model_int8.tflite'} ({len(m['tflite_ops'])} TFLite ops, {m['runtime_layers']} kernel calls)")
    print("RAM")
    print(f"  micronas arena (planned, exact)          {planned:>9,} B   {planned / tflm:.3f} x TFLM")
    print(f"  TFLM arena (measured minimum, 64-bit)    {tflm:>9,} B   1.000 x TFLM")
    print(f"  all activations without reuse            {naive:>9,} B   {naive / tflm:.3f} x TFLM")
    print("  TFLM's own breakdown (host build):")
    for line in tflm_breakdown(run / "model_int8.tflite"):
        print("    " + line)
    print("flash (model data; code not included)")
    print(f"  micronas const data (distinct)           {consts:>9,} B   {consts / fb:.3f} x flatbuffer")
    print(f"  int8 flatbuffer read by TFLM             {fb:>9,} B   1.000 x flatbuffer")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()

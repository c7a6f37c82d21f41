"""KernelDNA's ReLU before or after its attention MUL: the same weights exported both ways.

`att * ReLU(conv)` and `ReLU(att * conv)` are the same function (the attention is a sigmoid,
positive), but not the same int8 graph: with the ReLU after the MUL the converter quantises the
conv output over its negative values too. For each trained run given (one with a kdna layer,
e.g. the searched watch networks `benchmarks/input_clip.py` trains), the script copies it twice,
exports one copy as KernelDNA exported before (ReLU fused into the MUL) and one as now (ReLU
fused into the conv), and prints on the validation split: each layer's int8 error, how many
windows int8 and fp32 classify differently, the softmax distance and the int8 accuracy. The
test split is never read.

    .venv/bin/python benchmarks/kdna_relu.py --work DIR RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from input_clip import measure  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="trained run directories with a kdna layer")
    ap.add_argument("--work", required=True, help="where the two exported copies of each run go")
    args = ap.parse_args()
    import torch.nn.functional as F

    from micronas import api
    from search_space.layers import KernelDNABlock

    def relu_after_mul(self, x):  # KernelDNA's forward before the ReLU moved onto the conv
        w = self.folded_weight if self.folded else self.weight()
        return F.relu(F.conv1d(x, w, self.bias, self.stride, self.pad) * self.attention(x).unsqueeze(2))

    print("| run | ReLU | int8 error per layer (relative RMS, %) | int8 != fp32 | softmax L1 | int8 val |\n"
          "|---|---|---|---|---|---|")
    for run in map(Path, args.runs):
        for variant in ("after the MUL (before)", "on the conv (now)"):
            dst = Path(args.work) / f"{run.name}-{'before' if 'before' in variant else 'now'}"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(run, dst, ignore=shutil.ignore_patterns(
                "model_int8.tflite", "model.onnx", "metrics.json", "stages.json", "c", "firmware", "report",
                "profile.json"))
            with mock.patch.object(KernelDNABlock, "forward", relu_after_mul) if "before" in variant \
                    else contextlib.nullcontext():
                api.export(dst)
            r = measure(dst)
            print(f"| {run.name} | {variant} | {', '.join(f'{100 * e:.1f}' for e in r['layer_err'])} "
                  f"| {r['differ']} of {r['windows']} | {r['prob_l1']:.4f} | {100 * r['val_int8']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

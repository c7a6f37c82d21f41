"""Build and run the generated C model on the host (gcc), as tests and `micronas export` do.

Two builds: the release flags (`-O2 -Wall -Wextra -Werror`) and a sanitizer build
(`-fsanitize=address,undefined`, any report is fatal). Both run the same driver
(`host/mn_host_main.c`): windows in from a file, logits out to a file.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np

from micronas_base import tempdirs
from micronas_base.errors import ExportError, ToolchainError

WARN_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
RELEASE_FLAGS = ["-O2"]
SANITIZE_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                  "-fno-sanitize-recover=all"]


def model_sources(c_dir: Path) -> list[Path]:
    """The generated model and runtime sources (not the TFLM C array)."""
    return [c_dir / "micronas_model.c", *sorted(c_dir.glob("mn_*.c"))]


def build(c_dir: Path, out: Path, sanitize: bool = False, extra: list[str] | None = None,
          float_api: bool = False) -> Path:
    """Compile the generated model in `c_dir` with the host driver into the executable `out`.

    `float_api`: the driver calls `micronas_invoke_float` (a model with a float32 edge).

    Raises:
        ToolchainError: no host gcc.
        ExportError: the generated code does not compile cleanly (the compiler's message).
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ToolchainError("host gcc not found", "install it: apt-get install gcc")
    driver = Path(str(resources.files("firmware_export") / "host" / "mn_host_main.c"))
    cmd = [gcc, *WARN_FLAGS, *(SANITIZE_FLAGS if sanitize else RELEASE_FLAGS), *(extra or []),
           *(["-DMN_HOST_FLOAT"] if float_api else []), "-I", str(c_dir), *map(str, model_sources(c_dir)),
           str(driver), "-o", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise ExportError(f"the generated C in {c_dir} does not compile on the host:\n{p.stderr[-2000:]}")
    return out


def run(binary: Path, inputs: np.ndarray, output_bytes: int, output_dtype=np.int8) -> np.ndarray:
    """Run `inputs` (N, ...) through a host build; returns (N, output_bytes) of `output_dtype`.

    Args:
        binary: The host build.
        inputs: int8 windows, or float32 ones for a float-API build (`build(float_api=True)`).
        output_bytes: Output elements per window (bytes for int8).
        output_dtype: int8, or float32 for a float-API build of a model with a float32 output.

    Raises:
        ExportError: the program failed (a sanitizer report, say).
    """
    in_dtype = np.float32 if np.asarray(inputs).dtype == np.float32 else np.int8
    x = np.ascontiguousarray(inputs, in_dtype).reshape(len(inputs), -1)
    with tempdirs.temp_dir("host") as td:
        fin, fout = Path(td) / "in.bin", Path(td) / "out.bin"
        fin.write_bytes(x.tobytes())
        p = subprocess.run([str(binary), str(fin), str(fout)], capture_output=True, text=True)
        if p.returncode != 0:
            raise ExportError(f"host run of the generated model failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        out = np.frombuffer(fout.read_bytes(), output_dtype)
    if out.size != len(x) * output_bytes:
        raise ExportError(f"host run wrote {out.size} bytes; expected {len(x) * output_bytes}")
    return out.reshape(len(x), output_bytes)


def build_and_run(c_dir: Path, inputs: np.ndarray, output_bytes: int, sanitize: bool = False,
                  float_api: bool = False, output_dtype=np.int8) -> np.ndarray:
    """Compile into a temporary directory and run once (`float_api`: through micronas_invoke_float)."""
    with tempdirs.temp_dir("build") as td:
        exe = build(c_dir, Path(td) / "model", sanitize=sanitize, float_api=float_api)
        return run(exe, inputs, output_bytes, output_dtype)

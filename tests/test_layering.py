"""The package layering of STYLE.md, checked by walking every import statement and C include.

Bottom to top (a package imports only itself and the layers below it; arrows only downward):

    micronas            orchestration: search, training, table-building campaigns, device access,
                        reports, the CLI; the only package that imports all the others
    latency_tables      data and a pure predictor: keys on the runtime-op registry, lowers
                        search-space networks through the code generator's planner; no torch at
                        module import and never touches a device
    firmware_export     owns the memory planner, the code generator and every runtime op
    search_space        the search ops, architectures, torch layers    } one layer: neither
    targets             boards, firmware glue, emulator, serial link   } imports the other;
                                                                         targets has no ML deps
    micronas_base       errors, atomic file writes, the version; stdlib only

C: the firmware (targets/firmware) includes only its own headers and generated ones (the
model's and the BENCH_OP dispatcher's, rendered from firmware_export/templates); the runtime
(firmware_export/runtime) only its own headers.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    ("micronas_base",),
    ("search_space", "targets"),
    ("firmware_export",),
    ("latency_tables",),
    ("micronas",),
]
PACKAGES = [p for layer in LAYERS for p in layer]
LEVEL = {p: i for i, layer in enumerate(LAYERS) for p in layer}
ALLOWED = {p: {p} | {q for q in PACKAGES if LEVEL[q] < LEVEL[p]} for p in PACKAGES}
# latency_tables is data and a pure predictor: the device side of `targets` is out of bounds
NEVER = {"latency_tables": ("targets.qemu", "targets.protocol", "targets.flash", "targets.build")}
HEAVY = {"torch", "tensorflow", "onnx2tf", "onnx", "ai_edge_litert", "tflite_micro", "matplotlib"}
NO_ML = ("targets", "micronas_base")
# Modules on the `micronas --help` path or that must stay light by design.
LIGHT_MODULES = ["micronas/cli.py", "micronas/errors.py", "micronas_base/errors.py", "micronas_base/files.py",
                 "micronas/units.py", "micronas/__init__.py",
                 "search_space/registry.py", "search_space/arch.py", "search_space/__init__.py",
                 "latency_tables/__init__.py", "targets/__init__.py", "firmware_export/__init__.py",
                 "search_space/space.py", *(f"latency_tables/{m}.py" for m in ("keys", "table", "lowering", "predict"))]


def _imports(path: Path, top_level_only: bool = False):
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from targets import qemu` may name a module
                yield f"{node.module}.{alias.name}", node.lineno


def _py_files(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def upward_imports(package: str, files) -> list[str]:
    """Every import in `files` (of `package`) that runs upward, sideways or out of bounds."""
    bad = []
    for f in files:
        for mod, line in _imports(f):
            top = mod.split(".")[0]
            where = f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}:{line}"
            if top in PACKAGES and top not in ALLOWED[package]:
                bad.append(f"{where} imports {mod} ({package} is below {top})")
            if any(mod == n or mod.startswith(n + ".") for n in NEVER.get(package, ())):
                bad.append(f"{where} imports {mod} ({package} never touches a device)")
            if package in NO_ML and top in HEAVY:
                bad.append(f"{where} imports {mod} ({package} has no ML deps)")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_no_upward_imports(package):
    bad = upward_imports(package, _py_files(package))
    assert not bad, "\n".join(bad)


def test_the_layers_are_the_intended_picture():
    assert ALLOWED["micronas_base"] == {"micronas_base"}
    assert ALLOWED["targets"] == {"targets", "micronas_base"}
    assert ALLOWED["search_space"] == {"search_space", "micronas_base"}
    assert ALLOWED["firmware_export"] == {"firmware_export", "search_space", "targets", "micronas_base"}
    assert ALLOWED["latency_tables"] == ALLOWED["firmware_export"] | {"latency_tables"}
    assert ALLOWED["micronas"] == set(PACKAGES)


def test_the_walk_fails_on_an_upward_import(tmp_path):
    """Guard against a checker that passes everything: each kind of violation is caught."""
    f = tmp_path / "m.py"
    f.write_text("import micronas.api\nfrom firmware_export import codegen\ndef f():\n    import torch\n")
    assert len(upward_imports("targets", [f])) == 3
    assert len(upward_imports("search_space", [f])) == 2  # micronas, firmware_export (torch is fine here)
    f.write_text("from targets.qemu import Emulator\nfrom targets import boards, build\n")
    assert upward_imports("latency_tables", [f]) == [
        f"{f}:1 imports targets.qemu.Emulator (latency_tables never touches a device)",
        f"{f}:2 imports targets.build (latency_tables never touches a device)"]
    assert upward_imports("micronas", [f]) == []


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_no_heavy_imports_at_module_level(module):
    bad = [f"{module}:{line} imports {mod}" for mod, line in _imports(ROOT / module, top_level_only=True)
           if mod.split(".")[0] in HEAVY]
    assert not bad, "\n".join(bad)


def test_latency_tables_import_no_torch():
    """The predictor runs inside the search loop and the CLI's `tables` commands: no torch, no TF."""
    import subprocess
    import sys

    code = ("import sys, latency_tables.predict, latency_tables.costs; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'onnx2tf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# ---- C includes ----------------------------------------------------------------------------

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
GENERATED_HEADERS = {p.name.removesuffix(".tmpl") for p in (ROOT / "firmware_export" / "templates").glob("*.h.tmpl")}
C_DIRS = {  # directory -> the quoted includes it may use besides its own files
    "targets/firmware": GENERATED_HEADERS,
    "firmware_export/runtime": set(),
}


def foreign_includes(directory: Path, allowed: set[str]) -> list[str]:
    own = {p.name for p in directory.iterdir()}
    bad = []
    for f in sorted(directory.iterdir()):
        if f.suffix not in (".c", ".h"):
            continue
        for m in _INCLUDE.finditer(f.read_text()):
            if m.group(1) not in own | allowed:
                line = f.read_text()[: m.start()].count("\n") + 1
                bad.append(f"{f.name}:{line} includes {m.group(1)!r}")
    return bad


@pytest.mark.parametrize("directory", sorted(C_DIRS))
def test_c_includes_only_own_and_generated_headers(directory):
    bad = foreign_includes(ROOT / directory, C_DIRS[directory])
    assert not bad, f"{directory}: " + "; ".join(bad)


def test_the_include_check_fails_on_a_foreign_header(tmp_path):
    (tmp_path / "own.h").write_text("")
    (tmp_path / "a.c").write_text('#include <string.h>\n#include "own.h"\n#include "micronas_runtime.h"\n')
    assert foreign_includes(tmp_path, {"micronas_model.h"}) == ["a.c:3 includes 'micronas_runtime.h'"]
    assert "micronas_model.h" in GENERATED_HEADERS

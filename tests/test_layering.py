"""The package layering of STYLE.md, checked by walking every import statement.

    micronas            orchestrates; may import everything
    latency_tables      keys on the op registry; lowers search-space networks through the code
                        generator and measures them on targets; no torch at module import
    firmware_export     owns the memory planner and every runtime op; above search_space and targets
    search_space        above the basics
    targets             above the basics; no ML dependencies at all
    micronas_base       bottom: errors, atomic file writes, the version; stdlib only
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["micronas", "firmware_export", "latency_tables", "search_space", "targets", "micronas_base"]
ALLOWED = {
    "micronas": set(PACKAGES),
    "firmware_export": {"firmware_export", "search_space", "targets", "micronas_base"},
    "latency_tables": {"latency_tables", "search_space", "firmware_export", "targets", "micronas_base"},
    "search_space": {"search_space", "micronas_base"},
    "targets": {"targets", "micronas_base"},
    "micronas_base": {"micronas_base"},
}
HEAVY = {"torch", "tensorflow", "onnx2tf", "onnx", "ai_edge_litert", "tflite_micro", "matplotlib"}
# Modules on the `micronas --help` path or that must stay light by design.
LIGHT_MODULES = ["micronas/cli.py", "micronas/errors.py", "micronas_base/errors.py", "micronas_base/files.py", "micronas/units.py", "micronas/__init__.py",
                 "search_space/registry.py", "search_space/arch.py", "search_space/__init__.py",
                 "latency_tables/__init__.py", "targets/__init__.py", "firmware_export/__init__.py",
                 "search_space/space.py", "firmware_export/codegen/registry.py",
                 "firmware_export/codegen/bench.py", *(f"latency_tables/{m}.py" for m in ("keys", "table", "lowering", "build",
                                                                                "predict"))]


def _imports(path: Path, top_level_only: bool = False):
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def _py_files(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_upward_imports(package):
    bad = []
    for f in _py_files(package):
        for mod, line in _imports(f):
            top = mod.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[package]:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
            if package in ("targets", "micronas_base") and top in HEAVY:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod} (targets has no ML deps)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_no_heavy_imports_at_module_level(module):
    bad = [f"{module}:{line} imports {mod}" for mod, line in _imports(ROOT / module, top_level_only=True)
           if mod.split(".")[0] in HEAVY]
    assert not bad, "\n".join(bad)


def test_the_walk_sees_imports():
    """Guard against a walker that finds nothing: api.py does import the lower layers."""
    mods = {m for m, _ in _imports(ROOT / "micronas" / "api.py")}
    assert {"search_space", "firmware_export", "micronas.data"} <= {m.split(".")[0] if m.startswith(
        ("search_space", "firmware_export")) else m for m in mods}


def test_latency_tables_import_no_torch():
    """The predictor runs inside the search loop and the CLI's `tables` commands: no torch, no TF."""
    import subprocess
    import sys

    code = ("import sys, latency_tables.predict, latency_tables.build; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'onnx2tf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"

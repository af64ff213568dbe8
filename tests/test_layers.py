"""The package's layers (README: Layout): the import-linter contracts hold, no module imports in
a cycle, the longest chain of imports a module runs when it is imported is at most 8 modules,
and the worker side (core, libraries, worker) imports in the OneFlow interpreter (Python 3.10,
numpy 1.26)."""
from __future__ import annotations

import ast
import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

from nablafuzz.runtime.registry import resolve_runtime

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nablafuzz"


def _graph(module_level: bool) -> Dict[str, Set[str]]:
    """module -> the nablafuzz modules it imports (at module level, or anywhere)."""
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: Dict[str, Set[str]] = {}
    for name, f in mods.items():
        here = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        tree = ast.parse(f.read_text())
        deps = set()
        for node in (tree.body if module_level else ast.walk(tree)):
            if isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    run = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "0 broken" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]


def test_no_cycle_and_the_longest_import_chain_is_at_most_8_modules():
    every = _graph(module_level=False)
    seen, stack = set(), []

    def visit(m):  # depth-first; a module met again on the stack closes a cycle
        assert m not in stack, " -> ".join(stack[stack.index(m):] + [m])
        if m in seen:
            return
        stack.append(m)
        for d in sorted(every[m]):
            visit(d)
        stack.pop()
        seen.add(m)
    for m in sorted(every):
        visit(m)
    loaded = _graph(module_level=True)

    @functools.lru_cache(maxsize=None)
    def chain(m):  # the longest chain of module-level imports that importing m runs
        return (m,) + max((chain(d) for d in loaded[m]), key=len, default=())
    longest = max((chain(m) for m in loaded), key=len)
    assert len(longest) <= 8, " -> ".join(longest)


def test_the_worker_side_imports_in_the_oneflow_interpreter():
    worker_side = sorted(
        ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for d in ("core", "libraries", "worker") for f in (PACKAGE / d).rglob("*.py")
        # what runs a library (its adapter) imports it, which only its own runtime has; its
        # record (__init__) and script text import anywhere
        if not (f.parent.parent.name == "libraries" and f.parent.name not in ("oneflow", "numpy_ref")
                and f.name not in ("__init__.py", "script.py")))
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok', len(sys.argv) - 1)"
    run = subprocess.run([resolve_runtime("oneflow").python, "-c", code, *worker_side], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.startswith("ok"), run.stderr[-3000:]

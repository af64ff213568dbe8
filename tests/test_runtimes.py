"""The installed runtimes: each library imports in its own interpreter, and the worker protocol
works across interpreters (the OneFlow runtime is Python 3.10 with numpy 1.26).

These need `nablafuzz install` to have run (the README's test command does it); they fail,
never skip, when a runtime is missing.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.core.quantities import ALL
from nablafuzz.runtime.install import load_registry
from nablafuzz.runtime.process import Runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.generate import generate
from nablafuzz.specs.spec import load_specs

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = {"torch": "2.13.0", "jax": "0.10.2", "tensorflow": "2.21.0", "oneflow": "0.9.0"}


@pytest.fixture(scope="module")
def registry():
    reg = load_registry()
    missing = [lib for lib in LIBRARIES if lib not in reg or not Path(reg[lib]["python"]).exists()]
    assert not missing, f"runtimes missing for {missing}: run `nablafuzz install`"
    return reg


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_library_imports_in_its_runtime(registry, library):
    entry = registry[library]
    code = f"import {library}, sys; print({library}.__version__); print(sys.version_info[:2])"
    env = dict(entry.get("env", {}), PATH="/usr/bin:/bin", HOME=str(Path.home()))
    r = subprocess.run([entry["python"], "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    version, pyver = r.stdout.split("\n")[:2]
    assert version.startswith(LIBRARIES[library])
    assert pyver == ("(3, 10)" if library == "oneflow" else "(3, 11)")


def test_worker_protocol_across_interpreters(registry, tmp_path):
    """numpy_ref run by the OneFlow runtime's Python 3.10 / numpy 1.26 gives bitwise the same
    observations as by ours: framing, directions and scenarios are version independent."""
    specs = load_specs(ROOT / "api_specs", ["numpy_ref"])
    old = Runner(Runtime("numpy_ref", registry["oneflow"]["python"]), tmp_path / "old.log", 60.0)
    new = Runner(Runtime("numpy_ref", sys.executable), tmp_path / "new.log", 60.0)
    try:
        assert old.versions["python"].startswith("3.10") and old.versions["numpy"].startswith("1.26")
        for name in ("sin", "matmul", "sum", "maximum"):
            spec = specs.get("numpy_ref", name)
            for i in range(5):
                trial = generate(spec, 11, i)
                a, b = old.run(trial, spec, ALL), new.run(trial, spec, ALL)
                assert [r.scenario for r in a.results] == [r.scenario for r in b.results]
                for ra, rb in zip(a.results, b.results):
                    assert ra.outcome == rb.outcome
                    assert (ra.value == rb.value) or (np.isnan(ra.value) and np.isnan(rb.value))
                    for x, y in zip(ra.outputs, rb.outputs):
                        np.testing.assert_array_equal(x, y)
    finally:
        old.close()
        new.close()


def test_workers_import_nablafuzz_and_nothing_else_of_the_orchestrator():
    # an installed nablafuzz sits in the orchestrator's site-packages; its numpy 2 must not
    # reach the OneFlow worker (numpy 1.26) through PYTHONPATH
    import nablafuzz
    from nablafuzz.runtime.process import worker_path
    folder = Path(worker_path())
    assert [p.name for p in folder.iterdir()] == ["nablafuzz"]
    assert (folder / "nablafuzz").resolve() == Path(nablafuzz.__file__).resolve().parent

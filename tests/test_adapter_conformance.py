"""The shared adapter conformance suite: every adapter, run in its real worker against its
real library, computes each scenario of a few functions with known derivatives.

A new adapter adds one entry to LIBRARIES (its API names and argument names); everything
else is shared.  `stubflow`, a library folder outside the tree (tests/stub_library), shows
that a fifth library needs nothing else: its folder, one registration, this entry.  Needs the runtimes (`nablafuzz install`); never skips.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from nablafuzz.core.model import ArgKind, InputValue, Outcome, Trial
from nablafuzz.core.quantities import ALL, SECOND_ORDER, direction
from nablafuzz.core.tensors import to_record
from nablafuzz.oracle.compare import compare
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.spec import _Ctx, parse_api

# per library: our function id -> (API name, {our argument name: the library's})
LIBRARIES: Dict[str, Dict[str, tuple]] = {
    "numpy_ref": {"sin": ("sin", {"x": "x"}), "exp": ("exp", {"x": "x"}),
                  "multiply": ("multiply", {"x": "x", "y": "y"}), "matmul": ("matmul", {"x": "a", "y": "b"})},
    "torch": {"sin": ("torch.sin", {"x": "input"}), "exp": ("torch.exp", {"x": "input"}),
              "multiply": ("torch.mul", {"x": "input", "y": "other"}),
              "matmul": ("torch.matmul", {"x": "input", "y": "other"})},
    "jax": {"sin": ("jax.numpy.sin", {"x": "x"}), "exp": ("jax.numpy.exp", {"x": "x"}),
            "multiply": ("jax.numpy.multiply", {"x": "x1", "y": "x2"}),
            "matmul": ("jax.numpy.matmul", {"x": "a", "y": "b"})},
    "tensorflow": {"sin": ("tf.math.sin", {"x": "x"}), "exp": ("tf.math.exp", {"x": "x"}),
                   "multiply": ("tf.math.multiply", {"x": "x", "y": "y"}),
                   "matmul": ("tf.linalg.matmul", {"x": "a", "y": "b"})},
    "oneflow": {"sin": ("oneflow.sin", {"x": "input"}), "exp": ("oneflow.exp", {"x": "input"}),
                "multiply": ("oneflow.mul", {"x": "input", "y": "other"}),
                "matmul": ("oneflow.matmul", {"x": "input", "y": "other"})},
    # a fifth library, out of the tree: one folder (tests/stub_library/stubflow) and one line of
    # NABLAFUZZ_LIBRARIES; nothing in nablafuzz names it
    "stubflow": {"sin": ("stubflow.sin", {"x": "x"}), "exp": ("stubflow.exp", {"x": "x"}),
                 "multiply": ("stubflow.multiply", {"x": "x", "y": "y"}),
                 "matmul": ("stubflow.matmul", {"x": "a", "y": "b"})},
}
STUB = Path(__file__).parent / "stub_library"

# function id -> (f, analytic JVP given x, u, analytic second-order v.D2f[u, w])
X = np.array([[0.3, -1.2, 2.0], [0.7, 0.0, -0.4]])
Y = np.array([[1.1, -0.5, 0.25], [-2.0, 0.6, 1.5]])
M = np.array([[0.5, -1.0], [2.0, 0.3], [-0.7, 1.2]])
CASES = {
    "sin": ((X,), lambda x: np.sin(x), lambda x, u: np.cos(x) * u, lambda x, u, w, v: np.sum(-v * np.sin(x) * u * w)),
    "exp": ((X,), np.exp, lambda x, u: np.exp(x) * u, lambda x, u, w, v: np.sum(v * np.exp(x) * u * w)),
    "multiply": ((X, Y), lambda x, y: x * y, lambda x, y, ux, uy: ux * y + x * uy,
                 lambda x, y, ux, uy, wx, wy, v: np.sum(v * (ux * wy + uy * wx))),
    "matmul": ((X, M), lambda a, b: a @ b, lambda a, b, ua, ub: ua @ b + a @ ub,
               lambda a, b, ua, ub, wa, wb, v: np.sum(v * (ua @ wb + wa @ ub))),
}
SEED = 1234


def _spec(library: str, fid: str):
    api, names = LIBRARIES[library][fid]
    args = [{"name": names[n]} for n in (["x"] if len(CASES[fid][0]) == 1 else ["x", "y"])]
    return parse_api(_Ctx("conformance"), library, {"name": api, "args": args})


def _trial(library: str, fid: str, dtype: str) -> Trial:
    spec = _spec(library, fid)
    inputs = tuple(InputValue(a.name, ArgKind.TENSOR, to_record(x.astype(dtype)), True)
                   for a, x in zip(spec.args, CASES[fid][0]))
    return Trial(library, spec.name, SEED, dtype, inputs)


def _expected(fid: str):
    xs, f, jvp, d2 = CASES[fid]
    us = [direction(SEED, "u", i, x.shape, "float64") for i, x in enumerate(xs)]
    ws = [direction(SEED, "w", i, x.shape, "float64") for i, x in enumerate(xs)]
    out = f(*xs)
    v = direction(SEED, "v", 0, out.shape, "float64")
    first = float(np.sum(v * jvp(*xs, *us)))
    return out, first, float(d2(*xs, *us, *ws, v))


@pytest.fixture(scope="module", params=sorted(LIBRARIES))
def runner(request, tmp_path_factory):
    here = [str(Path(__file__).parent)]
    if request.param == "stubflow":  # registered the way a user registers a library folder
        mp = pytest.MonkeyPatch()
        mp.setenv("NABLAFUZZ_LIBRARIES", "stubflow=stubflow")
        mp.syspath_prepend(str(STUB))
        here.append(str(STUB))
    r = Runner(resolve_runtime(request.param, here), tmp_path_factory.mktemp("w") / "worker.log", 120.0)
    yield request.param, r
    r.close()
    if request.param == "stubflow":
        mp.undo()


def test_worker_reports_versions(runner):
    library, r = runner
    assert r.versions["python"].startswith(("3.10", "3.11"))
    assert library == "numpy_ref" or library in r.versions


@pytest.mark.parametrize("fid", sorted(CASES))
def test_every_scenario_matches_analytic_derivatives_float64(runner, fid):
    library, r = runner
    ex = r.run(_trial(library, fid, "float64"), _spec(library, fid), ALL)
    out, first, second = _expected(fid)
    got = {x.scenario: x for x in ex.results}
    assert all(x.outcome is Outcome.OK for x in ex.results), [(x.scenario, x.error) for x in ex.results]
    np.testing.assert_allclose(got["direct"].outputs[0], out, rtol=1e-13)
    for s in ("rev", "fwd"):
        np.testing.assert_allclose(got[s].value, first, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(got[s].outputs[0], out, rtol=1e-13)
    np.testing.assert_allclose(got["fd"].value, first, rtol=1e-8)
    for s in SECOND_ORDER:
        np.testing.assert_allclose(got[s].value, second, rtol=1e-7 if s.startswith("fd") else 1e-11, atol=1e-11)
    assert compare(ex, _spec(library, fid)).candidates == ()


@pytest.mark.parametrize("fid", sorted(CASES))
def test_float32_scenarios_agree_within_float32(runner, fid):
    library, r = runner
    ex = r.run(_trial(library, fid, "float32"), _spec(library, fid), ALL)
    _, first, _ = _expected(fid)
    got = {x.scenario: x for x in ex.results}
    assert got["direct"].outputs[0].dtype == np.float32
    for s in ("rev", "fwd"):
        np.testing.assert_allclose(got[s].value, first, rtol=1e-5)
    assert compare(ex, _spec(library, fid)).candidates == ()


def test_unknown_api_is_refused(runner):
    from nablafuzz.core.errors import WorkerError
    library, r = runner
    spec = parse_api(_Ctx("conformance"), library, {"name": "no_such_module_xyz:fn", "args": [{"name": "x"}]})
    trial = Trial(library, "no_such_module_xyz:fn", SEED, "float64",
                  (InputValue("x", ArgKind.TENSOR, to_record(X), True),))
    with pytest.raises(WorkerError):
        r.run(trial, spec, ALL)
    assert r.run(_trial(library, "sin", "float64"), _spec(library, "sin"), ALL).death is None



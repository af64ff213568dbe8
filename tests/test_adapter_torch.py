"""PyTorch-specific adapter behaviour, in the real torch worker (plus the message table)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nablafuzz.core.model import ArgKind, InputValue, Outcome, Trial, Verdict
from nablafuzz.core.quantities import ALL
from nablafuzz.core.tensors import to_record
from nablafuzz.oracle.compare import compare
from nablafuzz.oracle.verdict import judge
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.spec import _Ctx, load_specs, parse_api

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = Runner(resolve_runtime("torch", [str(Path(__file__).parent)]), tmp_path_factory.mktemp("t") / "w.log", 300.0)
    yield r
    r.close()


def _run(runner, spec_dict, inputs, dtype="float64"):
    spec = parse_api(_Ctx("test"), "torch", spec_dict)
    values = tuple(InputValue(n, k, v, d, kw) for n, k, v, d, kw in inputs)
    trial = Trial("torch", spec.name, 99, dtype, values, spec.differentiable_outputs)
    return spec, runner.run(trial, spec, ALL)


def _x(values, dtype="float64"):
    return ("input", ArgKind.TENSOR, to_record(np.array(values, dtype=dtype)), True, False)


def test_custom_function_without_jvp_is_unsupported_not_a_status_finding(runner):
    spec, ex = _run(runner, {"name": "helper_torch_ops:double_no_jvp", "args": [{"name": "input"}],
                             "capabilities": ["rev", "rev.rev"]}, [_x([0.5, -1.0])])
    assert ex.get("fwd").outcome is Outcome.UNSUPPORTED
    assert ex.get("rev").value is not None
    verdicts = {c.verdict for c in compare(ex, spec).candidates}
    assert Verdict.STATUS_MISMATCH not in verdicts and Verdict.MISSING_SUPPORT not in verdicts


def test_declared_forward_mode_that_is_missing_is_a_finding(runner):
    spec, ex = _run(runner, {"name": "helper_torch_ops:double_no_jvp", "args": [{"name": "input"}]},
                    [_x([0.5, -1.0])])
    assert any(c.verdict is Verdict.MISSING_SUPPORT and c.scenarios == ("fwd",) for c in compare(ex, spec).candidates)


def test_wrong_custom_backward_is_found_and_blamed_on_rev(runner):
    spec, ex = _run(runner, {"name": "helper_torch_ops:square_wrong_backward", "args": [{"name": "input"}],
                             "capabilities": ["rev", "fwd"]}, [_x([0.5, -1.0, 2.0])])
    (finding,) = [f for f in judge(ex, spec, runner).findings if f.candidate.order == 1]
    assert finding.candidate.verdict is Verdict.DERIVATIVE_MISMATCH and finding.candidate.scenarios == ("rev",)


def test_structural_zero_derivative_is_zero_not_an_error(runner):
    # sgn's derivative at real inputs is a ZeroTensor, which has no storage
    spec, ex = _run(runner, {"name": "torch.sgn", "args": [{"name": "input"}]}, [_x([0.5, -2.0])])
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert ex.get("rev").value == 0.0 and compare(ex, spec).candidates == ()


def test_complex_outputs_compare_as_real_pairs(runner):
    spec, ex = _run(runner, {"name": "torch.polar", "args": [{"name": "abs"}, {"name": "angle"}]},
                    [("abs", ArgKind.TENSOR, to_record(np.array([0.5, 2.0])), True, False),
                     ("angle", ArgKind.TENSOR, to_record(np.array([0.3, -1.0])), True, False)])
    assert ex.get("direct").outputs[0].shape == (2, 2)
    assert compare(ex, spec).candidates == ()


def test_dtype_arguments_reach_torch_as_dtypes(runner):
    spec, ex = _run(runner, {"name": "torch.sum", "args": [{"name": "input"},
                             {"name": "dtype", "kind": "dtype", "choices": ["float32"], "keyword": True}]},
                    [_x([0.5, 1.5]), ("dtype", ArgKind.DTYPE, "float32", False, True)])
    assert ex.get("direct").outputs[0].dtype == np.float32


def test_random_op_is_reseeded_so_randomness_is_never_a_finding(runner):
    spec, ex = _run(runner, {"name": "torch.nn.functional.dropout", "random": True,
                             "args": [{"name": "input"}, {"name": "p", "kind": "choice", "choices": [0.5]}]},
                    [_x(np.linspace(-1, 1, 12).tolist()), ("p", ArgKind.CHOICE, 0.5, False, False)])
    again = runner.run(ex.trial, spec, ALL)
    np.testing.assert_array_equal(ex.get("direct").outputs[0], again.get("direct").outputs[0])
    assert judge(ex, spec, runner).findings == ()


def test_derived_specs_cover_at_least_600_apis():
    specs = load_specs(ROOT / "api_specs", ["torch"]).specs
    names = {s.name for s in specs}
    assert len(names) >= 600
    for prefix in ("torch.nn.functional.", "torch.linalg.", "torch.special.", "torch.fft.", "torch.Tensor."):
        assert any(n.startswith(prefix) for n in names), prefix


def test_compiled_scenario_agrees_with_eager(runner):
    # opt-in (nightly profile): the first torch.compile of an API takes tens of seconds
    spec = parse_api(_Ctx("test"), "torch", {"name": "torch.sin", "args": [{"name": "input"}]})
    trial = Trial("torch", "torch.sin", 5, "float64", (InputValue(*_x([0.25, -1.5, 3.0])),))
    ex = runner.run(trial, spec, ("direct", "rev", "jit"))
    jit = ex.get("jit")
    assert jit.outcome is Outcome.OK, jit.error
    np.testing.assert_allclose(jit.value, ex.get("rev").value, rtol=1e-12)
    assert compare(ex, spec).candidates == ()


def test_repro_script_runs_alone_in_the_torch_runtime(runner, tmp_path):
    """A report found by the real pipeline renders a script that, run by the torch runtime's own
    interpreter with nothing of nablafuzz importable, prints the disagreement it claims."""
    import subprocess

    from nablafuzz.reports.repro import render
    from nablafuzz.reports.store import Store
    from nablafuzz.runtime.install import load_registry

    spec, ex = _run(runner, {"name": "helper_torch_ops:square_wrong_backward", "args": [{"name": "input"}],
                             "capabilities": ["rev", "fwd"]}, [_x([0.5, -1.0, 2.0])])
    (finding,) = [f for f in judge(ex, spec, runner).findings if f.candidate.order == 1]
    report, _ = Store(tmp_path / "store").record(finding, finding.trial, ("torch 2.13.0",), "test")
    script = tmp_path / "repro.py"
    script.write_text(render(report, {spec.id}))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([load_registry()["torch"]["python"], str(script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DISAGREEMENT" in done.stdout and "rev" in done.stdout
    assert "import nablafuzz" not in script.read_text() and "from nablafuzz" not in script.read_text()


def test_nn_layer_parameters_are_differentiable_inputs(runner):
    spec = parse_api(_Ctx("test"), "torch", {
        "name": "torch.nn.Linear", "module": True, "init": [3, 2],
        "args": [{"name": "input", "dims": ["4", "3"]},
                 {"name": "param:weight", "dims": ["2", "3"], "keyword": True},
                 {"name": "param:bias", "dims": ["2"], "keyword": True}]})
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s) for s in ((4, 3), (2, 3), (2,))]
    inputs = tuple(InputValue(a.name, ArgKind.TENSOR, to_record(v), True, a.keyword) for a, v in zip(spec.args, values))
    ex = runner.run(Trial("torch", "torch.nn.Linear", 3, "float64", inputs), spec, ALL)
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    x, w, b = values
    np.testing.assert_allclose(ex.get("direct").outputs[0], x @ w.T + b, rtol=1e-13)
    assert [g.shape for g in ex.get("rev").gradient] == [(4, 3), (2, 3), (2,)]
    assert compare(ex, spec).candidates == ()


def test_derived_specs_include_nn_layers():
    specs = load_specs(ROOT / "api_specs", ["torch"]).specs
    layers = [s for s in specs if s.module]
    assert len(layers) >= 20 and all(any(a.name.startswith("param:") for a in s.args) for s in layers)


@pytest.mark.parametrize("polluter", ["helper_torch_ops:leaves_grad_off", "helper_torch_ops:leaves_dual_level_open"])
def test_global_state_a_function_leaves_is_reset_before_the_next_trial(runner, polluter):
    # the next, correct function in the same worker must not inherit grad mode off or an open dual level
    _run(runner, {"name": polluter, "args": [{"name": "input"}]}, [_x([0.5, -1.0])])
    spec, ex = _run(runner, {"name": "torch.sin", "args": [{"name": "input"}]}, [_x([0.5, -1.0, 2.0])])
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert judge(ex, spec, runner).findings == ()


def test_symmetric_input_is_judged_along_symmetric_directions(runner):
    # eigvalsh reads one triangle and returns the symmetric gradient: along symmetric directions
    # (the structure's projection) every scenario agrees; along full ones finite differences do not
    from dataclasses import replace

    from nablafuzz.specs.generate import generate
    spec = parse_api(_Ctx("test"), "torch", {"name": "torch.linalg.eigvalsh",
                                              "args": [{"name": "input", "structure": "symmetric", "dims": [3, 3]}]})
    trial = generate(spec, 5, 0, dtype="float64")
    assert trial.projections == (("input", "symmetric"),)
    assert judge(runner.run(trial, spec, ALL), spec, runner).findings == ()
    unprojected = replace(trial, projections=())
    assert judge(runner.run(unprojected, spec, ALL), spec, runner).findings != ()


def test_a_mode_refusing_an_index_into_an_empty_tensor_is_not_a_finding(runner):
    # Note [invalid input]: index_add's forward returns on an empty tensor before checking
    # index 0, its backward does not
    spec = load_specs(ROOT / "api_specs", ["torch"]).get("torch", "torch.Tensor.index_add")
    empty = Trial("torch", spec.name, 1, "float64", (
        InputValue("input", ArgKind.TENSOR, to_record(np.zeros((0, 1))), True),
        InputValue("arg1", ArgKind.CHOICE, 0, False),
        InputValue("arg2", ArgKind.TENSOR, to_record(np.array([0], dtype=np.int64)), False),
        InputValue("arg3", ArgKind.TENSOR, to_record(np.zeros((1, 1))), True),
        InputValue("alpha", ArgKind.CHOICE, -1, False, True)))
    ex = runner.run(empty, spec, ALL)
    assert any(c.verdict is Verdict.STATUS_MISMATCH for c in compare(ex, spec).candidates)
    j = judge(ex, spec, runner)
    assert j.findings == () and dict(j.dismissed) == {"invalid_input": 1}, j
    # only an error about an index: TensorFlow's forward-mode gather fails at any input, empty or not
    from nablafuzz.oracle.filters import INDEX_ERROR
    assert not INDEX_ERROR.search("direct call succeeded but fwd raised AttributeError: 'IndexedSlices' object "
                                  "has no attribute '_id'")

"""JAX-specific adapter behaviour in the real jax worker: the `jit` scenario, pytree and complex
outputs, custom_vjp forward mode, and the JAX rows of the convention table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helper_adapter import library_runner, run_spec, tensor_input

from nablafuzz.core.config import make_config
from nablafuzz.core.model import ArgKind, InputValue, Outcome, Verdict
from nablafuzz.core.quantities import ALL, COMPILED
from nablafuzz.libraries import scenarios_for
from nablafuzz.oracle.compare import compare
from nablafuzz.oracle.verdict import judge
from nablafuzz.specs.spec import load_specs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = library_runner("jax", tmp_path_factory.mktemp("j") / "w.log")
    yield r
    r.close()


_tensor = tensor_input


def _run(runner, spec_dict, inputs, scenarios=ALL + (COMPILED,), dtype="float64"):
    return run_spec(runner, "jax", spec_dict, inputs, scenarios, dtype, seed=11)


def test_jit_is_on_by_default_for_jax_only():
    config = make_config()
    assert COMPILED in scenarios_for(config, "jax") and COMPILED not in scenarios_for(config, "torch")
    assert COMPILED not in scenarios_for(make_config(compiled=False), "jax")
    assert COMPILED in scenarios_for(make_config(compiled=True), "torch")
    assert scenarios_for(make_config(scenarios=["rev", "fwd"]), "jax") == ("rev", "fwd")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_jit_scenario_agrees_with_eager(runner, dtype):
    spec, ex = _run(runner, {"name": "jax.numpy.sin", "args": [{"name": "x"}]},
                    [_tensor("x", [0.25, -1.5, 3.0], dtype)], dtype=dtype)
    jit = ex.get(COMPILED)
    assert jit.outcome is Outcome.OK, jit.error
    assert jit.value == pytest.approx(ex.get("rev").value, rel=1e-5 if dtype == "float32" else 1e-12)
    np.testing.assert_array_equal(jit.outputs[0], ex.get("direct").outputs[0])
    assert judge(ex, spec, runner).findings == ()


def test_jit_closes_over_static_arguments(runner):
    # `axis` must stay a Python int under jit (a traced axis raises)
    spec, ex = _run(runner, {"name": "jax.numpy.sum", "args": [{"name": "a"}, {"name": "axis", "kind": "axis", "of": "a",
                                                                               "keyword": True}]},
                    [_tensor("a", [[1.0, 2.0], [3.0, -4.0]]), InputValue("axis", ArgKind.AXIS, 1, False, True)])
    assert ex.get(COMPILED).outcome is Outcome.OK, ex.get(COMPILED).error
    assert compare(ex, spec).candidates == ()


def test_complex_outputs_are_compared_as_real_pairs(runner):
    spec, ex = _run(runner, {"name": "jax.numpy.fft.fft", "args": [{"name": "a"}]}, [_tensor("a", [1.0, -2.0, 0.5])])
    (out,) = ex.get("direct").outputs
    np.testing.assert_allclose(out, np.stack([np.fft.fft([1.0, -2.0, 0.5]).real, np.fft.fft([1.0, -2.0, 0.5]).imag],
                                             axis=-1), atol=1e-12)
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert judge(ex, spec, runner).findings == ()


def test_named_tuple_outputs_are_flattened(runner):
    spec, ex = _run(runner, {"name": "jax.numpy.linalg.slogdet", "args": [{"name": "a", "dims": ["2", "2"]}],
                             "differentiable_outputs": [1]},
                    [_tensor("a", [[2.0, 0.5], [0.25, 3.0]])])
    sign, logdet = ex.get("direct").outputs
    assert float(sign) == 1.0 and float(logdet) == pytest.approx(np.log(5.875))
    assert judge(ex, spec, runner).findings == ()


def test_forward_mode_through_custom_vjp_is_unsupported_not_a_bug(runner):
    spec, ex = _run(runner, {"name": "helper_jax_ops:clipped_square", "args": [{"name": "x"}],
                             "capabilities": ["rev", "rev.rev", "fwd.rev"], "unsupported": ["fwd", "rev.fwd", "fwd.fwd"]},
                    [_tensor("x", [0.25, -0.1])])
    assert ex.get("rev").outcome is Outcome.OK
    assert ex.get("fwd").outcome is Outcome.UNSUPPORTED, ex.get("fwd").error
    assert judge(ex, spec, runner).findings == ()


def test_integer_inputs_get_zero_cotangents(runner):
    spec, ex = _run(runner, {"name": "jax.numpy.take", "args": [{"name": "a"}, {"name": "indices", "dtypes": ["int64"],
                                                                                "differentiable": False}]},
                    [_tensor("a", [1.0, 2.0, 3.0]), _tensor("indices", [2, 0], "int64", diff=False)])
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert judge(ex, spec, runner).findings == ()


def test_jax_specs_cover_the_issue_floor_and_carry_conventions():
    specs = load_specs(ROOT / "api_specs", ["jax"]).specs
    names = {s.name for s in specs}
    assert len(names) >= 400
    for prefix in ("jax.numpy.", "jax.lax.", "jax.nn.", "jax.scipy.special.", "jax.scipy.stats.", "jax.numpy.linalg."):
        assert any(n.startswith(prefix) for n in names), prefix
    maximum = next(s for s in specs if s.name == "jax.numpy.maximum")
    assert any(k.convention and k.when == "kink" and k.url.startswith("https://github.com/jax-ml/jax/")
               for k in maximum.known_issues)
    assert not next(s for s in specs if s.name == "jax.numpy.sin").known_issues


def test_a_wrong_jit_derivative_is_reported_against_jit(runner, tmp_path):
    """The comparator names `jit` when the compiled call alone disagrees (planted: the helper's
    function computes 3x instead of 2x when jax.jit traces it)."""
    spec, ex = _run(runner, {"name": "helper_jax_ops:jit_differs", "args": [{"name": "x"}]},
                    [_tensor("x", [0.5, 1.5])])
    findings = judge(ex, spec, runner).findings
    assert {f.candidate.verdict for f in findings} == {Verdict.DERIVATIVE_MISMATCH, Verdict.VALUE_MISMATCH}
    assert all(f.candidate.scenarios == (COMPILED,) for f in findings)


def test_float0_tangents_of_integer_outputs_are_zeros(runner):
    # jnp.ix_ of empty float arrays returns integer arrays: forward mode gives float0 tangents
    spec, ex = _run(runner, {"name": "jax.numpy.ix_", "args": [{"name": "args0", "dims": ["0"]},
                                                               {"name": "args1", "dims": ["0"]}]},
                    [_tensor("args0", np.zeros(0)), _tensor("args1", np.zeros(0))])
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert judge(ex, spec, runner).findings == ()


def test_a_trial_without_differentiable_input_runs_the_call_only(runner):
    spec, ex = _run(runner, {"name": "jax.numpy.fft.rfftfreq", "args": [{"name": "n", "kind": "int"}]},
                    [InputValue("n", ArgKind.INT, 2, False, False)])
    assert [r.scenario for r in ex.results] == ["direct"]
    j = judge(ex, spec, runner)
    assert not j.valid and j.findings == ()


def test_config_a_function_changes_is_reset_before_the_next_trial(runner):
    _run(runner, {"name": "helper_jax_ops:leaves_debug_nans_on", "args": [{"name": "x"}]}, [_tensor("x", [0.5])])
    spec, ex = _run(runner, {"name": "jax.numpy.log", "args": [{"name": "x"}]}, [_tensor("x", [-1.0, 2.0])])
    direct = ex.get("direct")
    assert direct.outcome is Outcome.OK and np.isnan(direct.outputs[0][0]), direct  # NaN, not FloatingPointError


def test_a_compiled_value_decided_by_input_rounding_is_dismissed(runner):
    """Note [conditioning], for values: cauchy.isf(1.45e15) is tan of an argument whose last bit is
    worth a radian; jax.jit fuses pi/2 - pi q into one rounding and gets -1.53 where eager gets
    0.0093.  Rounding q itself moves the value as much: no evaluation is more right."""
    spec, ex = _run(runner, {"name": "jax.scipy.stats.cauchy.isf",
                             "args": [{"name": "q"}, {"name": "loc"}, {"name": "scale"}]},
                    [_tensor("q", [[[1454534116569838.8]]]), _tensor("loc", [[[0.0]]]), _tensor("scale", [[[1.0]]])])
    j = judge(ex, spec, runner)
    assert j.candidates >= 1 and j.findings == () and dict(j.dismissed).get("conditioning") == j.candidates

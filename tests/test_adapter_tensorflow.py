"""TensorFlow-specific adapter behaviour in the real tensorflow worker: None gradients, the
`jit` scenario, complex outputs, missing gradients, and the recorded oneDNN setting."""
from __future__ import annotations

import numpy as np
import pytest
from helper_adapter import library_runner, run_spec, tensor_input, worker_catalogue

from nablafuzz.core.model import ArgKind, InputValue, Outcome, Verdict
from nablafuzz.core.quantities import ALL, COMPILED
from nablafuzz.oracle.verdict import judge


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = library_runner("tensorflow", tmp_path_factory.mktemp("tf") / "w.log")
    yield r
    r.close()


_tensor = tensor_input


def _run(runner, spec_dict, inputs, scenarios=ALL + (COMPILED,), dtype="float64"):
    return run_spec(runner, "tensorflow", spec_dict, inputs, scenarios, dtype, seed=13)


def test_versions_record_the_onednn_setting(runner):
    assert runner.versions["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert runner.versions["tensorflow"].startswith("2.")


def test_none_gradient_is_a_structural_zero(runner):
    # Floor's registered gradient is None: normalised to zeros, it agrees with finite differences
    spec, ex = _run(runner, {"name": "tf.math.floor", "args": [{"name": "x"}]}, [_tensor("x", [0.25, -1.5, 3.5])])
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert ex.get("rev").value == 0.0 and ex.get("fwd").value == 0.0
    assert judge(ex, spec, runner).findings == ()


def test_a_missing_derivative_is_still_a_finding(runner):
    spec, ex = _run(runner, {"name": "helper_tf_ops:half_stopped", "args": [{"name": "x"}]},
                    [_tensor("x", [0.5, -2.0])])
    findings = judge(ex, spec, runner).findings
    assert any(f.candidate.verdict is Verdict.DERIVATIVE_MISMATCH and "rev" in f.candidate.scenarios
               for f in findings)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_jit_scenario_agrees_with_eager(runner, dtype):
    spec, ex = _run(runner, {"name": "tf.math.sin", "args": [{"name": "x"}]},
                    [_tensor("x", [0.25, -1.5, 3.0], dtype)], dtype=dtype)
    jit = ex.get(COMPILED)
    assert jit.outcome is Outcome.OK, jit.error
    assert jit.value == pytest.approx(ex.get("rev").value, rel=1e-5 if dtype == "float32" else 1e-12)
    assert judge(ex, spec, runner).findings == ()


def test_jit_keeps_python_arguments_static(runner):
    spec, ex = _run(runner, {"name": "tf.math.reduce_sum", "args": [
        {"name": "input_tensor"}, {"name": "axis", "kind": "axis", "of": "input_tensor", "keyword": True}]},
        [_tensor("input_tensor", [[1.0, 2.0], [3.0, -4.0]]), InputValue("axis", ArgKind.AXIS, 1, False, True)])
    assert ex.get(COMPILED).outcome is Outcome.OK, ex.get(COMPILED).error
    assert judge(ex, spec, runner).findings == ()


def test_complex_outputs_are_compared_as_real_pairs(runner):
    spec, ex = _run(runner, {"name": "tf.signal.rfft", "args": [{"name": "input_tensor"}]},
                    [_tensor("input_tensor", [1.0, -2.0, 0.5, 4.0], "float32")], ALL, "float32")
    (out,) = ex.get("direct").outputs
    want = np.fft.rfft([1.0, -2.0, 0.5, 4.0])
    np.testing.assert_allclose(out, np.stack([want.real, want.imag], axis=-1), atol=1e-5)
    assert ex.get("rev").outcome is Outcome.OK and ex.get("fwd").outcome is Outcome.OK


def test_an_op_without_gradient_is_unsupported(runner):
    # Snapshot has a kernel but no registered gradient: "unsupported", not an error
    spec, ex = _run(runner, {"name": "tf.raw_ops.Snapshot", "args": [
        {"name": "input", "dims": ["2", "2"], "keyword": True}], "capabilities": [], "unsupported": ["rev", "fwd"]},
        [_tensor("input", [[2.0, 0.5], [0.25, 3.0]], keyword=True)], ("direct", "rev"))
    assert ex.get("direct").outcome is Outcome.OK
    assert ex.get("rev").outcome is Outcome.UNSUPPORTED, ex.get("rev").error
    assert judge(ex, spec, runner).findings == ()


@pytest.fixture(scope="module")
def tf_catalogue(tmp_path_factory):
    return worker_catalogue("tensorflow", tmp_path_factory.mktemp("cat") / "w.log")


def test_catalogue_lists_a_wrapper_and_its_raw_op_once(tf_catalogue):
    entries = {e["name"]: e for e in tf_catalogue["entries"]}
    # tf.nn.relu wraps tf.raw_ops.Relu: one entry, typed from the OpDef, the raw op as alias
    assert "tf.raw_ops.Relu" in entries["tf.nn.relu"]["aliases"] and "tf.raw_ops.Relu" not in entries
    assert entries["tf.nn.relu"]["params"][0]["annotation"] == "Tensor"
    # tf.compat.v1 names of the same function are aliases, never entries of their own
    assert "tf.compat.v1.nn.relu" in entries["tf.nn.relu"]["aliases"]
    assert not any(n.startswith("tf.compat") for n in entries)
    # a raw op no public API wraps is listed by itself, keyword-only, its dtype attribute a DType
    cast = entries["tf.raw_ops.BatchMatMulV3"]["params"]
    assert {p["name"]: p["annotation"] for p in cast}["Tout"] == "DType" and cast[0]["kind"] == "keyword_only"
    # an op whose kernels take float32 but not float64 says so
    assert entries["tf.raw_ops.FusedBatchNorm"]["dtypes"] == ["float32"]
    # a wrapper of an op without gradient is dropped, with the reason
    assert any(d.startswith("tf.bitcast: no gradient registered") for d in tf_catalogue["dropped"])


def test_tensorflow_specs_cover_the_issue_floor():
    from pathlib import Path

    from nablafuzz.specs.spec import load_specs
    specs = load_specs(Path(__file__).resolve().parents[1] / "api_specs", ["tensorflow"]).specs
    names = {s.name for s in specs}
    assert len(names) == len(specs) >= 500  # aliases are notes of one spec, never specs of their own
    for prefix in ("tf.math.", "tf.nn.", "tf.linalg.", "tf.signal.", "tf.image.", "tf.keras.", "tf.raw_ops."):
        assert any(n.startswith(prefix) for n in names), prefix
    assert not any(n.startswith("tf.compat.") for n in names)
    relu = next(s for s in specs if s.name == "tf.nn.relu")
    assert "tf.raw_ops.Relu" in relu.notes and "tf.raw_ops.Relu" not in names
    logdet = next(s for s in specs if s.name == "tf.linalg.logdet")  # a probe hint gives it SPD input
    assert logdet.args[0].structure == "spd" and "hint:" in logdet.notes


def test_tape_recording_a_function_stops_is_restarted_before_the_next_trial(runner):
    _run(runner, {"name": "helper_tf_ops:leaves_recording_stopped", "args": [{"name": "x"}]}, [tensor_input("x", [0.5])])
    spec, ex = _run(runner, {"name": "tf.math.sin", "args": [{"name": "x"}]}, [tensor_input("x", [0.5, -1.0])])
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert judge(ex, spec, runner).findings == ()

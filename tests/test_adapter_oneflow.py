"""OneFlow-specific adapter behaviour, against real OneFlow 0.9.0 in its Python 3.10 worker
(the shared conformance suite covers the scenarios themselves)."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helper_adapter import library_runner, run_spec, tensor_input

from nablafuzz.core.model import ArgKind, InputValue, Outcome, Verdict
from nablafuzz.core.quantities import ALL
from nablafuzz.core.tensors import to_record
from nablafuzz.derive.specsource import mirrored
from nablafuzz.oracle.compare import compare
from nablafuzz.oracle.verdict import judge

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = library_runner("oneflow", tmp_path_factory.mktemp("of") / "w.log")
    yield r
    r.close()


def test_the_worker_is_python_3_10_with_oneflow_0_9(runner):
    assert runner.versions["python"].startswith("3.10") and runner.versions["oneflow"] == "0.9.0"
    assert runner.versions["numpy"].startswith("1.")


def _serving(runner) -> int:
    """The pid of the process that answers the runner's requests."""
    return runner.worker.request({"op": "hello"}, 60.0, until="hello").messages[-1]["pid"]


def test_the_worker_serves_from_one_thread_of_children_it_forks_after_the_import(tmp_path):
    # Note [forked worker]: the parent holds OneFlow's virtual-machine threads, idle; a child runs
    # the virtual machine in its one thread, dies as OneFlow makes it die, and a fresh child
    # replaces it, as one does at a restart, without importing OneFlow again
    r = library_runner("oneflow", tmp_path / "w.log")
    r.versions  # started
    parent, child = r.worker.proc, _serving(r)
    assert Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split() == [str(child)]
    assert len(os.listdir(f"/proc/{child}/task")) == 1 < len(os.listdir(f"/proc/{parent.pid}/task"))
    _, ex = run_spec(r, "oneflow", {"name": "oneflow.sort", "args": [{"name": "input"}]},
                     [tensor_input("input", 0.0)], ("direct",), "float64", seed=3)  # a 0-d sort segfaults
    assert ex.death is not None and ex.death.kind == "crashed" and ex.death.detail == "killed by SIGSEGV"
    assert ex.get("direct").outcome is Outcome.CRASHED
    spec, ex = run_spec(r, "oneflow", {"name": "oneflow.sin", "args": [{"name": "input"}]},
                        [tensor_input("input", [0.5])], ALL, "float64", seed=3)
    assert judge(ex, spec, r).findings == ()
    after_crash = _serving(r)
    r.restart()
    assert len({child, after_crash, _serving(r)}) == 3 and r.worker.proc is parent and r.worker.restarts == 0
    r.close()
    assert parent.returncode == 0  # the last child's `exit` ended both; nothing had to be killed


def test_an_api_a_forked_child_is_stuck_on_runs_unforked(tmp_path):
    # Note [stuck child]: OneFlow 0.9's CPU argmax splits its loop over a thread pool that a forked
    # child does not have; the child is found stuck, and the API runs in an unforked worker
    r = library_runner("oneflow", tmp_path / "w.log")
    spec = {"name": "oneflow.argmax", "args": [{"name": "input"}, {"name": "dim", "kind": "int"}]}
    values = np.arange(24.0).reshape(4, 6) % 7
    try:
        _, ex = run_spec(r, "oneflow", spec, [tensor_input("input", values, diff=False),
                                              InputValue("dim", ArgKind.INT, 1, False, False)],
                         ("direct",), "float64", seed=3)
        assert ex.death is None and ex.get("direct").outcome is Outcome.OK
        assert np.asarray(ex.get("direct").outputs[0]).tolist() == np.argmax(values, axis=1).tolist()
        assert r.stuck == {"oneflow.argmax"} and r.unforked is not None and not r.unforked.forks
        assert r.worker.forks and r.worker.restarts == 0
    finally:
        r.close()


def test_forward_mode_is_emulated_and_says_so(runner):
    spec, ex = run_spec(runner, "oneflow", {"name": "helper_oneflow_ops:doubled_sin", "args": [{"name": "x"}]},
                        [tensor_input("x", [0.3, -1.1])], ALL, "float64", seed=3)
    assert ex.get("fwd").emulated and ex.get("rev.fwd").emulated and not ex.get("rev").emulated
    assert ex.get("fwd").value == pytest.approx(ex.get("rev").value, rel=1e-12)  # exact, from the same backward
    (cand, *_) = compare(ex, spec).candidates
    assert cand.verdict is Verdict.DERIVATIVE_MISMATCH and {"rev", "fwd"} <= set(cand.scenarios)
    fwd = next(d for d in cand.disagreements if d.scenarios[0] == "fwd")
    assert "emulated" in fwd.detail and fwd.scenarios[1] == "fd"


def test_an_input_the_output_ignores_has_a_zero_derivative(runner):
    spec, ex = run_spec(runner, "oneflow", {"name": "helper_oneflow_ops:first", "args": [{"name": "x"}, {"name": "y"}]},
                        [tensor_input("x", [0.3, -1.1]), tensor_input("y", [2.0, 5.0])], ALL, "float64", seed=3)
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert compare(ex, spec).candidates == ()


def test_specs_mirror_torch_by_name(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "derived.yaml").write_text(
        "library: torch\napis:\n"
        "- {name: torch.sin, args: [{name: input}], dtypes: [float16, float32, float64], capabilities: [rev, fwd]}\n"
        "- {name: torch.Tensor.abs, args: [{name: self}], capabilities: [rev], unsupported: [fwd]}\n"
        "- {name: torch.nn.Linear, module: true, args: [{name: input}]}\n")
    specs, skipped = mirrored("oneflow", tmp_path)
    assert [s["name"] for s in specs] == ["oneflow.sin", "oneflow.Tensor.abs"]
    assert specs[0]["dtypes"] == ["float32", "float64"] and "capabilities" not in specs[0]
    assert "unsupported" not in specs[1] and specs[1]["notes"] == "torch.Tensor.abs"  # relearned in OneFlow
    assert skipped == ["torch.nn.Linear: a torch layer spec; layers are not mirrored yet"]


def test_a_second_derivative_oneflow_does_not_implement_is_unsupported(runner):
    # truncdiv's gradient has no gradient of its own in OneFlow 0.9.0: "unsupported", not an error
    spec, ex = run_spec(runner, "oneflow", {"name": "oneflow.Tensor.__rmod__", "args": [
        {"name": "input"}, {"name": "other"}], "capabilities": ["rev"], "unsupported": ["fwd.rev"]},
        [tensor_input("input", [0.7, 2.5]), tensor_input("other", [1.9, -3.1])], ("direct", "rev", "fwd.rev"),
        "float64", seed=3)
    assert ex.get("rev").outcome is Outcome.OK
    assert ex.get("fwd.rev").outcome is Outcome.UNSUPPORTED, ex.get("fwd.rev").error


def test_emulated_forward_mode_is_refused_where_the_backward_records_no_graph(runner):
    # mv's backward ignores create_graph: J u cannot be emulated, and a silent 0 would be a false report
    spec, ex = run_spec(runner, "oneflow", {"name": "oneflow.mv", "args": [
        {"name": "input", "dims": ["2", "3"]}, {"name": "vec", "dims": ["3"]}]},
        [tensor_input("input", [[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]]), tensor_input("vec", [0.5, -2.0, 1.0])],
        ("direct", "rev", "fwd", "rev.rev"), "float64", seed=3)
    assert ex.get("rev").outcome is Outcome.OK
    assert ex.get("fwd").outcome is Outcome.UNSUPPORTED, ex.get("fwd").error
    assert ex.get("rev.rev").outcome is Outcome.UNSUPPORTED, ex.get("rev.rev").error  # not a silent 0


def test_first_order_forward_mode_builds_no_graph_it_does_not_need(runner):
    # the second reverse pass of scatter_add records an op without gradient when create_graph is on
    spec, ex = run_spec(runner, "oneflow", {"name": "oneflow.scatter_add", "args": [
        {"name": "input", "dims": ["2", "3"]}, {"name": "dim", "kind": "int"},
        {"name": "index", "dtypes": ["int64"], "differentiable": False, "values": [0, 1, 1, 0, 1, 0], "dims": ["2", "3"]},
        {"name": "src", "dims": ["2", "3"]}]},
        [tensor_input("input", [[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]]), InputValue("dim", ArgKind.INT, 0, False),
         InputValue("index", ArgKind.TENSOR, to_record(np.array([[0, 1, 1], [0, 1, 0]])), False),
         tensor_input("src", [[0.5, -2.0, 1.0], [1.5, 0.25, -1.0]])], ("direct", "rev", "fwd", "fd"), "float64", seed=3)
    assert [r.outcome for r in ex.results] == [Outcome.OK] * 4, [(r.scenario, r.error) for r in ex.results]
    assert compare(ex, spec).candidates == ()


def test_a_zero_derivative_is_emulated_as_zero_not_refused(runner):
    # ceil's backward records no graph either, but there J = 0: forward mode gives 0
    spec, ex = run_spec(runner, "oneflow", {"name": "oneflow.ceil", "args": [{"name": "input"}]},
                        [tensor_input("input", [0.3, -1.7])], ("direct", "rev", "fwd"), "float64", seed=3)
    assert ex.get("fwd").outcome is Outcome.OK and ex.get("fwd").value == 0.0
    assert compare(ex, spec).candidates == ()


def test_grad_mode_a_function_leaves_off_is_reset_before_the_next_trial(runner):
    run_spec(runner, "oneflow", {"name": "helper_oneflow_ops:leaves_grad_off", "args": [{"name": "x"}]},
             [tensor_input("x", [0.5])], ALL, "float64", seed=3)
    spec, ex = run_spec(runner, "oneflow", {"name": "oneflow.sin", "args": [{"name": "x"}]},
                        [tensor_input("x", [0.5, -1.0])], ALL, "float64", seed=3)
    assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
    assert judge(ex, spec, runner).findings == ()


def test_a_forward_computed_flat_is_settled_by_the_reference_not_reported(runner):
    # OneFlow's logsigmoid is -0.0 at 50 in float64 (it is -1.9e-22), so finite differences read 0
    # where its gradient, 1.9e-22, is right (Note [exact reference])
    from nablafuzz.specs.reference import flat_only
    spec, ex = run_spec(runner, "oneflow", {"name": "oneflow.nn.functional.logsigmoid", "args": [{"name": "input"}]},
                        [tensor_input("input", 50.0)], ALL, "float64", seed=2351779220553442792)
    assert ex.get("fd").value == 0 and ex.get("rev").value != 0
    spec = replace(spec, reference="logsigmoid")
    (fd_alone,) = judge(ex, replace(spec, reference=""), runner).findings  # the first-order report it made
    assert fd_alone.fingerprint.order == 1 and fd_alone.fingerprint.scenarios == ("fwd", "rev")
    # settled by the reference, the first order is right; what is left is the second derivative's
    # cancellation (0 against -1.9e-22), the store's vetted logsigmoid report (same fingerprint)
    (found,) = judge(ex, flat_only(spec), runner).findings
    assert found.fingerprint.order == 2 and found.fingerprint.scenarios == ("fwd.fwd", "fwd.rev", "rev.fwd", "rev.rev")
    assert "mp.mp" in found.message and found.fingerprint.verdict is Verdict.DERIVATIVE_MISMATCH


def test_softplus_whose_forward_underflows_is_settled_by_its_flat_only_reference(runner):
    # OneFlow's softplus(-40) is 0 (it is 4.2e-18) and its gradient, sigmoid(-40), is right: the
    # table's softplus row settles only such a flat forward (`use: flat`, api_specs/references.yaml)
    from nablafuzz.specs.spec import load_specs
    loaded = load_specs(ROOT / "api_specs", ["oneflow"])
    spec = next(s for s in loaded.specs if s.name == "oneflow.nn.functional.softplus")
    assert spec.reference == "softplus" and spec.reference_use == "flat"
    _, ex = run_spec(runner, "oneflow", {"name": spec.name, "args": [{"name": "input"}]},
                     [tensor_input("input", -40.0)], ALL, "float64", seed=7)
    assert ex.get("fd").value == 0 and ex.get("rev").value != 0
    assert judge(ex, replace(spec, reference=""), runner).findings  # finite differences alone report it
    assert judge(ex, spec, runner).findings == ()

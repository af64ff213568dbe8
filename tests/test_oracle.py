"""The oracle's side (issue: references and scenarios): non-finite derivatives and errors in
undeclared modes are found, their correct twins are not."""
from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.campaign import run_campaign
from nablafuzz.core.config import make_config
from nablafuzz.core.model import Verdict
from nablafuzz.reports.store import Store

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def _campaign(tmp_path, monkeypatch, api, extra="", trials=12, regime_share=0.25, seed=None):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / f"{api}.yaml"
    spec.write_text(f'library: numpy_ref\napis:\n  - name: "helper_oracle_ops:{api}"\n    args: [{{name: x}}]\n{extra}')
    store = tmp_path / f"store-{api}"
    summary = run_campaign(make_config("default", libraries=["numpy_ref"], apis=["helper_oracle_ops:*"],
                                       spec_files=[str(spec)], spec_dir=str(ROOT / "api_specs"), store_dir=str(store),
                                       campaign_dir=str(tmp_path / "c"), workers=1, trials_per_api=trials,
                                       budget_s=300, name=api, regime_share=regime_share, seed=seed))
    reports, errors = Store(store).load_all()
    assert not errors
    return reports, summary


def test_a_nan_derivative_at_a_smooth_point_is_one_report(tmp_path, monkeypatch):
    (report,), _ = _campaign(tmp_path, monkeypatch, "square_nan_at_integers", trials=30)
    assert report.fingerprint.verdict is Verdict.NONFINITE_DERIVATIVE and "rev" in report.fingerprint.scenarios
    assert _campaign(tmp_path / "twin", monkeypatch, "square", trials=30)[0] == []


DECLARED = "    capabilities: [rev, rev.rev, fwd.rev, rev.fwd, fwd.fwd]\n    unsupported: [fwd]\n"


def test_an_internal_error_in_an_undeclared_mode_is_one_report(tmp_path, monkeypatch):
    (report,), _ = _campaign(tmp_path, monkeypatch, "square_fwd_internal_error", DECLARED)
    assert report.fingerprint.verdict is Verdict.STATUS_MISMATCH and report.fingerprint.scenarios == ("fwd",)
    assert "does not declare" in report.evidence.message
    # "not implemented" in the library's own words, where the spec says unsupported: nothing
    assert _campaign(tmp_path / "twin", monkeypatch, "square_fwd_not_implemented", DECLARED)[0] == []


# the plain modes the planted custom function gets right (its jvp is not differentiable again)
PLAIN = ("direct", "rev", "fwd", "fd", "rev.rev", "fwd.rev", "fd.rev")


def _entry_campaign(tmp_path, monkeypatch, library, api, args="[{name: x}]", trials=6):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "s.yaml"
    spec.write_text(f'library: {library}\napis:\n  - name: "{api}"\n    args: {args}\n'
                    '    capabilities: [rev, fwd, rev.rev, fwd.rev, rev.fwd, fwd.fwd]\n    dtypes: [float64]\n')
    store = tmp_path / "store"
    summary = run_campaign(make_config("default", libraries=[library], apis=[api],
                                       spec_files=[str(spec)] if ":" in api else [],
                                       spec_dir=str(ROOT / "api_specs"), store_dir=str(store),
                                       campaign_dir=str(tmp_path / "c"), workers=1, trials_per_api=trials,
                                       budget_s=300, name="entry", entry_points=True, regime_share=0.0,
                                       scenarios=PLAIN))
    reports, errors = Store(store).load_all()
    assert not errors
    return reports, summary


def test_a_bug_only_the_torch_func_transforms_reach_is_one_report(tmp_path, monkeypatch):
    (report,), _ = _entry_campaign(tmp_path, monkeypatch, "torch", "helper_torch_ops:cube_wrong_vmap")
    assert report.fingerprint.verdict is Verdict.DERIVATIVE_MISMATCH
    assert set(report.fingerprint.scenarios) <= {"jacrev", "jacfwd", "vmap", "hessian"}  # no plain mode
    # its repro script replays the transform in plain torch.func code and shows the disagreement
    from nablafuzz.reports.repro import render
    from nablafuzz.runtime.registry import resolve_runtime
    script = render(report, {"torch:helper_torch_ops:cube_wrong_vmap"})
    assert "torch.func.jacrev" in script and "def entry_value" in script
    run = subprocess.run([resolve_runtime("torch").python, "-c", script], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(TESTS)))
    assert run.returncode == 1 and "DISAGREEMENT" in run.stdout, run.stdout + run.stderr
    assert _entry_campaign(tmp_path / "twin", monkeypatch, "torch", "helper_torch_ops:cube")[0] == []


def test_entry_points_agree_with_the_plain_modes_on_real_apis(tmp_path, monkeypatch):
    for library, api in (("torch", "torch.linalg.det"), ("torch", "torch.nn.functional.softplus"),
                         ("jax", "jax.numpy.linalg.det"), ("jax", "jax.nn.softplus")):  # their derived specs
        reports, summary = _entry_campaign(tmp_path / api, monkeypatch, library, api, trials=4)
        assert reports == [] and summary.valid >= 3, (api, summary.lines())


def test_each_entry_point_runs_and_matches_its_plain_mode_in_torch_and_jax(tmp_path):
    from helper_adapter import library_runner

    from nablafuzz.core.quantities import ALL, ENTRY
    from nablafuzz.specs.generate import generate
    from nablafuzz.specs.spec import load_specs
    for library, api in (("torch", "torch.linalg.det"), ("jax", "jax.numpy.linalg.det"), ("tensorflow", "tf.linalg.det")):
        spec = load_specs(ROOT / "api_specs", [library]).get(library, api)
        runner = library_runner(library, tmp_path / f"{library}.log")
        try:  # the first trial whose VJP is finite (a singular draw has no derivative to compare)
            ex = next(e for e in (runner.run(generate(spec, 0, k, dtype="float64"), spec, ALL + ENTRY)
                                  for k in range(8)) if math.isfinite(e.get("rev").value))
        finally:
            runner.close()
        missing = {"torch": "graph", "jax": "graph", "tensorflow": "jacfwd"}[library]  # no such transform
        assert ex.get(missing).outcome.value == "unsupported"
        for name, plain in (("jacrev", "rev"), ("jacfwd", "fwd"), ("vmap", "rev"), ("graph", "rev"), ("hessian", "rev.rev")):
            if name == missing:
                continue
            got, want = ex.get(name), ex.get(plain)
            assert got.error is None and abs(got.value - want.value) <= 1e-9 * max(1.0, want.scale), (library, name, got)


def test_a_wrong_third_derivative_is_one_report(tmp_path, monkeypatch):
    def campaign(path, api):
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        path.mkdir(parents=True, exist_ok=True)
        spec = path / "s.yaml"
        spec.write_text(f'library: torch\napis:\n  - name: "{api}"\n    args: [{{name: x}}]\n    dtypes: [float64]\n')
        run_campaign(make_config("default", libraries=["torch"], apis=[api], spec_files=[str(spec)],
                                 spec_dir=str(ROOT / "api_specs"), store_dir=str(path / "store"),
                                 campaign_dir=str(path / "c"), workers=1, trials_per_api=6, budget_s=300,
                                 name="third", third_order=True, regime_share=0.0,
                                 scenarios=("direct", "rev", "fwd", "fd", "rev.rev", "fwd.rev", "rev.fwd", "fd.rev")))
        reports, errors = Store(path / "store").load_all()
        assert not errors
        return reports
    (report,) = campaign(tmp_path / "bug", "helper_torch_ops:quartic_wrong_third")
    assert report.fingerprint.verdict is Verdict.DERIVATIVE_MISMATCH and report.fingerprint.order == 3
    assert set(report.fingerprint.scenarios) <= {"rev.rev.rev", "fwd.rev.rev", "rev.fwd.rev"}
    assert campaign(tmp_path / "twin", "helper_torch_ops:quartic") == []
    from nablafuzz.reports.repro import render
    from nablafuzz.runtime.registry import resolve_runtime
    script = render(report, {"torch:helper_torch_ops:quartic_wrong_third"})
    run = subprocess.run([resolve_runtime("torch").python, "-c", script], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(TESTS)))
    assert run.returncode == 1 and "DISAGREEMENT" in run.stdout, run.stdout + run.stderr


def test_third_order_agrees_with_finite_differences_in_all_four_libraries(tmp_path):
    from helper_adapter import library_runner

    from nablafuzz.core.quantities import THIRD_ORDER
    from nablafuzz.specs.generate import generate
    from nablafuzz.specs.spec import load_specs
    for library, api in (("torch", "torch.sin"), ("jax", "jax.numpy.sin"), ("tensorflow", "tf.experimental.numpy.sin"),
                         ("oneflow", "oneflow.sin")):
        spec = load_specs(ROOT / "api_specs", [library]).get(library, api)
        runner = library_runner(library, tmp_path / f"{library}.log")
        try:
            ex = runner.run(generate(spec, 0, 1, dtype="float64"), spec, ("direct",) + THIRD_ORDER)
        finally:
            runner.close()
        ref = ex.get("fd.rev.rev")
        for name in THIRD_ORDER[:-1]:
            got = ex.get(name)
            if library == "torch" and name == "fwd.fwd.fwd":  # nested forward AD: unsupported, in torch's words
                assert got.outcome.value == "unsupported"
                continue
            assert abs(got.value - ref.value) <= 1e-6 * max(1.0, abs(ref.value)), (library, name, got, ref)


def test_a_kernel_variant_disagreement_is_one_report(tmp_path, monkeypatch):
    def campaign(path, api):
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        path.mkdir(parents=True, exist_ok=True)
        spec = path / "s.yaml"
        spec.write_text(f'library: torch\napis:\n  - name: "{api}"\n    args: [{{name: x}}]\n    dtypes: [float64]\n'
                        '    capabilities: [rev]\n    unsupported: [fwd, rev.rev, fwd.rev]\n')
        run_campaign(make_config("default", libraries=["torch"], apis=[api], spec_files=[str(spec)],
                                 spec_dir=str(ROOT / "api_specs"), store_dir=str(path / "store"),
                                 campaign_dir=str(path / "c"), workers=1, trials_per_api=4, budget_s=300,
                                 name="kernels", kernels=True, regime_share=0.0,
                                 scenarios=("direct", "rev", "fd")))
        reports, errors = Store(path / "store").load_all()
        assert not errors
        return reports
    (report,) = campaign(tmp_path / "bug", "helper_torch_ops:square_wrong_without_mkldnn")
    assert report.fingerprint.verdict is Verdict.DERIVATIVE_MISMATCH and report.fingerprint.scenarios == ("kernels",)
    assert campaign(tmp_path / "twin", "helper_torch_ops:square_kernel_neutral") == []


def test_tensorflow_with_onednn_on_runs_as_the_kernels_scenario(tmp_path):
    from helper_adapter import library_runner

    from nablafuzz.specs.generate import generate
    from nablafuzz.specs.spec import load_specs
    spec = load_specs(ROOT / "api_specs", ["tensorflow"]).get("tensorflow", "tf.matmul")
    runner = library_runner("tensorflow", tmp_path / "tf.log")
    try:
        ex = runner.run(generate(spec, 0, 1, dtype="float32"), spec, ("direct", "rev", "kernels"))
        versions = runner.variant.versions
    finally:
        runner.close()
    assert versions.get("TF_ENABLE_ONEDNN_OPTS") == "1" and runner.worker.versions.get("TF_ENABLE_ONEDNN_OPTS") == "0"
    got, want = ex.get("kernels"), ex.get("rev")
    assert got.outcome.value == "ok" and abs(got.value - want.value) <= 1e-4 * max(1.0, want.scale)




TAIL_ARGS = "[{name: x, dims: [4], values: [12.5, -15.0, 20.0, 25.5]}]"


def test_a_tail_only_wrong_derivative_is_found_against_the_50_digit_reference(tmp_path, monkeypatch):
    def campaign(path, api, reference):
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        path.mkdir(parents=True, exist_ok=True)
        spec = path / "s.yaml"
        spec.write_text(f'library: numpy_ref\napis:\n  - name: "helper_oracle_ops:{api}"\n    args: {TAIL_ARGS}\n'
                        f'    dtypes: [float64]\n{"    reference: tanh" if reference else ""}\n')
        run_campaign(make_config("default", libraries=["numpy_ref"], apis=["helper_oracle_ops:*"],
                                 spec_files=[str(spec)], spec_dir=str(ROOT / "api_specs"), store_dir=str(path / "s"),
                                 campaign_dir=str(path / "c"), workers=1, trials_per_api=12, budget_s=300,
                                 name=api, regime_share=0.0, reference=True))
        reports, errors = Store(path / "s").load_all()
        assert not errors
        return reports
    (report,) = campaign(tmp_path / "bug", "tanh_tail_bug", True)
    assert report.fingerprint.verdict is Verdict.DERIVATIVE_MISMATCH and report.evidence.severity in ("tail", "accuracy")
    assert any(d.scenarios[1].startswith("mp") for d in report.evidence.disagreements)
    assert campaign(tmp_path / "fd-only", "tanh_tail_bug", False) == []  # float64 differences cannot see it
    assert campaign(tmp_path / "twin", "tanh_exact", True) == []


def test_the_reference_table_covers_real_elementwise_apis_and_its_values_are_exact():
    from nablafuzz.specs.reference import derivatives, projections
    from nablafuzz.specs.spec import load_specs
    loaded = load_specs(ROOT / "api_specs", ["torch", "jax", "tensorflow", "oneflow"]).specs
    by_lib = {lib: [s for s in loaded if s.library == lib and s.reference] for lib in ("torch", "jax", "tensorflow", "oneflow")}
    assert all(len(v) >= 50 for v in by_lib.values()), {k: len(v) for k, v in by_lib.items()}
    assert next(s for s in loaded if s.id == "jax:jax.nn.gelu").reference == ""  # approximate=True: excluded
    # softplus only settles a flat forward, even with --reference (its threshold is by design)
    softplus = [s for s in loaded if s.name.endswith(".softplus") and s.reference]
    assert {s.library for s in softplus} >= {"torch", "oneflow"} and {s.reference_use for s in softplus} == {"flat"}
    assert next(s for s in loaded if s.id == "torch:torch.tanh").reference_use == "judge"
    assert derivatives("tanh", 20.0)[1] == pytest.approx(4 * math.exp(-40) / (1 + math.exp(-40)) ** 2, rel=1e-15)
    assert derivatives("log", -1.0) is None  # outside the real domain
    # f' ~ 3e-294: 0 to 50 digits, resolved by the precision ladder
    assert derivatives("erf", 26.0)[1] == pytest.approx(2 / math.sqrt(math.pi) * math.exp(-676), rel=1e-12)
    assert derivatives("deg2rad", 3.0)[1:] == pytest.approx((math.pi / 180, 0.0))  # linear: f'' = 0
    (p1, _, _), (p2, _, _) = projections("exp", [np.array([1.0, 2.0])], [0], [np.ones(2)], np.ones(2), [np.ones(2)], 2e-16)
    assert p1 == pytest.approx(math.e + math.e ** 2, rel=1e-15) and p2 == pytest.approx(p1, rel=1e-15)
    # two numbers, broadcast: atan2(y, x) in both arguments, the scalar x shared by every y
    (q1, _, _), (q2, _, _) = projections("atan2", [np.array([1.0, -2.0]), np.array(3.0)], [0, 1],
                                         [np.ones(2), np.array(1.0)], np.ones(2), [np.ones(2), np.array(1.0)], 2e-16)
    grad = [(x / (x * x + y * y), -y / (x * x + y * y)) for y, x in ((1.0, 3.0), (-2.0, 3.0))]
    assert q1 == pytest.approx(sum(a + b for a, b in grad), rel=1e-14)
    hess = [(-2 * x * y, y * y - x * x, y * y - x * x, 2 * x * y) for y, x in ((1.0, 3.0), (-2.0, 3.0))]
    assert q2 == pytest.approx(sum(sum(h) / (x * x + y * y) ** 2 for h, (y, x) in zip(hess, ((1.0, 3.0), (-2.0, 3.0)))), rel=1e-14)
    # Note [rounding floor]: tanh' at 20 is below what the rounded output resolves; erfc' at 25 is not
    (t1, _, floor), _ = projections("tanh", [np.array([20.0])], [0], [np.ones(1)], np.ones(1), [np.ones(1)], 2.2e-16)
    assert floor == pytest.approx(t1) and t1 > 0
    (e1, _, floor), _ = projections("erfc", [np.array([25.0])], [0], [np.ones(1)], np.ones(1), [np.ones(1)], 2.2e-16)
    assert e1 < 0 and floor < 1e-12 * abs(e1)
    assert derivatives("cosh", 0.0) is None  # a stationary point: 0 to no precision, left to finite differences


def test_a_reference_that_mpmath_takes_minutes_for_is_given_up_in_seconds_and_the_next_one_is_computed():
    """Note [bounded reference]: the derivatives of besselk(1, x) at x = 705.34 take mpmath over
    100 s at 150 digits; a helper process gives up on them after its time limit, and a fresh one
    computes the next reference."""
    import time

    from nablafuzz.oracle.bounded import bounded
    from nablafuzz.specs.reference import projections
    one = [np.ones(1)]
    start = time.monotonic()
    got = bounded(projections, "k1", [np.array([705.3433987524471])], [0], one, np.ones(1), one, 2.2e-16, seconds=5.0)
    assert time.monotonic() - start < 30 and got is None  # mpmath 1.3: over 100 s
    assert bounded(time.sleep, 60, seconds=1.0) is None
    (p1, _, _), (p2, _, _) = bounded(projections, "k1", [np.array([2.0])], [0], one, np.ones(1), one, 2.2e-16)
    assert p1 == pytest.approx(-0.18382681365779465, rel=1e-12) and p2 == pytest.approx(0.26674575909955036, rel=1e-12)


def test_entry_point_repro_scripts_run_in_torch_jax_and_tensorflow(tmp_path):
    from repro_ops import disagreement, make_report, tensor

    from nablafuzz.reports.repro import render
    from nablafuzz.runtime.registry import resolve_runtime
    for library, api, names in (("torch", "torch.sin", ("jacrev", "jacfwd", "vmap", "hessian")),
                                ("jax", "jax.numpy.sin", ("jacrev", "jacfwd", "vmap", "hessian")),
                                ("tensorflow", "tf.experimental.numpy.sin", ("jacrev", "vmap", "graph", "hessian"))):
        pairs = [disagreement(n, "rev.rev" if n == "hessian" else "rev") for n in names]
        script = render(make_report(library, api, [tensor([0.5, -1.0])], disagreements=pairs), {f"{library}:{api}"})
        run = subprocess.run([resolve_runtime(library).python, "-c", script], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and run.stdout.count("AGREEMENT") == len(names), (library, run.stdout + run.stderr)


def test_the_50_digit_reference_referees_two_libraries_that_disagree():
    """Note [cross-library referee]: two libraries alone get no verdict from each other; where the
    function has a 50-digit reference, it says which one is wrong, even in a tail."""
    from nablafuzz.core.model import ArgKind, Execution, InputValue, Outcome, ScenarioResult, Trial
    from nablafuzz.core.tensors import to_record
    from nablafuzz.oracle.compare import exact_reference
    from nablafuzz.oracle.cross import DEVIATE, NO_VERDICT, _derivative_deviation, recorded, refereed
    from nablafuzz.specs.equivalence import EquivalenceClass, Resolved
    from nablafuzz.specs.spec import load_specs
    specs = load_specs(ROOT / "api_specs", ["torch", "jax"])
    members = (("torch", specs.get("torch", "torch.tanh")), ("jax", specs.get("jax", "jax.numpy.tanh")))
    assert all(s.reference == "tanh" for _, s in members)
    x = np.array([1.5, -7.25, 9.0])
    trial = Trial("torch", "torch.tanh", 11, "float64", (InputValue("input", ArgKind.TENSOR, to_record(x), True),))
    direct = ScenarioResult("direct", Outcome.OK, outputs=(np.tanh(x),))
    exact = exact_reference(members[0][1], Execution(trial, (direct,)))[0].value
    executions = {lib: Execution(trial, (direct, ScenarioResult("rev", Outcome.OK, exact * (1 + 1e-3 * (lib == "jax")), abs(exact))))
                  for lib, _ in members}
    r = Resolved(EquivalenceClass("tanh", "torch:torch.tanh", ("input",), ()), members[0][1], members)
    votes: list = []
    assert _derivative_deviation(executions, "rev", "float64", votes, recorded(executions)) is None
    assert {v for _, _, v in votes} == {NO_VERDICT}
    votes = []
    found = _derivative_deviation(executions, "rev", "float64", votes, refereed(r, executions, recorded(executions)))
    assert found.library == "jax" and ("jax", "rev", DEVIATE) in votes and "50-digit reference" in found.disagreement.detail
    executions["jax"] = executions["torch"]  # the correct twin: both right
    assert _derivative_deviation(executions, "rev", "float64", [], refereed(r, executions, recorded(executions))) is None


def test_one_vote_per_derivative_rule_and_one_key_whatever_the_scenarios_run():
    """Note [one vote per implementation]: four scenarios running the reverse rule do not outvote
    the two running the forward rule; and the fingerprint names the plain modes among the culprits,
    so a wrong VJP is one entry with or without the transforms that share it."""
    from nablafuzz.core.model import Outcome, ScenarioResult, Tolerance, culprit_key
    from nablafuzz.oracle.compare import _majority
    rs = [ScenarioResult(s, Outcome.OK, 1.0, 1.0) for s in ("rev", "jacrev", "vmap", "kernels")]
    rs += [ScenarioResult(s, Outcome.OK, 2.0, 2.0) for s in ("fwd", "jacfwd")]
    _, culprits, ambiguous = _majority(rs, Tolerance(0.0, 1e-7), 2.0)
    assert ambiguous
    _, culprits, ambiguous = _majority(rs + [ScenarioResult("jvp2", Outcome.OK, 2.0, 2.0)], Tolerance(0.0, 1e-7), 2.0)
    assert not ambiguous and {r.scenario for r in culprits} == {"rev", "jacrev", "vmap", "kernels"}
    assert culprit_key(("jacrev", "kernels", "rev", "vmap")) == ("rev",)
    assert culprit_key(("hessian", "rev.fwd", "rev.rev")) == ("rev.fwd", "rev.rev")
    assert culprit_key(("jacrev",)) == ("jacrev",) and culprit_key(("kernels", "jit")) == ("jit", "kernels")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_planted_wrong_vjp_is_one_report_over_many_trials_and_regimes(tmp_path, monkeypatch, seed):
    # tiny, huge, tie and zero inputs leave finite differences unconverged in some trials: the
    # culprit must not flip to the forward mode there (Note [one vote per implementation])
    reports, summary = _campaign(tmp_path, monkeypatch, "square_vjp_off", trials=40, regime_share=0.25, seed=seed)
    assert len(reports) == 1 and reports[0].fingerprint.scenarios == ("rev",), [r.fingerprint for r in reports]
    assert summary.findings >= 20


def test_differences_of_exactly_zero_beside_a_nonzero_derivative_call_for_the_exact_reference():
    from nablafuzz.core.model import Outcome, ScenarioResult
    from nablafuzz.oracle.compare import _needs_exact
    fd = ScenarioResult("fd", Outcome.OK, 0.0, 0.0, 0.0)  # "converged": every difference was 0
    for use in ("judge", "flat"):  # a flat forward is settled by the reference in every campaign
        assert _needs_exact([fd, ScenarioResult("rev", Outcome.OK, 1.3e-22, 1.3e-22)], 1e-300, use)
        assert not _needs_exact([ScenarioResult("fd", Outcome.OK, 2.0, 2.0, 1e-9), ScenarioResult("rev", Outcome.OK, 2.0, 2.0)],
                                1e-12, use)
    # a tail below the roundoff floor is judged by the reference only where --reference asks for it
    tail = [ScenarioResult("fd", Outcome.OK, 1e-30, 1e-30, 1e-31), ScenarioResult("rev", Outcome.OK, 2e-30, 2e-30)]
    assert _needs_exact(tail, 1e-20, "judge") and not _needs_exact(tail, 1e-20, "flat")


def test_a_crash_of_finite_differences_is_not_the_library_s_and_an_intermediate_s_rounding_is_allowed():
    from nablafuzz.core.model import ApiSpec, ErrorInfo, Outcome, ScenarioResult
    from nablafuzz.oracle.compare import _status
    from nablafuzz.specs.reference import projections
    spec = ApiSpec(library="oneflow", name="oneflow.bernoulli", args=())
    crashed = ScenarioResult("fd", Outcome.CRASHED, error=ErrorInfo("crashed", "killed by SIGABRT"))
    assert _status(spec, crashed, "float64") is None  # the step moved p past 1
    assert _status(spec, ScenarioResult("rev", Outcome.CRASHED, error=ErrorInfo("crashed", "killed by SIGABRT")),
                   "float64").verdict is Verdict.CRASH
    # silu'' at 40 in float32: sigmoid(40) rounds to 1 inside the formula, so 0 is float32's honest answer
    _, (f2, _, floor) = projections("silu", [np.array([40.0])], [0], [np.ones(1)], np.ones(1), [np.ones(1)], 1.2e-7)
    assert floor == pytest.approx(abs(f2))


def test_a_report_vetted_as_a_false_positive_is_never_reported_again(tmp_path, monkeypatch):
    from nablafuzz.cli import main
    from nablafuzz.reports.triage import render_triage
    (report,), _ = _campaign(tmp_path, monkeypatch, "square_vjp_off", trials=8, regime_share=0.0)
    path = next((tmp_path / "store-square_vjp_off").rglob(f"{report.key}.json"))
    assert main(["vet", str(path), "--as", "false_positive", "--note", "planted: the VJP is 2.5 x on purpose"]) == 0
    with pytest.raises(SystemExit):  # refused by the parser, the file unchanged
        main(["vet", str(path), "--as", "maybe", "--note", "x"])
    from nablafuzz.reports.lock import LockedError, exclusive
    from nablafuzz.reports.vetting import vet
    with exclusive(tmp_path / "store-square_vjp_off", "report store"):  # as a campaign holds it
        with pytest.raises(LockedError, match="in use"):  # a campaign would save the report back unvetted
            vet(path, "bug", "x")
    (again,), summary = _campaign(tmp_path, monkeypatch, "square_vjp_off", trials=8, regime_share=0.0)
    assert again.vetted.verdict == "false_positive" and again.occurrences == report.occurrences
    assert summary.findings == 0 and dict(summary.dismissed).get("known_issue", 0) >= 1
    md = render_triage(tmp_path / "store-square_vjp_off")
    assert "1 false positive" in md and "No bug reports in this store." in md


def test_a_result_that_changes_only_between_processes_is_an_uninitialised_read(tmp_path, monkeypatch):
    # Note [uninitialised read]: the backward's leftover repeats bitwise in one process, so the
    # in-process nondeterminism check sees a stable wrong derivative; the fresh worker of the
    # confirmation does not
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    api = "helper_torch_ops:square_reads_leftovers"
    spec = tmp_path / "s.yaml"
    spec.write_text(f'library: torch\napis:\n  - name: "{api}"\n    args: [{{name: x}}]\n    dtypes: [float64]\n'
                    '    capabilities: [rev]\n')
    store = tmp_path / "store"
    run_campaign(make_config("default", libraries=["torch"], apis=[api], spec_files=[str(spec)],
                             spec_dir=str(ROOT / "api_specs"), store_dir=str(store), campaign_dir=str(tmp_path / "c"),
                             workers=1, trials_per_api=4, budget_s=300, name="leftovers", regime_share=0.0,
                             scenarios=("direct", "rev", "fd")))
    (report,), errors = Store(store).load_all()
    assert not errors and report.fingerprint.verdict is Verdict.UNINITIALISED_READ
    assert report.fingerprint.scenarios == ("rev",) and report.evidence.disagreements == ()
    assert report.occurrences >= 2  # each trial with a candidate (one subnormal draw is dismissed), one report
    from nablafuzz.reports.replay import replay_report, spec_for
    from nablafuzz.runtime.registry import resolve_runtime
    from nablafuzz.runtime.runner import Runner
    from nablafuzz.specs.spec import load_specs
    runner = Runner(resolve_runtime("torch", (str(TESTS),)), tmp_path / "replay.log", 60.0)
    try:
        replayed = replay_report(report, spec_for(report, load_specs(ROOT / "api_specs", ["torch"], [str(spec)])), runner)
    finally:
        runner.close()
    assert replayed.outcome.name == "REPRODUCED", replayed.found


@pytest.mark.parametrize("compiled, found", [(4.5e-8, False), (1e-3, True)])
def test_a_compiled_output_is_judged_against_the_calls_size(compiled, found):
    """Note [value floor]: polydiv's remainder, 0 eagerly and 4.5e-8 compiled in float32 beside a
    quotient of order 1, is the roundoff of the subtraction that made it; 1e-3 is a wrong value."""
    from helper_adapter import tensor_input

    from nablafuzz.core.model import Execution, Outcome, ScenarioResult, Trial
    from nablafuzz.core.quantities import COMPILED
    from nablafuzz.oracle.compare import compare
    from nablafuzz.specs.spec import spec_from_dict
    spec = spec_from_dict("jax", {"name": "jax.numpy.polydiv", "args": [{"name": "u"}, {"name": "v"}]}, "test")
    trial = Trial("jax", spec.name, 1, "float32", (tensor_input("u", [1.0, 2.0], "float32"),
                                                   tensor_input("v", [1.0], "float32")))
    quotient, remainder = np.array([1.0, 2.0], np.float32), np.array([0.0], np.float32)
    ex = Execution(trial, (ScenarioResult("direct", Outcome.OK, outputs=(quotient, remainder)),
                           ScenarioResult(COMPILED, Outcome.OK, 0.5, 0.5, outputs=(quotient, remainder + compiled)),
                           ScenarioResult("rev", Outcome.OK, 0.5, 0.5, outputs=(quotient, remainder))))
    values = [c for c in compare(ex, spec).candidates if c.verdict is Verdict.VALUE_MISMATCH]
    assert bool(values) is found

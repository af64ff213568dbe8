"""Each instability filter with a case it must dismiss and one it must keep, through real worker runs."""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pytest

from nablafuzz.core.model import (ApiSpec, ArgKind, Aspect, Candidate, Disagreement, Execution, InputValue, Outcome,
                                  ScenarioResult, Tolerance, Trial, Verdict)
from nablafuzz.core.quantities import ALL
from nablafuzz.core.tensors import to_record
from nablafuzz.oracle import filters
from nablafuzz.oracle.compare import compare
from nablafuzz.oracle.verdict import Judgement, judge
from nablafuzz.runtime.process import Runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.spec import _Ctx, parse_api

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    rt = Runtime("numpy_ref", sys.executable, python_path=(str(TESTS), str(TESTS / "specs")))
    r = Runner(rt, tmp_path_factory.mktemp("filters") / "w.log", 30.0)
    yield r
    r.close()


def make_spec(api: str, **fields: Any) -> ApiSpec:
    return parse_api(_Ctx("test"), "numpy_ref", dict({"name": api, "args": [{"name": "x"}]}, **fields))


def make_trial(api: str, x: Sequence, dtype: str = "float64", seed: int = 7) -> Trial:
    value = to_record(np.array(x, dtype=dtype))
    return Trial("numpy_ref", api, seed, dtype, (InputValue("x", ArgKind.TENSOR, value, True),))


def run_judge(runner: Runner, api: str, x: Sequence, dtype: str = "float64", **spec_fields: Any) -> Judgement:
    spec = make_spec(api, **spec_fields)
    execution = runner.run(make_trial(api, x, dtype), spec, ALL)
    assert execution.death is None, execution.death
    return judge(execution, spec, runner)


def outcome_of(judgement: Judgement, name: str) -> Optional[Any]:
    (finding,) = judgement.findings
    return next((o for o in finding.filters if o.filter == name), None)


# ---- kink ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("x", [[0.0, 1.0, -2.0], [[0.0, -0.0], [0.5, 0.0]], [0.0]], ids=["one-zero", "zeros", "only-0"])
def test_kink_abs_at_zero_yields_no_finding(runner, x):
    j = run_judge(runner, "abs", x)
    assert j.valid and j.findings == ()


def test_a_derivative_whose_pieces_are_narrower_than_an_ulp_is_not_judged_by_differences(runner):
    j = run_judge(runner, "helper_ops:fmod_huge_numerator", [1.0, 3.0])
    assert j.candidates and j.findings == () and dict(j.dismissed).get("kink")


@pytest.mark.parametrize("x", [[0.0, 1.0, -2.0], [[0.0, 0.0], [0.5, 1.5]]], ids=["one-zero", "zeros"])
def test_kink_filter_dismisses_subgradient_conventions(runner, x):
    # rev uses sign(0)=0 and fwd +1 at 0: they disagree, fd is unusable across the kink, and both
    # lie in the one-sided derivatives' hull, so the kink filter must dismiss
    j = run_judge(runner, "helper_ops:abs_conventions", x)
    assert j.candidates == 1
    assert j.dismissed == (("kink", 1),)
    assert j.findings == ()


def test_kink_filter_needs_a_real_kink(runner):
    # the same rev/fwd mismatch at a point without zeros cannot happen: a control for the case above
    j = run_judge(runner, "helper_ops:abs_conventions", [0.5, -1.0, 2.0])
    assert j.candidates == 0 and j.findings == ()


def test_kink_policy_none_keeps_convention_mismatch(runner):
    j = run_judge(runner, "helper_ops:abs_conventions", [0.0, 1.0, -2.0], kinks="none")
    assert j.candidates == 1 and len(j.findings) == 1
    assert all(o.filter != "kink" for o in j.findings[0].filters)


@pytest.mark.parametrize("x", [[0.0, 1.0, -2.0], [[1.5, 0.0], [-0.5, 2.0]]], ids=["one-zero", "2d"])
def test_kink_filter_keeps_wrong_derivative_at_smooth_point(runner, x):
    # x^3 is smooth at 0; its derivative there is wrong (1 instead of 0): must never be dismissed
    j = run_judge(runner, "broken_ops:cube_at_zero", x)
    assert j.dismissed == ()
    (finding,) = j.findings
    assert finding.candidate.verdict is Verdict.DERIVATIVE_MISMATCH and finding.candidate.order == 1
    kink = outcome_of(j, "kink")
    assert kink is not None and not kink.dismissed and "smooth" in kink.reason


def test_wrong_derivative_where_the_true_derivative_is_exactly_zero(runner):
    # x = [0.0] alone: finite differences give exactly 0 (+- roundoff), AD gives v*u ~ 1.  A
    # reference of exactly 0 is as converged as any other: the AD value is 100% wrong.
    j = run_judge(runner, "broken_ops:cube_at_zero", [0.0])
    assert j.candidates == 1, "fd reference 0.0 was not trusted: rev and fwd agree, so nothing was compared"
    (finding,) = j.findings
    assert finding.candidate.verdict is Verdict.DERIVATIVE_MISMATCH


def test_cube_at_zero_is_fine_without_zeros(runner):
    j = run_judge(runner, "broken_ops:cube_at_zero", [0.5, 1.0, -2.0])
    assert j.candidates == 0 and j.findings == ()


# ---- nondeterminism -----------------------------------------------------------------------------

def test_nondeterminism_undeclared_is_a_finding(runner):
    j = run_judge(runner, "broken_ops:noisy_sin", [0.3, 1.0, -2.0])
    assert dict(j.dismissed).get("nondeterminism", 0) >= 1
    (finding,) = j.findings
    assert finding.candidate.verdict is Verdict.NONDETERMINISTIC
    nd = next(o for o in finding.filters if o.filter == "nondeterminism")
    assert nd.dismissed and "NOT declared random" in nd.reason


def test_nondeterminism_declared_random_is_not_a_finding(runner):
    j = run_judge(runner, "broken_ops:noisy_sin", [0.3, 1.0, -2.0], random=True)
    assert dict(j.dismissed).get("nondeterminism", 0) >= 1
    assert j.findings == ()


def test_nondeterminism_deterministic_op_rerun_is_identical(runner):
    j = run_judge(runner, "broken_ops:tanh_fwd", [0.5, 1.0])
    nd = outcome_of(j, "nondeterminism")
    assert nd is not None and not nd.dismissed and "bitwise identical" in nd.reason


# ---- precision ----------------------------------------------------------------------------------

def test_float32_output_rounding_is_below_the_roundoff_floor(runner):
    # tanh'(9) = 1 - tanh(9)^2 ~ 6e-8 cannot be better than the float32 rounding of tanh(9)
    # itself: the error is under the comparator's roundoff floor, so it is not even a candidate
    j = run_judge(runner, "helper_ops:tanh_from_output", [9.0], "float32")
    assert j.candidates == 0 and j.findings == ()


def test_precision_dismisses_float32_rounding(runner):
    j = run_judge(runner, "helper_ops:sin_f32_cancel", [2e4], "float32")
    assert j.candidates == 1
    assert j.dismissed == (("precision", 1),)
    assert j.findings == ()


def test_precision_keeps_float32_only_bug(runner):
    j = run_judge(runner, "helper_ops:tanh_f32_wrong", [0.3, 1.0], "float32")
    (finding,) = j.findings
    assert finding.candidate.verdict is Verdict.DERIVATIVE_MISMATCH
    p = outcome_of(j, "precision")
    assert p is not None and not p.dismissed and "float32-only" in p.reason


def test_precision_control_float64_is_right(runner):
    assert run_judge(runner, "helper_ops:tanh_f32_wrong", [0.3, 1.0], "float64").candidates == 0


def test_precision_not_applied_without_float64(runner):
    j = run_judge(runner, "helper_ops:sin_f32_cancel", [2e4], "float32", dtypes=["float32"])
    assert j.candidates == 1 and j.dismissed == () and len(j.findings) == 1
    assert outcome_of(j, "precision") is None


# ---- finite-difference reliability (constructed execution) --------------------------------------

def _fd_case(gap: float, err: float):
    trial = make_trial("sin", [0.5])
    results = (
        ScenarioResult("direct", Outcome.OK, outputs=(np.array([math.sin(0.5)]),)),
        ScenarioResult("rev", Outcome.OK, value=1.0 + gap, scale=1.0),
        ScenarioResult("fd", Outcome.OK, value=1.0, scale=1.0, error_estimate=err),
    )
    tol = Tolerance(1e-300, 1e-7)
    d = Disagreement(Aspect.DERIVATIVE, ("rev", "fd"), 1, "float64", tol, actual=1.0 + gap, expected=1.0,
                     max_abs=gap, max_rel=gap)
    cand = Candidate(Verdict.DERIVATIVE_MISMATCH, ("rev",), 1, (d,))
    return Execution(trial, results), cand


@pytest.mark.parametrize("gap, err, dismissed", [
    (1e-6, 1e-6, True),
    (1.9e-6, 1e-6, True),
    (2e-6, 1e-6, True),
    (2.5e-6, 1e-6, False),
    (1e-2, 1e-6, False),
    (1e-6, math.inf, True),
])
def test_fd_reliability(runner, gap, err, dismissed):
    execution, cand = _fd_case(gap, err)
    o = filters.fd_reliability(filters.FilterContext(execution, make_spec("sin"), runner), cand)
    assert o is not None and o.filter == "fd_reliability" and o.dismissed is dismissed
    assert ("within" in o.reason) is dismissed


def test_fd_reliability_ignores_ad_only_disagreements(runner):
    execution, _ = _fd_case(1e-6, 1e-6)
    d = Disagreement(Aspect.DERIVATIVE, ("fwd", "rev"), 1, "float64", Tolerance(0, 1e-7), max_abs=1e-6)
    cand = Candidate(Verdict.DERIVATIVE_MISMATCH, ("fwd",), 1, (d,))
    assert filters.fd_reliability(filters.FilterContext(execution, make_spec("sin"), runner), cand) is None


# ---- non-finite ---------------------------------------------------------------------------------

def test_nonfinite_output_is_dismissed(runner):
    # (1e200)^2 overflows to inf: the derivative there has no agreed value
    j = run_judge(runner, "helper_ops:square_bad_vjp", [1e200, 1.0])
    assert j.candidates == 1
    assert j.dismissed == (("nonfinite", 1),)
    assert j.findings == ()


def test_nonfinite_finite_output_is_kept(runner):
    j = run_judge(runner, "helper_ops:square_bad_vjp", [0.5, 1.0])
    (finding,) = j.findings
    assert finding.candidate.scenarios == ("rev",)
    nf = outcome_of(j, "nonfinite")
    assert nf is not None and not nf.dismissed and "finite" in nf.reason


def test_a_nan_projection_beside_a_reference_beyond_float32_is_overflow(runner):
    # float32 log at a subnormal input: 1/x is 1e44, beyond float32; the projection's terms overflow
    # and the sum is NaN while the 50-digit reference is finite in float64: overflow, not a bug
    trial = make_trial("log", [1e-45, 1.0], dtype="float32")
    results = (ScenarioResult("direct", Outcome.OK, outputs=(np.array([-103.3, 0.0], dtype=np.float32),)),
               ScenarioResult("rev", Outcome.OK, math.nan, math.nan), ScenarioResult("mp", Outcome.OK, 9.8e44, 9.8e44, 0.0))
    d = Disagreement(Aspect.DERIVATIVE, ("rev", "mp"), 1, "float32", Tolerance(1e-35, 2e-3), actual=math.nan,
                     expected=9.8e44, max_abs=math.inf, max_rel=math.inf)
    cand = Candidate(Verdict.NONFINITE_DERIVATIVE, ("rev",), 1, (d,))
    o = filters.nonfinite(filters.FilterContext(Execution(trial, results), make_spec("log"), runner), cand)
    assert o.dismissed and "overflow" in o.reason
    small = replace(d, expected=2.5, max_abs=math.inf)  # the same NaN beside a modest reference is a finding
    results = results[:2] + (ScenarioResult("mp", Outcome.OK, 2.5, 2.5, 0.0),)
    o = filters.nonfinite(filters.FilterContext(Execution(trial, results), make_spec("log"), runner), replace(cand, disagreements=(small,)))
    assert not o.dismissed


def test_a_subnormal_input_is_not_judged_in_one_library_either(runner):
    # a tangent or a difference step at 5e-324 has one significant bit (the rule --cross applies)
    j = run_judge(runner, "helper_ops:square_bad_vjp", [5e-324, 1.0])
    assert j.candidates == 1 and j.findings == () and j.dismissed == (("subnormal", 1),)
    assert run_judge(runner, "helper_ops:square_bad_vjp", [1e-300, 1.0]).findings  # normal, if tiny: judged


def test_differences_across_an_output_shape_change_are_no_reference(runner):
    # unique([1, 1]) has one element; one step away it has two: that point is not differentiable
    # by differences (the size-1 base direction would even broadcast against the new output)
    assert run_judge(runner, "helper_ops:unique_values", [1.0, 1.0]).findings == ()
    ex = runner.run(make_trial("helper_ops:unique_values", [1.0, 1.0]), make_spec("helper_ops:unique_values"), ALL)
    assert math.isnan(ex.get("fd").value) and math.isinf(ex.get("fd").error_estimate)
    assert not math.isnan(runner.run(make_trial("helper_ops:unique_values", [1.0, 2.0]),
                                     make_spec("helper_ops:unique_values"), ALL).get("fd").value)


def test_a_gradient_of_the_wrong_shape_is_its_own_finding(runner):
    from nablafuzz.core.model import Verdict
    j = run_judge(runner, "helper_ops:sin_column_vjp", [0.5, 1.0, -2.0])
    (finding,) = j.findings
    assert finding.candidate.verdict is Verdict.WRONG_SHAPE and finding.candidate.scenarios == ("rev",)
    assert "(3, 1) and (3,)" in finding.message
    assert run_judge(runner, "sin", [0.5, 1.0, -2.0]).findings == ()  # the right shape: nothing


# ---- known issues -------------------------------------------------------------------------------

URL = "https://github.com/example/lib/issues/4242"


@pytest.mark.parametrize("issue, dismissed", [
    ({"reason": "JVP of tanh doubled", "url": URL, "scenarios": ["fwd"]}, True),
    ({"reason": "JVP of tanh doubled", "url": URL, "scenarios": ["fwd"], "verdict": "derivative_mismatch"}, True),
    ({"reason": "any tanh problem", "url": URL}, True),
    ({"reason": "VJP only", "url": URL, "scenarios": ["rev"]}, False),
    ({"reason": "crashes only", "url": URL, "scenarios": ["fwd"], "verdict": "crash"}, False),
], ids=["fwd", "fwd+verdict", "unscoped", "other-scenario", "other-verdict"])
def test_known_issue(runner, issue, dismissed):
    j = run_judge(runner, "broken_ops:tanh_fwd", [0.5, 1.0], known_issues=[issue])
    assert j.candidates == 1
    if dismissed:
        assert j.dismissed == (("known_issue", 1),) and j.findings == ()
        outcome = filters.known_issue(filters.FilterContext(None, make_spec("x", known_issues=[issue]), None),
                                      Candidate(Verdict.DERIVATIVE_MISMATCH, ("fwd",), 1))
        assert outcome.dismissed and URL in outcome.reason and issue["reason"] in outcome.reason
    else:
        (finding,) = j.findings
        assert finding.candidate.scenarios == ("fwd",)
        assert all(o.filter != "known_issue" for o in finding.filters)


def test_a_rank_deficient_row_applies_only_at_a_rank_deficient_matrix():
    issue = {"reason": "not differentiable at singular matrices", "url": URL, "when": "rank_deficient"}
    spec = make_spec("x", known_issues=[issue])
    cand = Candidate(Verdict.NONFINITE_DERIVATIVE, ("rev",), 1)

    def outcome(rows):
        trial = make_trial("x", rows)
        return filters.known_issue(filters.FilterContext(Execution(trial, ()), spec, None), cand)
    assert outcome([[1.0, 2.0], [2.0, 4.0]]).dismissed  # rank 1
    assert outcome([[0.0, 0.0], [0.0, 0.0]]).dismissed
    assert outcome([[1.0, 2.0], [3.0, 4.0]]) is None  # full rank: judged
    assert outcome([1.0, 2.0]) is None  # no matrix


def test_filter_chain_stops_at_first_dismissal(runner):
    j = run_judge(runner, "broken_ops:tanh_fwd", [0.5, 1.0],
                  known_issues=[{"reason": "r", "url": URL, "scenarios": ["fwd"]}])
    assert j.dismissed == (("known_issue", 1),)
    spec = make_spec("broken_ops:tanh_fwd", known_issues=[{"reason": "r", "url": URL}])
    execution = runner.run(make_trial("broken_ops:tanh_fwd", [0.5, 1.0]), spec, ALL)
    (cand,) = compare(execution, spec).candidates
    outcomes = filters.run_filters(filters.FilterContext(execution, spec, runner), cand)
    assert [o.filter for o in outcomes] == ["known_issue"]


# ---- step scale ---------------------------------------------------------------------------------

def test_step_scale_dismisses_a_staircase_seen_through_a_large_step(runner):
    # a fine staircase usually fails Richardson's convergence check; here the reference is
    # taken as converged at slope 1 (as it is for regular stairs) and AD says 0, as is right
    spec = make_spec("helper_ops:staircase")
    trial = make_trial("helper_ops:staircase", [0.31234, 0.77773], "float64")
    tol = Tolerance(1e-300, 1e-7)
    results = (ScenarioResult("direct", Outcome.OK, outputs=(np.array([0.3123, 0.7777]),)),
               ScenarioResult("rev", Outcome.OK, 0.0, 0.0), ScenarioResult("fd", Outcome.OK, 1.0, 1.0, 1e-9))
    d = Disagreement(Aspect.DERIVATIVE, ("rev", "fd"), 1, "float64", tol, actual=0.0, expected=1.0, max_abs=1.0)
    cand = Candidate(Verdict.DERIVATIVE_MISMATCH, ("rev",), 1, (d,))
    o = filters.step_scale(filters.FilterContext(Execution(trial, results), spec, runner), cand)
    assert o is not None and o.dismissed and "straddles" in o.reason


def test_step_scale_keeps_a_wrong_derivative_that_local_differences_confirm(runner):
    j = run_judge(runner, "broken_ops:tanh_fwd", [0.3, -0.8])
    o = outcome_of(j, "step_scale")
    assert o is not None and not o.dismissed and "confirm" in o.reason


# ---- conditioning -------------------------------------------------------------------------------

def test_conditioning_dismisses_disagreement_decided_by_input_rounding(runner):
    j = run_judge(runner, "helper_ops:sin_two_ways", [1e19, 3e18], "float32")
    assert j.candidates == 1 and j.findings == ()
    assert j.dismissed == (("conditioning", 1),)


def test_conditioning_keeps_a_well_conditioned_wrong_derivative(runner):
    j = run_judge(runner, "broken_ops:tanh_fwd", [0.3, -0.8])
    o = outcome_of(j, "conditioning")
    assert o is not None and not o.dismissed and "well conditioned" in o.reason


# ---- selection ties -----------------------------------------------------------------------------

@pytest.mark.parametrize("kinks, dismissed", [("selection", True), ("subgradient", False)])
def test_three_way_tie_of_a_selection_op(runner, kinks, dismissed):
    # median of [0, 0, 0, 2, -1]: moving one tied zero changes nothing, moving all three does;
    # seed 9's direction makes the selected element's tangent differ from the tied ones' median
    spec = make_spec("helper_ops:median", kinks=kinks)
    execution = runner.run(make_trial("helper_ops:median", [0.0, 0.0, 0.0, 2.0, -1.0], seed=9), spec, ALL)
    j = judge(execution, spec, runner)
    assert j.candidates == 1
    assert (j.dismissed == (("kink", 1),)) is dismissed and (j.findings == ()) is dismissed


# ---- the convention table -----------------------------------------------------------------------

def _with_convention(spec: ApiSpec, **row: Any) -> ApiSpec:
    from nablafuzz.specs.spec import Convention, KnownIssue, with_conventions
    issue = KnownIssue(row.get("reason", "ties split 0.5/0.5 by design"), URL, (), row.get("verdict"), True,
                       row.get("when", ""))
    (out,) = with_conventions([spec], [Convention("numpy_ref", (spec.name,), issue)])
    return out


def _judge_spec(runner: Runner, spec: ApiSpec, x: Sequence) -> Judgement:
    execution = runner.run(make_trial(spec.name, x), spec, ALL)
    return judge(execution, spec, runner)


def test_convention_at_a_kink_is_classified_as_convention(runner):
    spec = _with_convention(make_spec("helper_ops:abs_conventions"), when="kink", verdict="derivative_mismatch")
    j = _judge_spec(runner, spec, [0.0, 1.0, -2.0])
    assert j.dismissed == (("convention", 1),) and j.findings == ()
    assert len(j.conventions) == 1 and URL in j.conventions[0] and "kink at" in j.conventions[0]


def test_kink_convention_does_not_hide_a_bug_at_a_smooth_point(runner):
    spec = _with_convention(make_spec("broken_ops:tanh_fwd"), when="kink", verdict="derivative_mismatch")
    j = _judge_spec(runner, spec, [0.5, 1.0])
    (finding,) = j.findings
    assert finding.candidate.scenarios == ("fwd",) and j.conventions == ()


def test_unconditional_convention_names_itself(runner):
    spec = _with_convention(make_spec("broken_ops:tanh_fwd"), verdict="derivative_mismatch")
    j = _judge_spec(runner, spec, [0.5, 1.0])
    assert j.dismissed == (("convention", 1),) and j.findings == ()
    assert j.conventions[0].startswith("convention: ties split")


def test_convention_table_is_attached_by_api_glob(tmp_path):
    from nablafuzz.specs.spec import load_specs
    (tmp_path / "numpy_ref").mkdir()
    (tmp_path / "numpy_ref" / "s.yaml").write_text("library: numpy_ref\napis:\n- {name: maximum, args: [{name: x}]}\n"
                                                  "- {name: exp, args: [{name: x}]}\n")
    (tmp_path / "conventions.yaml").write_text(
        f"conventions:\n- {{library: numpy_ref, apis: ['max*'], when: kink, reason: tie split, url: '{URL}'}}\n")
    specs = load_specs(tmp_path, ["numpy_ref"]).by_id()
    (k,) = specs["numpy_ref:maximum"].known_issues
    assert k.convention and k.when == "kink" and k.url == URL
    assert specs["numpy_ref:exp"].known_issues == ()


@pytest.mark.parametrize("row, field", [
    ("{library: numpy_ref, apis: [exp], reason: r}", "conventions"),
    ("{library: numpy_ref, apis: [exp], reason: r, url: 'https://x', when: sometimes}", "conventions.when"),
    ("{apis: [exp], reason: r, url: 'https://x'}", "conventions"),
])
def test_malformed_convention_table_names_file_field_and_fix(tmp_path, row, field):
    from nablafuzz.core.errors import SpecError
    from nablafuzz.specs.spec import load_conventions
    path = tmp_path / "conventions.yaml"
    path.write_text(f"conventions:\n- {row}\n")
    with pytest.raises(SpecError) as err:
        load_conventions(path)
    text = str(err.value)
    assert str(path) in text and field in text


def test_a_disagreement_seen_between_more_scenarios_in_float64_is_the_same():
    # tf.raw_ops.BesselI0: float32 lined up rev.rev+fd.rev, float64 rev.rev+fd.rev+fd.fwd
    from nablafuzz.oracle.filters import same_disagreement
    f32 = Candidate(Verdict.DERIVATIVE_MISMATCH, ("rev.rev", "fd.rev"), 2)
    f64 = Candidate(Verdict.DERIVATIVE_MISMATCH, ("rev.rev", "fd.fwd", "fd.rev"), 2)
    assert same_disagreement(f64, f32)
    assert not same_disagreement(Candidate(Verdict.DERIVATIVE_MISMATCH, ("rev", "fd"), 1), f32)
    assert not same_disagreement(Candidate(Verdict.STATUS_MISMATCH, ("rev.rev",), 2), f32)


def test_the_runner_sums_the_library_time_of_scenarios_and_probes(runner):
    """Runner.library_seconds: what bench/throughput.py counts as inside the library."""
    spec, trial = make_spec("helper_ops:abs_conventions"), make_trial("helper_ops:abs_conventions", [0.5, 1.5])
    before = runner.library_seconds
    ex = runner.run(trial, spec, ALL)
    ran = runner.library_seconds - before
    assert ran == pytest.approx(sum(r.seconds for r in ex.results)) and ran > 0
    assert runner.probe(trial, spec, "direct", [(0, 0, 1e-3), (0, 1, -1e-3)]) is not None
    assert runner.library_seconds > before + ran, "a probe's evaluations are library time too"

"""Release-vs-release campaigns (`campaign --versions`): the judge on executions, the settings,
the summary and triage; the end-to-end campaign against two real JAX releases is in
test_releases_jax.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.campaign.releases import release_pair
from nablafuzz.campaign.stats import Observation, summarise
from nablafuzz.core.config import make_config
from nablafuzz.core.errors import ConfigError
from nablafuzz.core.model import ErrorInfo, Execution, Outcome, ScenarioResult, Trial, Verdict
from nablafuzz.oracle.releases import release_judge
from nablafuzz.specs.spec import load_specs

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("jax@0.10.1", "jax")


@pytest.fixture(scope="module")
def spec():
    specs = load_specs(ROOT / "api_specs", ["numpy_ref"], [])
    return next(s for s in specs.specs if s.name == "sin")


def _trial(spec) -> Trial:
    return Trial(spec.library, spec.name, 1, "float64", ())


def _ok(scenario, value=None, outputs=(), fd_error=None):
    return ScenarioResult(scenario, Outcome.OK, value, abs(value) if value is not None else None,
                          fd_error, tuple(np.asarray(o) for o in outputs))


def _ex(trial, *results):
    return Execution(trial, tuple(results), None)


def _base(direct=(1.0, 2.0), rev=0.5, fwd=0.5, fd=0.5, rr=0.25):
    return [_ok("direct", outputs=[np.array(direct)]), _ok("rev", rev), _ok("fwd", fwd),
            _ok("fd", fd, fd_error=1e-9), _ok("rev.rev", rr)]


def _judge(*args):
    return release_judge(*args).findings


def test_same_results_give_no_finding(spec):
    t = _trial(spec)
    assert _judge(spec, t, NAMES, _ex(t, *_base()), _ex(t, *_base())) == ()


def test_a_derivative_that_left_the_reference_is_new(spec):
    t = _trial(spec)
    j = release_judge(spec, t, NAMES, _ex(t, *_base()), _ex(t, *_base(rev=0.7, rr=0.9)))
    (f,) = j.findings
    fp = f.fingerprint
    assert (fp.verdict, fp.scenarios, fp.order, fp.error_type, j.kind) == (Verdict.RELEASE_CHANGE, ("rev",), 1, "value", "new")
    assert fp.releases == NAMES and fp.oracle == "release:jax@0.10.1..jax"
    assert "0.5 in jax@0.10.1" in f.message and "0.7 in jax" in f.message  # both releases' values in the evidence


def test_a_derivative_that_came_to_agree_with_the_reference_is_fixed(spec):
    t = _trial(spec)
    j = release_judge(spec, t, NAMES, _ex(t, *_base(fwd=0.1)), _ex(t, *_base()))
    assert (j.findings[0].fingerprint.scenarios, j.findings[0].fingerprint.error_type, j.kind) == (("fwd",), "value", "fixed")
    unreferenced = [r for r in _base() if r.scenario != "fd"]  # the same change where differences did not converge
    k = release_judge(spec, t, NAMES, _ex(t, *unreferenced[:2], _ok("fwd", 0.1), *unreferenced[3:]), _ex(t, *unreferenced))
    assert k.kind == "changed" and k.findings[0].fingerprint == j.findings[0].fingerprint, "one root cause, one fingerprint"


def test_a_changed_output_hides_its_derivatives_and_has_no_reference(spec):
    t = _trial(spec)
    j = release_judge(spec, t, NAMES, _ex(t, *_base()), _ex(t, *_base(direct=(1.0, 2.5), rev=0.9)))
    assert (j.findings[0].fingerprint.scenarios, j.findings[0].fingerprint.order, j.kind) == (("direct",), 0, "changed")


def test_a_mode_that_broke_or_started_working(spec):
    t = _trial(spec)
    broken = [r if r.scenario != "fwd" else ScenarioResult("fwd", Outcome.RAISED, error=ErrorInfo("TypeError", "no jvp"))
              for r in _base()]
    j = release_judge(spec, t, NAMES, _ex(t, *_base()), _ex(t, *broken))
    assert (j.findings[0].fingerprint.scenarios, j.findings[0].fingerprint.error_type, j.kind) == (("fwd",), "broke", "new")
    assert "TypeError: no jvp" in j.findings[0].message
    k = release_judge(spec, t, NAMES, _ex(t, *broken), _ex(t, *_base()))
    assert (k.findings[0].fingerprint.error_type, k.kind) == ("works", "fixed")


def test_timeouts_and_roundoff_are_not_changes(spec):
    t = _trial(spec)
    slow = [r if r.scenario != "rev" else ScenarioResult("rev", Outcome.TIMEOUT) for r in _base()]
    assert _judge(spec, t, NAMES, _ex(t, *_base()), _ex(t, *slow)) == ()
    assert _judge(spec, t, NAMES, _ex(t, *_base()), _ex(t, *_base(rev=0.5 * (1 + 1e-15)))) == ()


def test_release_pair_is_checked():
    assert release_pair(["jax@0.10.1", "jax"]) == NAMES
    for bad in (["jax@0.10.1"], ["jax@0.10.1", "torch"], ["jax", "jax"], ["jax@", "jax"]):
        with pytest.raises(ConfigError, match="versions"):
            release_pair(bad)


def test_versions_exclude_cross_and_other_libraries():
    with pytest.raises(ConfigError, match="--cross"):
        make_config("default", libraries=["jax"], versions=["jax@0.10.1", "jax"], cross=True)
    with pytest.raises(ConfigError, match="other than"):
        make_config("default", libraries=["torch"], versions=["jax@0.10.1", "jax"])


def test_summary_counts_distinct_fingerprints_per_class():
    pair = "jax@0.10.1..jax"

    def obs(i, changes):
        return Observation("jax:f", i, "", "float64", True, 1, (), tuple(k for _, k, _ in changes), (), 0.1,
                           changes=changes)
    observations = [obs(0, ((pair, "k1", "new"),)), obs(1, ((pair, "k1", "changed"),)), obs(2, ((pair, "k2", "changed"),)),
                    obs(3, ((pair, "k2", "fixed"),)), obs(4, ())]
    again = [Observation.from_json(json.loads(json.dumps(o.to_json()))) for o in observations]
    assert again == observations
    summary = summarise("c", [], again, 5, 1.0, True)
    assert summary.releases == ((pair, 1, 1, 0),)
    assert summary.to_json()["releases"] == {pair: {"new": 1, "fixed": 1, "changed": 0}}
    assert any(line.startswith(f"release changes {pair}") for line in summary.lines())


def test_a_call_one_release_signature_refuses_is_not_a_change(spec):
    t = _trial(spec)
    refused = [ScenarioResult(r.scenario, Outcome.RAISED, error=ErrorInfo(
        "TypeError", "top_k() got an unexpected keyword argument 'axis'")) for r in _base()]
    assert _judge(spec, t, NAMES, _ex(t, *refused), _ex(t, *_base())) == ()
    regression = [ScenarioResult(r.scenario, Outcome.RAISED, error=ErrorInfo("TypeError", "unsupported operand"))
                  for r in _base()]
    j = release_judge(spec, t, NAMES, _ex(t, *_base()), _ex(t, *regression))
    assert (j.findings[0].fingerprint.scenarios, j.kind) == (("direct",), "new")


def test_a_value_change_at_subnormal_inputs_is_dismissed(spec):
    from nablafuzz.core.model import InputValue, ArgKind, TensorRecord
    t = Trial(spec.library, spec.name, 1, "float64", (InputValue("x", ArgKind.TENSOR, TensorRecord("float64", (1,), (5e-324,)), True),))
    j = release_judge(spec, t, NAMES, _ex(t, *_base(direct=(1.35e-108,))), _ex(t, *_base(direct=(0.0,))))
    assert (j.findings, j.dismissed) == ((), ("subnormal",))


def test_nan_against_inf_at_a_pole_is_not_a_change(spec):
    t = _trial(spec)
    assert _judge(spec, t, NAMES, _ex(t, *_base(rr=float("nan"))), _ex(t, *_base(rr=float("-inf")))) == ()

"""The committed equivalence map against the four real libraries: its size, that its members
resolve against the committed specs, that the libraries agree where they should, and that
their documented subgradient choices are classified as conventions."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.core.config import make_config
from nablafuzz.core.model import ArgKind, InputValue, Trial
from nablafuzz.core.tensors import to_record
from nablafuzz.oracle.cross import run_class
from nablafuzz.runtime.pool import Members
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.equivalence import EQUIVALENCE_FILE, load_classes, resolve
from nablafuzz.specs.generate import generate
from nablafuzz.specs.spec import load_specs

ROOT = Path(__file__).resolve().parents[1]
LIBS = ["torch", "jax", "tensorflow", "oneflow"]
CONFIG = make_config("default", libraries=LIBS)


@pytest.fixture(scope="module")
def resolved():
    classes = load_classes(ROOT / "api_specs" / EQUIVALENCE_FILE)
    return classes, {r.cls.id: r for r in resolve(classes, load_specs(ROOT / "api_specs", LIBS), LIBS)}


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    logs = tmp_path_factory.mktemp("cross-logs")
    os.chdir(ROOT)
    m = Members(lambda lib: Runner(resolve_runtime(lib), logs / f"{lib}.log", 120.0))
    yield m
    m.close()


def test_map_has_200_classes_of_three_or_more_libraries(resolved):
    classes, by_id = resolved
    assert set(by_id) == {c.id for c in classes}, "every class resolves against the committed specs"
    assert all(len(r.libraries) >= 3 and "agree on" in r.cls.evidence for r in by_id.values())
    assert len(by_id) >= 200


def test_member_arguments_are_mapped(resolved):
    _, by_id = resolved
    s = by_id["logsumexp"].cls  # torch.logsumexp(input, dim, keepdim) positionally
    assert {m.library for m in s.members} == set(LIBS)
    tf = s.member("tensorflow")
    assert tf.api == "tf.math.reduce_logsumexp"
    assert set(dict(tf.rename).values()) >= {"axis", "keepdims"} and len(tf.keyword) == 2
    assert by_id["einsum_trace"].cls.member("jax").prefix == ("ii->",)


@pytest.mark.parametrize("name", ["erfinv", "sum", "atan2", "logsumexp", "conv2d", "einsum_batch_matmul"])
def test_libraries_agree_on_correct_ops(resolved, members, name):
    r = resolved[1][name]
    for index in range(3):
        trial = generate(r.canonical, 7, index, 12, 3, dtype="float64")
        j, executions = run_class(r, trial, members, CONFIG)
        assert not j.findings, [f.message for f in j.findings]
        votes = {(lib, q): v for lib, q, v in j.votes}
        assert all(votes.get((lib, "direct")) == "agree" for lib in executions), votes


def _at(r, **values):
    inputs = tuple(InputValue(a.name, ArgKind.TENSOR, to_record(values[a.name]), True) for a in r.canonical.args)
    return Trial("cross", r.cls.id, 3, "float64", inputs)


def test_jax_abs_at_zero_is_a_convention(resolved, members):
    r = resolved[1]["abs"]
    j, _ = run_class(r, _at(r, **{r.canonical.args[0].name: [0.0, 1.5, -0.5]}), members, CONFIG)
    assert not j.findings
    assert len(j.conventions) == 1 and "37820" in j.conventions[0]


def test_a_kink_only_the_direction_crosses_is_dismissed_as_a_kink(resolved, members):
    """min(|a00|, |a01|) at a = [[0, 0]] (matrix_norm with ord=-1): flat along each coordinate,
    not differentiable along the trial's direction, where every library's finite differences
    cross the kink; JAX's gradient (0.5, 0.5) and torch's (0, 0) are both subgradients."""
    r = resolved[1]["matrix_norm_neg_1"]
    j, executions = run_class(r, _at(r, a=np.zeros((1, 2))), members, CONFIG)
    assert not j.findings, [f.message for f in j.findings]
    assert dict(j.dismissed) == {"kink": 1}, j.dismissed


def test_tensorflow_maximum_tie_is_a_convention(resolved, members):
    r = resolved[1]["maximum"]
    x, y = (a.name for a in r.canonical.args)
    j, _ = run_class(r, _at(r, **{x: [1.0, 2.0], y: [1.0, 0.5]}), members, CONFIG)
    assert not j.findings
    assert len(j.conventions) == 1 and "math_grad.py" in j.conventions[0]


def test_a_float32_gap_another_library_shares_is_the_formulas_accuracy(tmp_path, members):
    """sinc'(1e-3) cancels cos(pi x) - sinc(x) in float32: torch is 1.4% off its float64
    value, JAX 0.8%.  Judged alone the gap is a float32-only bug; with the class's other
    libraries at hand the precision filter names it the formula's accuracy (Note [float32 formula])."""
    from nablafuzz.campaign.inlib import InLibrary
    from nablafuzz.campaign.loop import Campaign
    from nablafuzz.oracle.verdict import judge

    config = make_config("default", libraries=["torch"], apis=["torch.sinc"], store_dir=str(tmp_path / "store"),
                         scenarios=["direct", "rev", "fwd", "fd"])
    specs = load_specs(ROOT / "api_specs", LIBS)
    campaign = Campaign(config, specs, InLibrary)
    campaign.local.runners, campaign.local.n = members.runners, 0  # this thread's runners
    spec = specs.get("torch", "torch.sinc")
    trial = Trial("torch", "torch.sinc", 5, "float32",
                  (InputValue("input", ArgKind.TENSOR, to_record(np.array([1e-3], dtype=np.float32)), True),))
    runner = members["torch"]
    ex = runner.run(trial, spec, ("direct", "rev", "fwd", "fd"))
    (alone,) = judge(ex, spec, runner).findings
    (kept,) = [o for o in alone.filters if o.filter == "precision"]
    assert not kept.dismissed and "float32-only bug" in kept.reason
    j = judge(ex, spec, runner, campaign.oracle._peers(spec))
    assert j.findings == () and dict(j.dismissed) == {"precision": 1}


def test_a_float32_attribute_used_in_float64_is_graded_accuracy(resolved, members):
    """tf.nn.leaky_relu keeps alpha as a 32-bit attribute: in float64 its negative outputs are
    off by float32's rounding of 0.2 (1.5e-8 relative).  A real difference, reported, but an
    accuracy finding, never `wrong`."""
    r = resolved[1]["leaky_relu_0.2"]
    j, _ = run_class(r, _at(r, x=[0.09, -9.795618302705286, 0.04]), members, CONFIG)
    (finding,) = j.findings
    assert finding.trial.library == "tensorflow" and finding.candidate.verdict.value == "value_mismatch"
    assert finding.severity == "accuracy"

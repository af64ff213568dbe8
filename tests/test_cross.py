"""The cross-library oracle, end to end, with numpy_ref, its twin and a planted deviating
backend (tests/specs/cross/planted_backend.py): the deviant is reported, the others are not,
and a documented convention is classified as such."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.campaign import run_campaign
from nablafuzz.core.config import make_config
from nablafuzz.core.errors import SpecError
from nablafuzz.core.model import ArgKind, InputValue, Trial
from nablafuzz.core.tensors import to_record
from nablafuzz.oracle.cross import deviant, run_class
from nablafuzz.reports.store import Store
from nablafuzz.reports.triage import render_triage
from nablafuzz.runtime.pool import Members
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.equivalence import load_classes, member_trial, resolve
from nablafuzz.specs.spec import _Ctx, load_specs, parse_api

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "specs" / "cross"
LIBS = ["numpy_ref", "twin", "planted"]


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory):
    """api_specs-like folder: numpy_ref's derived specs, the twin's and the planted backend's,
    their convention table and equivalence map; the adapters named in NABLAFUZZ_ADAPTERS."""
    d = tmp_path_factory.mktemp("cross-specs")
    shutil.copytree(ROOT / "api_specs" / "numpy_ref", d / "numpy_ref")
    for lib in ("twin", "planted"):
        (d / lib).mkdir()
        shutil.copy(DATA / f"{lib}.yaml", d / lib / "specs.yaml")
    shutil.copy(DATA / "conventions.yaml", d / "conventions.yaml")
    shutil.copy(DATA / "equivalence.yaml", d / "equivalence.yaml")
    saved = {k: os.environ.get(k) for k in ("NABLAFUZZ_ADAPTERS", "PYTHONPATH")}
    os.environ["NABLAFUZZ_ADAPTERS"] = "twin=planted_backend:make_twin,planted=planted_backend:make_planted"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DATA), saved["PYTHONPATH"]]))
    os.chdir(ROOT)
    yield d
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def campaign(spec_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cross-run")
    config = make_config("default", libraries=LIBS, spec_dir=str(spec_dir), store_dir=str(tmp / "store"),
                         campaign_dir=str(tmp / "campaigns"), cross=True, trials_per_api=16, budget_s=300,
                         api_budget_s=60, seed=5)
    summary = run_campaign(config)
    reports, errors = Store(tmp / "store").load_all()
    return summary, reports, errors, tmp


@pytest.fixture(scope="module")
def members(spec_dir):
    m = Members(lambda lib: Runner(resolve_runtime(lib, [str(DATA)]), spec_dir / f"{lib}.log", 30.0))
    yield m
    m.close()


def _resolved(spec_dir, name):
    classes = load_classes(spec_dir / "equivalence.yaml")
    return next(r for r in resolve(classes, load_specs(spec_dir, LIBS), LIBS) if r.cls.id == name)


def test_only_the_planted_library_is_reported(campaign):
    summary, reports, errors, _ = campaign
    assert summary.complete and not errors
    assert summary.apis == summary.apis_valid == 5
    found = {(r.fingerprint.library, r.fingerprint.api, r.fingerprint.verdict.value, r.fingerprint.scenarios)
             for r in reports}
    assert found == {("planted", "tanh", "derivative_mismatch", ("fwd", "rev")),
                     ("planted", "exp", "value_mismatch", ("direct",))}
    assert all(r.fingerprint.oracle == f"cross:{r.fingerprint.api}" for r in reports)
    tanh = next(r for r in reports if r.fingerprint.api == "tanh")
    assert tanh.minimised_size == 1 <= tanh.original_size, "a cross finding is minimised over all members"


def test_evidence_names_the_agreeing_libraries_and_the_reference(campaign):
    _, reports, _, _ = campaign
    tanh = next(r for r in reports if r.fingerprint.api == "tanh")
    d = tanh.evidence.disagreements[0]
    assert d.scenarios[1] == "others" and abs(d.actual / d.expected - 1.05) < 1e-9
    assert "numpy_ref" in d.detail and "twin" in d.detail and "finite differences" in d.detail
    exp = next(r for r in reports if r.fingerprint.api == "exp")
    assert exp.evidence.expected and exp.evidence.disagreements[0].max_rel > 5e-7


def test_votes_count_agreement_per_library(campaign):
    summary, _, _, _ = campaign
    votes = dict(summary.votes)
    assert votes["planted deviate"] > 0
    assert "numpy_ref deviate" not in votes and "twin deviate" not in votes
    assert votes["twin agree"] >= votes["planted agree"]


def test_triage_has_a_cross_library_section(campaign):
    _, _, _, tmp = campaign
    md = render_triage(tmp / "store")
    section = md.split("## Cross-library agreement")[1]
    row = next(line for line in section.splitlines() if line.startswith("| `tanh`"))
    assert "planted" in row and "numpy_ref" in row


def test_replay_reproduces_a_cross_report(campaign, spec_dir):
    _, reports, _, tmp = campaign
    tanh = next(r for r in reports if r.fingerprint.api == "tanh")
    path = next((tmp / "store").rglob(f"{tanh.key}.json"))
    run = subprocess.run([sys.executable, "-m", "nablafuzz", "replay", str(path), "--spec-dir", str(spec_dir)],
                         capture_output=True, text=True, cwd=ROOT, env=os.environ)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "reproduced" in run.stdout


def test_documented_subgradient_at_a_kink_is_a_convention(spec_dir, members):
    r = _resolved(spec_dir, "abs")
    x = InputValue("x", ArgKind.TENSOR, to_record([0.0, 1.5, -2.0]), True)
    trial = Trial("cross", "abs", 11, "float64", (x,))
    j, _ = run_class(r, trial, members, make_config("default", libraries=LIBS))
    assert not j.findings
    assert len(j.conventions) == 1 and "planted backend's |x|" in j.conventions[0]
    assert dict(j.dismissed) == {"convention": 1}


def test_the_same_kink_without_a_convention_row_is_only_a_kink(spec_dir, members, tmp_path):
    shutil.copytree(spec_dir, tmp_path / "specs")
    (tmp_path / "specs" / "conventions.yaml").write_text("conventions: []\n")
    r = _resolved(tmp_path / "specs", "abs")
    x = InputValue("x", ArgKind.TENSOR, to_record([0.0, 1.5, -2.0]), True)
    j, _ = run_class(r, Trial("cross", "abs", 11, "float64", (x,)), members, make_config("default", libraries=LIBS))
    assert not j.findings and not j.conventions and dict(j.dismissed) == {"kink": 1}


def test_member_trial_renames_arguments(spec_dir):
    r = _resolved(spec_dir, "sum")
    trial = Trial("cross", "sum", 1, "float64", (InputValue("x", ArgKind.TENSOR, to_record([[1.0, 2.0]]), True),
                                                  InputValue("axis", ArgKind.AXIS, 1, keyword=True),
                                                  InputValue("keepdims", ArgKind.BOOL, True, keyword=True)))
    t = member_trial(r, "planted", trial)
    assert (t.api, [i.name for i in t.inputs]) == ("reduce_sum", ["x", "dim", "keepdim"])
    assert member_trial(r, "twin", trial).inputs == trial.inputs


@pytest.mark.parametrize("values, expected", [
    ({"a": 1.0, "b": 1.0, "c": 1.0}, (None, True)),
    ({"a": 1.0, "b": 1.0, "c": 2.0}, ("c", False)),
    ({"a": 1.0, "b": 2.0}, (None, False)),
    ({"a": 1.0, "b": 2.0, "c": 3.0}, (None, False)),
    ({"a": 1.0, "b": 1.0, "c": 2.0, "d": 2.0}, (None, False)),
    ({"a": 5.0, "b": 1.0, "c": 1.0, "d": 1.0}, ("a", False)),
])
def test_deviant_needs_the_others_to_agree(values, expected):
    assert deviant(values, lambda x, y: x == y) == expected


@pytest.mark.parametrize("text, field", [
    ("classes:\n- id: a\n  reference: x:y\n  args: [x]\n  members: [{library: torch}]\n", "api"),
    ("classes:\n- id: a\n  reference: t:f\n  args: [x]\n  members: [{library: t, api: f, rename: [1]}]\n", "members.rename"),
    ("classes:\n- id: a\n  reference: t:g\n  args: [x]\n  members: [{library: t, api: f}]\n", "reference"),
    ("classes:\n- id: a\n  reference: t:f\n  args: [x]\n  colour: red\n  members: [{library: t, api: f}]\n", "classes.a"),
    ("classes: {}\n", "classes"),
])
def test_malformed_map_names_file_field_and_fix(tmp_path, text, field):
    path = tmp_path / "equivalence.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_classes(path)
    assert err.value.field == field and str(path) in str(err.value) and "fix:" in str(err.value)


def test_repro_script_checks_against_the_other_libraries_values(campaign, tmp_path):
    """The planted exp report, rendered for numpy_ref (one of the libraries that agreed): the
    script carries the others' outputs as literals and compares the call with them on its own
    (here they agree; the planted library has no script renderer)."""
    from dataclasses import replace

    from nablafuzz.reports.repro import render
    _, reports, _, _ = campaign
    exp = next(r for r in reports if r.fingerprint.api == "exp")
    swapped = replace(exp, fingerprint=replace(exp.fingerprint, library="numpy_ref"),
                      trial=replace(exp.trial, library="numpy_ref"))
    script = render(swapped, {"numpy_ref:exp"})
    assert "EXPECTED = {'others': (None, None, [np.array(" in script
    path = tmp_path / "repro.py"
    path.write_text(script)
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.returncode == 0 and "AGREEMENT: direct outputs vs others outputs" in run.stdout, run.stdout + run.stderr
    d = exp.evidence.disagreements[0]
    assert d.scenarios == ("direct", "others") and abs(d.actual / d.expected - 1 - 1e-6) < 1e-9


def test_repro_permutes_axes_as_the_trial_layout_says():
    """A member with another layout (TensorFlow's NHWC conv) gets its transposes in the script."""
    from nablafuzz.reports.repro import RENDERERS, _composed_bind
    x = InputValue("input", ArgKind.TENSOR, to_record([[[[1.0]]]]), True)
    w = InputValue("filters", ArgKind.TENSOR, to_record([[[[2.0]]]]), True)
    trial = Trial("tensorflow", "tf.nn.conv2d", 1, "float64", (x, w),
                  layout=(("", (0, 3, 1, 2)), ("filters", (2, 3, 1, 0)), ("input", (0, 2, 3, 1))))
    text = _composed_bind(trial, "tf.nn.conv2d", RENDERERS["tensorflow"].permute)
    for piece in ("tf.transpose(tf.nn.conv2d(", "tf.transpose(d[0], [0, 2, 3, 1])", "tf.transpose(d[1], [2, 3, 1, 0])",
                  ", [0, 3, 1, 2])"):
        assert piece in text, text
    assert text.count("tf.transpose(") == 3


def test_values_near_the_subnormal_range_become_zero_in_cross_trials():
    """Libraries that flush subnormals and libraries that do not compute different functions
    there; an exact zero is a point all must get right."""
    from nablafuzz.oracle.cross import flush_subnormal
    x = InputValue("x", ArgKind.TENSOR, to_record(np.array([5e-324, -2.2250738585072014e-308, 1e-300, 0.5])), True)
    assert str(flush_subnormal(Trial("cross", "abs", 1, "float64", (
        InputValue("x", ArgKind.TENSOR, to_record(np.array([-0.0])), True),))).inputs[0].value.values[0]) == "0.0"
    t = flush_subnormal(Trial("cross", "abs", 1, "float64", (x, InputValue("k", ArgKind.INT, 3))))
    values = t.inputs[0].value.values
    assert values[:2] == (0.0, 0.0) and str(values[1]) == "0.0" and values[2:] == (1e-300, 0.5)
    assert t.inputs[1].value == 3


def test_a_positive_argument_keeps_its_tiny_values_and_is_then_not_judged():
    """gammainc(a, x) with a = 2e-308: flushed to 0 it would leave the class's domain (a > 0),
    where torch answers the limit 1 and JAX and TensorFlow NaN; kept, the subnormal filter
    leaves the trial unjudged."""
    from nablafuzz.oracle.cross import flush_subnormal
    from nablafuzz.oracle.filters import subnormal_inputs
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "args": [{"name": "a", "domain": "positive"},
                                                                    {"name": "x", "domain": "real"}]})
    tiny = InputValue("a", ArgKind.TENSOR, to_record(np.array([2.2e-308, 0.5])), True)
    x = InputValue("x", ArgKind.TENSOR, to_record(np.array([2.2e-308, 0.3])), True)
    t = flush_subnormal(Trial("cross", "gammainc", 1, "float64", (tiny, x)), spec)
    assert t.inputs[0].value.values == (2.2e-308, 0.5) and t.inputs[1].value.values == (0.0, 0.3)
    assert subnormal_inputs(t).dismissed


def test_general_eigenvalues_are_never_a_class_their_order_is_unspecified():
    from nablafuzz.derive.crossderive import SYNONYMS
    classes = load_classes(ROOT / "api_specs" / "equivalence.yaml")
    assert SYNONYMS["eigvals"] == "" and not any(c.id == "eigvals" for c in classes)
    # nor eigh: its eigenvectors' signs are arbitrary (eigvalsh compares the eigenvalues)
    assert SYNONYMS["eigh"] == "" and not any(c.id == "eigh" for c in classes) and any(c.id == "eigvalsh" for c in classes)

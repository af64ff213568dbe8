"""Fingerprint keys, the report store (merge, atomic writes, corruption), replay and minimisation."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from nablafuzz import cli
from nablafuzz.campaign.minimize import minimise
from nablafuzz.core import fingerprint
from nablafuzz.core.errors import ReportError
from nablafuzz.core.model import (ArgKind, Candidate, FilterOutcome, Finding, Fingerprint, InputValue, ReportStatus,
                                  Trial, Verdict)
from nablafuzz.core.quantities import ALL
from nablafuzz.core.tensors import to_record, trial_size
from nablafuzz.oracle.verdict import judge
from nablafuzz.reports.store import Store, encode_report, read_report, remove_leftovers, report_path
from nablafuzz.runtime.process import Runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.spec import _Ctx, parse_api

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "tests" / "specs"
FP = Fingerprint("numpy_ref", "broken_ops:tanh_fwd", Verdict.DERIVATIVE_MISMATCH, ("fwd",), 1)


# ---- fingerprint keys ---------------------------------------------------------------------------

def test_fingerprint_key_is_pinned_and_stable():
    # Regression pin, computed once: report file names are these keys, so a change would orphan
    # every stored report.  Re-pinned once, deliberately, when the canonical form began to omit
    # fields at their default (before any report was published).
    assert fingerprint.key(FP) == "6c9c6a8f859e502e"
    assert fingerprint.key(dataclasses.replace(FP)) == fingerprint.key(FP)
    assert len(fingerprint.key(FP)) == fingerprint.KEY_LENGTH


@pytest.mark.parametrize("change", [
    {"library": "torch"},
    {"api": "broken_ops:tanh_rev"},
    {"verdict": Verdict.VALUE_MISMATCH},
    {"scenarios": ("rev",)},
    {"scenarios": ("fwd", "rev")},
    {"order": 2},
    {"error_type": "RuntimeError"},
])
def test_fingerprint_key_changes_with_each_field(change):
    assert fingerprint.key(dataclasses.replace(FP, **change)) != fingerprint.key(FP)


# ---- store: create and merge --------------------------------------------------------------------

def _trial(values, seed=1) -> Trial:
    x = InputValue("x", ArgKind.TENSOR, to_record(np.array(values, dtype=np.float64)), True)
    return Trial("numpy_ref", FP.api, seed, "float64", (x,))


def _finding(trial: Trial, message: str = "fwd vs fd: wrong") -> Finding:
    cand = Candidate(FP.verdict, FP.scenarios, FP.order, message=message)
    return Finding(trial, cand, (FilterOutcome("kink", False, "smooth"),), "wrong", message)


BIG = _trial(np.arange(16.0).reshape(4, 4) + 0.5, seed=1)
MEDIUM = _trial([[0.5, 1.5], [2.5, 3.5]], seed=2)
SMALL = _trial([0.5], seed=3)


def test_record_creates_then_merges(tmp_path):
    store = Store(tmp_path / "reports")
    report, created = store.record(_finding(BIG), BIG, ["numpy 2.0", "python 3.11"], "c1")
    path = report_path(store.root, FP.library, FP.api, fingerprint.key(FP))
    assert created and path.exists() and store.paths() == [path]
    assert report.key == fingerprint.key(FP) and report.status is ReportStatus.NEW and report.occurrences == 1
    assert read_report(path) == report

    report, created = store.record(_finding(MEDIUM), MEDIUM, ["numpy 2.1"], "c1")
    assert not created and report.occurrences == 2
    assert report.versions_seen == ("numpy 2.0", "numpy 2.1", "python 3.11")
    assert report.status is ReportStatus.NEW and report.campaigns == ("c1",)
    assert read_report(path) == report and store.paths() == [path]

    report, _ = store.record(_finding(SMALL), SMALL, ["numpy 2.1"], "c2")
    assert report.occurrences == 3 and report.campaigns == ("c1", "c2") and report.status is ReportStatus.OPEN


def test_same_trial_is_never_counted_twice(tmp_path):
    store = Store(tmp_path)
    store.record(_finding(BIG), BIG, ["numpy 2.0"], "c1")
    path = store.paths()[0]
    before = path.read_text()
    for campaign in ("c1", "c2"):  # a resumed campaign, or the next one, re-running the same trial
        report, created = store.record(_finding(BIG), BIG, ["numpy 2.0"], campaign)
        assert not created and report.occurrences == 1
    assert path.read_text() == before


@pytest.mark.parametrize("sequence, want_size, want_trial", [
    ([BIG, SMALL], 1, SMALL),
    ([SMALL, BIG], 1, SMALL),
    ([BIG, MEDIUM, SMALL], 1, SMALL),
    ([MEDIUM, BIG], 4, MEDIUM),
], ids=["big-then-small", "small-then-big", "shrinking", "medium-then-big"])
def test_smaller_representative_replaces_larger(tmp_path, sequence, want_size, want_trial):
    store = Store(tmp_path)
    for t in sequence:
        report, _ = store.record(_finding(t, message=f"seen on seed {t.seed}"), t, ["numpy 2.0"], "c1")
    assert report.minimised_size == want_size and report.trial == want_trial
    assert report.evidence.message == f"seen on seed {want_trial.seed}"
    assert read_report(store.paths()[0]) == report
    assert report.occurrences == len(sequence)


def test_minimised_representative_is_stored_with_original_size(tmp_path):
    report, _ = Store(tmp_path).record(_finding(BIG), SMALL, ["numpy 2.0"], "c1")
    assert report.trial == SMALL and report.original_size == 16 and report.minimised_size == 1


# ---- store: atomic writes and corruption --------------------------------------------------------

@pytest.mark.parametrize("fail_at", ["replace", "fsync"])
def test_failed_write_leaves_previous_report_intact(tmp_path, monkeypatch, fail_at):
    store = Store(tmp_path)
    store.record(_finding(BIG), BIG, ["numpy 2.0"], "c1")
    (path,) = store.paths()
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(os, fail_at, boom)
    with pytest.raises(OSError, match="simulated"):
        store.record(_finding(SMALL), SMALL, ["numpy 2.1"], "c1")
    monkeypatch.undo()

    assert path.read_text() == before
    assert read_report(path).occurrences == 1
    assert store.paths() == [path]
    assert sorted(tmp_path.rglob("*.json")) == [path]  # no stray complete report anywhere
    reports, errors = store.load_all()
    assert len(reports) == 1 and errors == []


CORRUPTIONS = {
    "garbage": "{this is not json",
    "empty": "",
    "truncated": None,  # the first half of a real report
    "wrong-schema": json.dumps({"schema": 999, "report": {}}),
    "not-an-object": json.dumps([1, 2, 3]),
    "bad-field": None,  # a real report with occurrences spelled as text
}


def _corrupt_text(kind: str, good: str) -> str:
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "bad-field":
        data = json.loads(good)
        data["report"]["fingerprint"]["verdict"] = "not_a_verdict"
        return json.dumps(data)
    return CORRUPTIONS[kind]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_report_error_names_file_and_fix(tmp_path, kind):
    store = Store(tmp_path)
    report, _ = store.record(_finding(BIG), BIG, ["numpy 2.0"], "c1")
    (path,) = store.paths()
    path.write_text(_corrupt_text(kind, encode_report(report)))
    with pytest.raises(ReportError) as info:
        read_report(path)
    msg = str(info.value)
    assert str(path) in msg and "fix" in msg
    reports, errors = store.load_all()
    assert reports == [] and len(errors) == 1 and str(path) in str(errors[0])


def test_get_moves_corrupt_report_aside(tmp_path):
    store = Store(tmp_path)
    store.record(_finding(BIG), BIG, ["numpy 2.0"], "c1")
    (path,) = store.paths()
    path.write_text("{garbage")
    assert store.get(FP.library, FP.api, fingerprint.key(FP)) is None
    assert not path.exists()
    (aside,) = path.parent.glob(f"{path.name}.corrupt-*")
    assert aside.read_text() == "{garbage"  # kept for inspection, not deleted
    report, created = store.record(_finding(SMALL), SMALL, ["numpy 2.0"], "c2")
    assert created and report.occurrences == 1 and store.paths() == [path]


def test_repeated_corruption_keeps_every_corrupt_copy(tmp_path):
    store = Store(tmp_path)
    key = fingerprint.key(FP)
    for n in range(2):
        store.record(_finding(BIG), BIG, ["numpy 2.0"], f"c{n}")
        (path,) = store.paths()
        path.write_text(f"{{garbage {n}")
        assert store.get(FP.library, FP.api, key) is None
    asides = sorted(p.read_text() for p in path.parent.glob(f"{path.name}.corrupt-*"))
    assert asides == ["{garbage 0", "{garbage 1"]


# ---- replay -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    rt = Runtime("numpy_ref", sys.executable, python_path=(str(SPECS),))
    r = Runner(rt, tmp_path_factory.mktemp("replay") / "w.log", 30.0)
    yield r
    r.close()


def _spec(api: str):
    return parse_api(_Ctx("test"), "numpy_ref", {"name": api, "args": [{"name": "x"}]})


@pytest.fixture(scope="module")
def tanh_fwd_report(runner, tmp_path_factory):
    """A real report of broken_ops:tanh_fwd, found by running and judging a trial."""
    spec = _spec("broken_ops:tanh_fwd")
    trial = Trial("numpy_ref", spec.name, 11, "float64",
                  (InputValue("x", ArgKind.TENSOR, to_record(np.array([0.5, -1.0, 2.0])), True),))
    (finding,) = judge(runner.run(trial, spec, ALL), spec, runner).findings
    assert finding.fingerprint == FP
    store = Store(tmp_path_factory.mktemp("store"))
    report, _ = store.record(finding, trial, sorted(f"{k} {v}" for k, v in runner.versions.items()), "c1")
    return report


def _save(tmp_path: Path, report) -> Path:
    store = Store(tmp_path / "reports")
    store.save(report)
    fp = report.fingerprint
    return report_path(store.root, fp.library, fp.api, report.key)


def _replay(path: Path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code = cli.main(["replay", str(path), "--specs", "tests/specs/broken.yaml"])
    out, err = capsys.readouterr()
    return code, out + err


def test_replay_reproduced(tmp_path, tanh_fwd_report, monkeypatch, capsys):
    code, text = _replay(_save(tmp_path, tanh_fwd_report), monkeypatch, capsys)
    assert code == 0, text
    assert "reproduced: numpy_ref:broken_ops:tanh_fwd derivative_mismatch" in text


def test_replay_not_reproduced(tmp_path, tanh_fwd_report, monkeypatch, capsys):
    fp = dataclasses.replace(tanh_fwd_report.fingerprint, api="tanh")
    fixed = dataclasses.replace(tanh_fwd_report, fingerprint=fp, key=fingerprint.key(fp),
                                trial=dataclasses.replace(tanh_fwd_report.trial, api="tanh"))
    code, text = _replay(_save(tmp_path, fixed), monkeypatch, capsys)
    assert code == 1, text
    assert "not reproduced" in text


@pytest.mark.parametrize("fp_api, trial_api", [
    ("os.system", "os.system"),
    ("os:system", "os:system"),
    ("broken_ops:tanh_fwd", "os:system"),  # a declared fingerprint must not smuggle another trial API
], ids=["dotted", "colon", "mismatched-trial"])
def test_replay_refuses_undeclared_api(tmp_path, tanh_fwd_report, monkeypatch, capsys, fp_api, trial_api):
    fp = dataclasses.replace(tanh_fwd_report.fingerprint, api=fp_api)
    evil = dataclasses.replace(tanh_fwd_report, fingerprint=fp, key=fingerprint.key(fp),
                               trial=dataclasses.replace(tanh_fwd_report.trial, api=trial_api))
    code, text = _replay(_save(tmp_path, evil), monkeypatch, capsys)
    assert code == 2, text
    assert "no loaded spec" in text and "refus" in text


def test_replay_of_corrupt_report_is_an_error(tmp_path, monkeypatch, capsys):
    path = tmp_path / "broken.json"
    path.write_text("{nope")
    code, text = _replay(path, monkeypatch, capsys)
    assert code == 2 and str(path) in text


# ---- minimisation -------------------------------------------------------------------------------

@pytest.mark.parametrize("zero_at", [(0, 0), (1, 2), (3, 3)])
def test_minimise_cube_at_zero(runner, zero_at):
    spec = _spec("broken_ops:cube_at_zero")
    rng = np.random.default_rng(5)
    x = rng.uniform(-3, 3, (4, 4)) + 0.123456789
    x[zero_at] = 0.0
    trial = Trial("numpy_ref", spec.name, 21, "float64", (InputValue("x", ArgKind.TENSOR, to_record(x), True),))

    def fingerprints(t: Trial):
        return {f.fingerprint for f in judge(runner.run(t, spec, ALL), spec, runner).findings}

    (fp,) = fingerprints(trial)
    assert fp.verdict is Verdict.DERIVATIVE_MISMATCH
    small = minimise(trial, lambda t: fp in fingerprints(t))
    values = small.inputs[0].value.values
    assert trial_size(small) <= 2, small.inputs[0].value
    assert fp in fingerprints(small)  # still reproduces
    assert 0.0 in values
    assert all(v == float(f"{v:.3g}") for v in values), values  # simpler than the 10-digit originals


def test_minimisation_keeps_indices_in_range_and_values_in_their_domain():
    # Note [valid witness]: "reproduces" accepts anything, so only validity limits the shrinking
    from nablafuzz.core.model import ApiSpec, ArgSpec
    data = InputValue("input", ArgKind.TENSOR, to_record(np.array([0.5, 2.0, 3.0, 4.0, 5.0])), True)
    index = InputValue("index", ArgKind.TENSOR, to_record(np.array([3], dtype=np.int64)), False)
    gather = Trial("numpy_ref", "gather", 1, "float64", (data, index))
    small = minimise(gather, lambda t: True)
    assert small.inputs[0].value.shape[0] >= 4  # never shorter than index 3 needs (without the rule: 1)
    a = InputValue("a", ArgKind.TENSOR, to_record(np.array([0.37, 2.5])), True)
    spec = ApiSpec("numpy_ref", "igamma", (ArgSpec("a", ArgKind.TENSOR, domain="positive"),))
    kept = minimise(Trial("numpy_ref", "igamma", 1, "float64", (a,)), lambda t: True, spec=spec)
    assert all(v > 0 for v in kept.inputs[0].value.values)  # never simplified to a = 0
    assert 0.0 in minimise(Trial("numpy_ref", "igamma", 1, "float64", (a,)), lambda t: True).inputs[0].value.values


def test_minimisation_keeps_the_shape_relations_the_spec_declares():
    # Note [valid witness]: y must have x's shape; the "bug" needs all of x, so without the rule
    # a shrink of y alone (to an element that broadcasts) would be kept
    from nablafuzz.core.model import ApiSpec, ArgSpec
    spec = ApiSpec("numpy_ref", "mul", (ArgSpec("x", ArgKind.TENSOR), ArgSpec("y", ArgKind.TENSOR, same_shape_as="x")))
    x = InputValue("x", ArgKind.TENSOR, to_record(np.arange(12.0).reshape(3, 4) + 0.5), True)
    y = InputValue("y", ArgKind.TENSOR, to_record(np.arange(12.0).reshape(3, 4) - 0.5), True)
    needs_x = lambda t: t.inputs[0].value.shape == (3, 4)  # noqa: E731
    small = minimise(Trial("numpy_ref", "mul", 1, "float64", (x, y)), needs_x, spec=spec)
    assert small.inputs[1].value.shape == (3, 4)
    loose = minimise(Trial("numpy_ref", "mul", 1, "float64", (x, y)), needs_x)
    assert loose.inputs[1].value.shape != (3, 4)  # what the spec rules out


def test_minimisation_stays_inside_what_numpys_counterpart_accepts():
    # JAX inverts a singular matrix to infinities without a word; numpy.linalg.inv refuses it.
    # "reproduces" accepts anything, so without the counterpart the witness simplifies to [[0]]
    from nablafuzz.core.model import ApiSpec, ArgSpec
    from nablafuzz.specs import counterpart
    spec = ApiSpec("numpy_ref", "linalg.inv", (ArgSpec("a", ArgKind.TENSOR, dims=("n", "n")),))
    a = InputValue("a", ArgKind.TENSOR, to_record(np.array([[0.37, 1.2], [2.5, -0.7]])), True)
    trial = Trial("numpy_ref", "linalg.inv", 1, "float64", (a,))
    assert counterpart.judge_of(spec) is np.linalg.inv and counterpart.rejects(spec, trial) == ""
    small = minimise(trial, lambda t: True, spec=spec)
    assert small.inputs[0].value.shape == (1, 1) and counterpart.rejects(spec, small) == ""
    loose = minimise(trial, lambda t: True)
    assert loose.inputs[0].value.values == (0.0,) and "Singular matrix" in counterpart.rejects(spec, loose)


def test_the_committed_store_keeps_its_keys():
    """Every committed report reads back, and its fingerprint still hashes to the key it is filed
    under: moving code between modules changed no report's identity."""
    paths = sorted(p for p in (Path(__file__).resolve().parents[1] / "bug_reports").glob("*/*/*.json"))
    assert len(paths) >= 200
    for path in paths:
        report = read_report(path)
        assert fingerprint.key(report.fingerprint) == report.key == path.stem, path
        assert report.evidence.severity.rank >= 0  # a Severity, decoded from its stored value


def test_leftover_temporary_files_of_a_killed_write_are_removed(tmp_path):
    """write_atomic's `.<name>.<pid>.tmp` survives a kill -9 between writing and renaming; the
    next writer (holding the lock) removes it, and nothing else."""
    report = tmp_path / "torch" / "torch.exp" / "abc.json"
    report.parent.mkdir(parents=True)
    report.write_text("{}")
    left = report.parent / ".abc.json.123.tmp"
    left.write_text("half")
    (tmp_path / "_campaigns").mkdir()
    (tmp_path / "_campaigns" / ".c.json.9.tmp").write_text("half")
    assert remove_leftovers(tmp_path) == 2
    assert report.exists() and not left.exists() and not list(tmp_path.rglob("*.tmp"))

"""Learned input validity (campaign/validity.py, specs/features.py): features, labels, the
epsilon exploration, guided campaigns and resume, on numpy_ref ops with a shape rule."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.campaign import run_campaign
from nablafuzz.campaign import validity
from nablafuzz.campaign.loop import Campaign
from nablafuzz.campaign.stats import Observation
from nablafuzz.campaign.validity import CANDIDATES, EPSILON, Guide
from nablafuzz.core.config import make_config
from nablafuzz.core.errors import ConfigError
from nablafuzz.core.model import ArgKind, InputValue, Trial
from nablafuzz.core.tensors import to_record
from nablafuzz.reports.store import trial_key
from nablafuzz.reports.triage import render_triage
from nablafuzz.specs.features import BIG, features
from nablafuzz.specs.generate import generate
from nablafuzz.specs.spec import spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
MATRIX = {"name": "helper_validity_ops:sin_of_matrix", "args": [{"name": "x", "rank": [0, 3]}]}


def _tensor(name, shape, values=None):
    values = np.arange(int(np.prod(shape)), dtype=float) if values is None else np.asarray(values, float)
    return InputValue(name, ArgKind.TENSOR, to_record(values.reshape(shape)), True)


def _trial(*inputs, dtype="float64"):
    return Trial("numpy_ref", "op", 1, dtype, tuple(inputs))


# ---- features --------------------------------------------------------------------------------

def test_features_describe_shapes_their_relations_and_python_values():
    f = features(_trial(_tensor("a", (2, 3)), _tensor("b", (3, 4)), InputValue("axis", ArgKind.AXIS, 3),
                        InputValue("mode", ArgKind.CHOICE, "same")), names=("a", "b", "axis", "mode", "out"))
    assert (f["a.rank"], f["a.size"], f["a.d0"], f["a.d1"], f["a.d2"], f["a.r1"], f["a.r2"], f["a.r3"]) == (2, 6, 2, 3, -1, 3, 2, -1)
    assert (f["b.d0"], f["b.r1"]) == (3, 4)
    assert f["t0~t1.inner"] == 1.0 and f["t0~t1.same"] == 0.0 and f["t0~t1.broadcast"] == 0.0
    assert f["t0~t1.rank_diff"] == 0 and f["t0~t1.trailing"] == 0.0
    assert f["axis.value"] == 3.0 and f["axis.minus_rank"] == 1.0, "an axis beyond the first tensor's rank"
    assert f["mode.is"] == "'same'" and f["dtype"] == "float64"
    assert f["out.present"] == 0.0 and f["a.present"] == 1.0, "an argument this overload lacks"
    assert (f["a.min"], f["a.max"]) == (0.0, 5.0)
    assert (f["axis.minus_d0"], f["axis.minus_r1"]) == (1.0, 0.0), "a count against the data's dimensions"


def test_integer_tensors_say_whether_they_are_sorted_and_in_range():
    ids = InputValue("segment_ids", ArgKind.TENSOR, to_record(np.array([0, 2, 1], dtype=np.int64)), False)
    f = features(_trial(_tensor("data", (3, 4)), ids))
    assert f["segment_ids.sorted"] == 0.0 and f["segment_ids.max_minus_d0"] == -1.0 and f["segment_ids.max_minus_r1"] == -2.0
    ids = InputValue("segment_ids", ArgKind.TENSOR, to_record(np.array([0, 0, 1], dtype=np.int64)), False)
    assert features(_trial(_tensor("data", (3, 4)), ids))["segment_ids.sorted"] == 1.0
    assert "data.sorted" not in f, "float tensors are values, not ids"
    count = InputValue("num_segments", ArgKind.TENSOR, to_record(np.array(2, dtype=np.int32)), False)
    f = features(_trial(_tensor("data", (3, 4)), ids, count))
    assert f["segment_ids.max_minus_num_segments.max"] == -1.0, "ids against a count: valid when negative"


def test_broadcasting_lists_and_non_finite_values_are_features_a_classifier_takes():
    f = features(_trial(_tensor("x", (4, 1, 3), [np.inf, np.nan] + [1.0] * 10), _tensor("y", (5, 3)),
                        InputValue("shape", ArgKind.SHAPE, (2, -1)), InputValue("eps", ArgKind.FLOAT, float("-inf"))))
    assert f["t0~t1.broadcast"] == 1.0 and f["t0~t1.trailing"] == 1.0 and f["t0~t1.rank_diff"] == 1
    assert (f["x.nonfinite"], f["x.max"]) == (2, 1.0)
    assert (f["shape.len"], f["shape.v0"], f["shape.v1"], f["shape.v2"]) == (2, 2.0, -1.0, -1.0)
    assert f["eps.value"] == -BIG
    assert all(np.isfinite(v) and abs(v) <= BIG for v in f.values() if isinstance(v, float))


def test_the_label_is_the_valid_rate_s():
    """Empty trials are not steered towards: models so labelled picked them, as certain keeps."""
    from nablafuzz.campaign.validity import label
    base = dict(api="numpy_ref:op", index=0, trial="k", dtype="float64", candidates=0, dismissed=(), findings=(),
                new=(), seconds=0.1)
    assert label(Observation(valid=True, **base)) and not label(Observation(valid=False, empty=True, **base))
    assert not label(Observation(valid=False, invalid="ValueError: expected a matrix", **base))


def test_observations_keep_the_candidate_and_the_guess_through_the_log():
    o = Observation("numpy_ref:op", 3, "k", "float64", True, 0, (), (), (), 0.1, candidate=2, pick="model", guess=0.9)
    assert Observation.from_json(json.loads(json.dumps(o.to_json()))) == o
    plain = Observation("numpy_ref:op", 3, "k", "float64", True, 0, (), (), (), 0.1)
    assert "pick" not in plain.to_json() and Observation.from_json(plain.to_json()) == plain


# ---- the model and the pick ------------------------------------------------------------------

def _valid(trial: Trial) -> bool:
    shape = trial.inputs[0].value.shape
    return len(shape) == 2 and 0 not in shape


def test_a_fitted_model_picks_valid_candidates_and_explores_an_epsilon_share():
    spec = spec_from_dict("numpy_ref", MATRIX, "test")
    guide = Guide(seed=0)
    unguided = [generate(spec, 1, i) for i in range(150)]
    for t in unguided:  # labels: what the campaign's judge says, here the op's shape rule
        guide.learn(spec, t, _valid(t))
    assert guide.fitted() == 1
    picks = [guide.pick(spec, lambda c, i=i: generate(spec, 1, 1000 + i, candidate=c)) for i in range(400)]
    model = [p for p in picks if p.how == "model"]
    explore = [p for p in picks if p.how == "explore"]
    base = np.mean([_valid(t) for t in unguided])
    assert base < 0.5
    assert np.mean([_valid(p.trial) for p in model]) > 0.85, "the model's picks are valid"
    assert 0.5 * EPSILON < len(explore) / len(picks) < 2 * EPSILON
    assert len({p.candidate for p in explore}) > CANDIDATES, "exploration draws any candidate, more for a rare valid"
    again = [guide.pick(spec, lambda c, i=i: generate(spec, 1, 1000 + i, candidate=c)) for i in range(400)]
    assert [(p.candidate, p.how) for p in again] == [(p.candidate, p.how) for p in picks], "deterministic"
    for p in picks:  # candidate 0 is the unguided trial; the others regenerate from their number
        assert trial_key(p.trial) == trial_key(generate(spec, 1, 1000 + picks.index(p), candidate=p.candidate))


def test_an_api_with_one_label_gets_no_model_and_runs_its_unguided_trial():
    spec = spec_from_dict("numpy_ref", MATRIX, "test")
    guide = Guide(seed=0)
    for i in range(60):
        guide.learn(spec, generate(spec, 1, i), True)
    p = guide.pick(spec, lambda c: generate(spec, 1, 99, candidate=c))
    assert guide.fitted() == 0 and (p.candidate, p.how, p.guess) == (0, "", -1.0)


def test_an_api_whose_trials_are_mostly_valid_runs_unguided_until_its_rate_falls():
    """Note [validity where needed]: 1 invalid trial in 12 gets no model and no candidates."""
    from nablafuzz.campaign.validity import MIN_ROWS, NEED
    spec = spec_from_dict("numpy_ref", MATRIX, "test")
    guide = Guide(seed=0)
    make = lambda i: (lambda c: generate(spec, 1, i, candidate=c))  # noqa: E731
    n = 0
    for n in range(4 * MIN_ROWS):  # every 12th trial invalid: 91.7 % valid
        guide.learn(spec, make(n)(0), n % MIN_ROWS != MIN_ROWS - 1)
    picks = [guide.pick(spec, make(1000 + i)) for i in range(50)]
    assert guide.fitted() == 0 and {(p.candidate, p.how) for p in picks} == {(0, "")}
    while guide.fitted() == 0:  # the API's trials start failing: the model is fitted and steers
        n += 1
        guide.learn(spec, make(n)(0), False)
    assert n < 4 * MIN_ROWS / NEED
    assert {p.how for p in (guide.pick(spec, make(2000 + i)) for i in range(50))} <= {"model", "explore"}


def test_trials_that_kill_their_worker_are_steered_away_from_however_rare():
    """A restart costs tens of trials' time: a valid trial whose worker died is not one to
    steer towards, and an API with such trials stays guided at any valid rate."""
    from nablafuzz.campaign.validity import MIN_EACH, label
    spec = spec_from_dict("numpy_ref", MATRIX, "test")
    obs = Observation(spec.id, 0, "", "", True, 0, (), (), (), 0.0)
    assert label(obs) and not label(Observation(spec.id, 0, "", "", True, 0, (), (), (), 0.0, death="crashed"))
    guide = Guide(seed=0)
    make = lambda i: (lambda c: generate(spec, 1, i, candidate=c))  # noqa: E731
    for n in range(100):  # 3 deaths in 100 trials: 97 % valid
        died = n % 33 == 7
        guide.learn(spec, make(n)(0), not died, died=died)
    assert guide.fitted() == 1 and MIN_EACH <= 3
    assert {p.how for p in (guide.pick(spec, make(2000 + i)) for i in range(50))} <= {"model", "explore"}


def test_without_a_model_an_api_whose_trials_fail_draws_candidates_and_ends_if_none_is_ever_valid():
    from nablafuzz.campaign.validity import HOPELESS, MIN_EACH
    spec = spec_from_dict("numpy_ref", MATRIX, "test")
    guide = Guide(seed=0)
    make = lambda i: (lambda c: generate(spec, 1, i, candidate=c))  # noqa: E731
    for i in range(MIN_EACH):
        assert guide.pick(spec, make(i)).how == "", "candidate 0 until the API has failed a few times"
        guide.learn(spec, make(i)(0), False)
    picks = [guide.pick(spec, make(i)) for i in range(MIN_EACH, MIN_EACH + 40)]
    assert {p.how for p in picks} == {"explore"} and len({p.candidate for p in picks}) > CANDIDATES
    assert not guide.hopeless(spec.id)
    for i, p in enumerate(picks):
        guide.learn(spec, p.trial, False, p.how, p.row)
    for i in range(MIN_EACH + 40, HOPELESS):
        guide.learn(spec, make(i)(0), False, "explore")
    assert guide.hopeless(spec.id)
    other = Guide(seed=0)  # a resumed campaign keeps the count from its log
    other.resume({spec.id: spec}, [Observation(spec.id, i, "", "", False, 0, (), (), (), 0.0) for i in range(HOPELESS)],
                 lambda s, i, c: generate(s, 1, i, candidate=c))
    assert other.hopeless(spec.id)
    guide.learn(spec, make(HOPELESS)(0), True)  # one valid trial: a model, and not hopeless
    assert guide.fitted() == 1 and not guide.hopeless(spec.id)


def test_a_model_is_fitted_from_the_first_valid_trial_after_a_few_invalid_ones():
    """Note [validity model]: the model does not wait for a dozen trials (at 60 trials an API,
    a dozen run unguided cost 10 points of its valid rate)."""
    from nablafuzz.campaign.validity import MIN_EACH, MIN_VALID
    spec = spec_from_dict("numpy_ref", MATRIX, "test")
    guide = Guide(seed=0)
    make = lambda i: (lambda c: generate(spec, 1, i, candidate=c))  # noqa: E731
    trials = [make(i)(0) for i in range(200)]
    valid = [t for t in trials if _valid(t)][:MIN_VALID]
    invalid = [t for t in trials if not _valid(t)][:MIN_EACH]
    for t in invalid:
        guide.learn(spec, t, False)
    assert guide.fitted() == 0
    for t in valid:
        guide.learn(spec, t, True)
    assert guide.fitted() == 1 and MIN_EACH + MIN_VALID <= 4
    assert guide.pick(spec, make(500)).how in ("model", "explore")


def test_each_api_runs_its_first_empty_trial_whatever_the_model_says():
    """Note [validity empty edge]: empty trials are labelled invalid and the model avoids them,
    but failures on empty tensors are findings: the first empty candidate 0 runs; later ones are
    the model's to pick; a resumed campaign knows whether one ran."""
    from nablafuzz.oracle.compare import empty_derivative
    spec = spec_from_dict("numpy_ref", MATRIX, "test")
    make = lambda i: (lambda c: generate(spec, 1, i, candidate=c))  # noqa: E731
    guide = Guide(seed=0)
    for i in range(150):
        t = make(i)(0)
        if not empty_derivative(t):
            guide.learn(spec, t, _valid(t))
    assert guide.fitted() == 1
    empties = [i for i in range(1000, 3000) if empty_derivative(make(i)(0))][:2]
    assert len(empties) == 2
    first = guide.pick(spec, make(empties[0]))
    assert (first.candidate, first.how) == (0, "") and empty_derivative(first.trial)
    guide.learn(spec, first.trial, False, first.how)
    later = [guide.pick(spec, make(i)) for i in [empties[1]] + list(range(3000, 3040))]
    assert later[0].how in ("model", "explore") and not all(empty_derivative(p.trial) for p in later)
    fresh = Guide(seed=0)  # an API whose every trial failed, one of them empty, resumed
    obs = [Observation(spec.id, i, "", "", False, 0, (), (), (), 0.0) for i in [empties[0], 5, 6]]
    fresh.resume({spec.id: spec}, obs, lambda s, i, c: generate(s, 1, i, candidate=c))
    assert fresh.pick(spec, make(empties[1])).how == "explore", "not the first empty trial: the cold start's draw"


def test_a_pooled_api_runs_its_first_smallest_and_largest_trials_whatever_the_model_says():
    """Note [validity edges]: in a pooled campaign the smallest and largest signatures are
    fixed edges (here a 0-d and a 3-d array, both invalid); the first candidate 0 of each runs
    once, later ones are the model's; unpooled, the same trials are the model's from the start;
    a resumed campaign knows which edges ran."""
    from nablafuzz.specs import pool
    spec = spec_from_dict("numpy_ref", MATRIX, "test")
    make = lambda i: (lambda c: generate(spec, 1, i, pooled=True, candidate=c))  # noqa: E731
    pooled, unpooled = Guide(seed=0, pooled=lambda library: True), Guide(seed=0)
    for i in range(150):
        t = make(i)(0)
        if not pool.edge(t.seed):
            pooled.learn(spec, t, _valid(t))
            unpooled.learn(spec, t, _valid(t))
    assert pooled.fitted() == unpooled.fitted() == 1
    edges = {e: [i for i in range(1000, 3000) if pool.edge(make(i)(0).seed) == e][:2] for e in (pool.SMALLEST, pool.LARGEST)}
    for e, (first, later) in edges.items():
        assert unpooled.pick(spec, make(first)).how in ("model", "explore")
        p = pooled.pick(spec, make(first))
        assert (p.candidate, p.how) == (0, "") and not _valid(p.trial), e
        pooled.learn(spec, p.trial, _valid(p.trial), p.how)
        assert pooled.pick(spec, make(later)).how in ("model", "explore"), e
    resumed = Guide(seed=0, pooled=lambda library: True)
    obs = [Observation(spec.id, i, "", "", _valid(make(i)(0)), 0, (), (), (), 0.0) for i in range(60)
           if pool.edge(make(i)(0).seed) != pool.LARGEST]
    obs.append(Observation(spec.id, edges[pool.SMALLEST][0], "", "", False, 0, (), (), (), 0.0))
    resumed.resume({spec.id: spec}, obs, lambda s, i, c: generate(s, 1, i, pooled=True, candidate=c))
    assert resumed.pick(spec, make(edges[pool.SMALLEST][1])).how in ("model", "explore")
    assert resumed.pick(spec, make(edges[pool.LARGEST][1])).how == "", "its largest edge has not run"


def test_validity_model_without_scikit_learn_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(validity, "_sklearn", lambda: False)
    with pytest.raises(ConfigError, match=r"nablafuzz\[learn\]"):
        validity.validity_on(make_config("default", validity_model=True))
    assert not validity.validity_on(make_config("default", validity_model=None)), "the default falls back"


# ---- campaigns --------------------------------------------------------------------------------

def _campaign(tmp_path, monkeypatch, trials, vm=True, budget=120):
    os.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    spec = tmp_path / "matrix.yaml"
    spec.write_text("library: numpy_ref\napis:\n  - name: \"helper_validity_ops:sin_of_matrix\"\n"
                    "    args: [{name: x, rank: [0, 3]}]\n")
    config = make_config("default", libraries=["numpy_ref"], apis=["helper_validity_ops:*"], spec_files=[str(spec)],
                         spec_dir=str(ROOT / "api_specs"), store_dir=str(tmp_path / "store"),
                         campaign_dir=str(tmp_path / "c"), trials_per_api=trials, budget_s=budget, workers=1,
                         seed=4, validity_model=vm, name="guided" if vm else "plain")
    return run_campaign(config), tmp_path / "c" / ("guided" if vm else "plain") / "observations.jsonl"


def test_a_guided_campaign_runs_mostly_valid_trials_and_reports_its_accuracy(tmp_path, monkeypatch):
    plain, _ = _campaign(tmp_path, monkeypatch, 150, vm=False)
    guided, log = _campaign(tmp_path, monkeypatch, 150)
    assert plain.valid / plain.trials < 0.5 and "validity_model" not in plain.to_json()
    v = guided.to_json()["validity_model"]
    assert v["picks"]["numpy_ref model"]["valid_rate"] >= 0.85
    assert guided.valid > plain.valid * 1.3
    assert v["mean_accuracy"] >= 0.85 and v["apis"]["numpy_ref:helper_validity_ops:sin_of_matrix"]["predicted"] > 80
    assert any("validity model" in line for line in guided.lines())
    triage = render_triage(tmp_path / "store")
    section = triage[triage.index("## Input validity model"):]
    assert "| numpy_ref model |" in section and "Held-out accuracy" in section


def test_a_resumed_guided_campaign_refits_from_its_log_and_regenerates_its_trials(tmp_path, monkeypatch):
    from nablafuzz.campaign.inlib import InLibrary
    _, log = _campaign(tmp_path, monkeypatch, 60)
    first = [json.loads(line) for line in log.read_text().splitlines()]
    (log.parent / "complete").unlink()  # as if killed after trial 60 of 90
    _campaign(tmp_path, monkeypatch, 90)  # the same campaign (by name), resumed
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows[:len(first)] == first and len(rows) == 90
    resumed = [r for r in rows if r["index"] >= 60]
    assert resumed[0].get("pick") in ("model", "explore"), "the model was refitted from the log before trial 60"
    assert any(r.get("candidate") for r in rows), "some trials ran another candidate"
    spec = spec_from_dict("numpy_ref", MATRIX, "test")

    class _Campaign:  # what a campaign's trial needs: its settings and seed
        seed, config, draw = 4, make_config("default", libraries=["numpy_ref"]), Campaign.draw
    oracle = InLibrary.__new__(InLibrary)
    oracle.campaign, oracle.config = _Campaign(), _Campaign.config
    for r in rows:  # every logged trial regenerates exactly from (spec, seed, index, candidate)
        assert trial_key(oracle.trial(spec, r["index"], r.get("candidate", 0))) == r["trial"]


def test_rarely_valid_apis_draw_more_candidates():
    from nablafuzz.campaign.validity import MAX_CANDIDATES, _candidates
    assert _candidates(0.9) == CANDIDATES and _candidates(0.0) == MAX_CANDIDATES
    k = _candidates(0.25)  # enough for one valid candidate 95 % of the time
    assert CANDIDATES < k < MAX_CANDIDATES and 1 - 0.75 ** k >= 0.95 > 1 - 0.75 ** (k - 1)

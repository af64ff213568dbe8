"""End-to-end campaigns over numpy_ref: precision, recall, dedup, and surviving SIGKILL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from helper_kill import kill_mid_run
from nablafuzz.campaign import run_campaign
from nablafuzz.core.config import make_config
from nablafuzz.reports.store import Store

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "tests" / "specs" / "broken.yaml"

EXPECTED = {
    "broken_ops:sin_tail": ("derivative_mismatch", ("fwd", "rev"), 1),
    "broken_ops:tanh_fwd": ("derivative_mismatch", ("fwd",), 1),
    "broken_ops:cube_second": ("derivative_mismatch", ("fwd.fwd", "fwd.rev", "rev.fwd", "rev.rev"), 2),
    "broken_ops:exp_raises": ("status_mismatch", ("rev",), 1),
    "broken_ops:noisy_sin": ("nondeterministic", ("direct",), 0),
    "broken_ops:cube_at_zero": ("derivative_mismatch", ("fwd", "rev"), 1),
}


def _config(tmp_path: Path, **kw):
    base = dict(libraries=["numpy_ref"], spec_dir=str(ROOT / "api_specs"), store_dir=str(tmp_path / "store"),
                campaign_dir=str(tmp_path / "campaigns"), workers=2, seed=3)
    base.update(kw)
    return make_config("default", **base)


@pytest.fixture(scope="module")
def broken_campaign(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broken")
    os.chdir(ROOT)
    config = _config(tmp, spec_files=[str(BROKEN)], trials_per_api=45, budget_s=600, api_budget_s=120)
    summary = run_campaign(config)
    reports, errors = Store(tmp / "store").load_all()
    return summary, reports, errors


def test_each_broken_op_is_exactly_one_report(broken_campaign):
    summary, reports, errors = broken_campaign
    assert not errors
    by_api = Counter(r.fingerprint.api for r in reports)
    assert set(by_api) == set(EXPECTED), f"reports for {sorted(by_api)}"
    assert all(n == 1 for n in by_api.values()), by_api
    for r in reports:
        verdict, scenarios, order = EXPECTED[r.fingerprint.api]
        assert (r.fingerprint.verdict.value, r.fingerprint.scenarios, r.fingerprint.order) == (verdict, scenarios, order)


def test_correct_ops_give_no_report_over_1000_trials(broken_campaign):
    summary, reports, _ = broken_campaign
    assert summary.complete
    assert summary.trials >= 24 * 45 + 6 * 45
    assert all(r.fingerprint.api.startswith("broken_ops:") for r in reports)
    assert summary.apis_valid == summary.apis == 30


def test_reports_are_minimised_and_counted(broken_campaign):
    _, reports, _ = broken_campaign
    for r in reports:
        assert r.minimised_size <= r.original_size
        assert r.occurrences >= 1
        assert r.status.value == "new"
    tanh = next(r for r in reports if r.fingerprint.api == "broken_ops:tanh_fwd")
    assert tanh.minimised_size <= 2


def test_a_reports_numbers_are_those_of_its_stored_trial(broken_campaign):
    """Evidence, repro and report come from the same (minimised) trial: judging the stored trial
    again gives the stored evidence's numbers exactly (numpy_ref is deterministic)."""
    from nablafuzz.core.quantities import ALL
    from nablafuzz.oracle.verdict import judge
    from nablafuzz.reports.replay import spec_for
    from nablafuzz.runtime.registry import resolve_runtime
    from nablafuzz.runtime.runner import Runner
    from nablafuzz.specs.spec import load_specs
    _, reports, _ = broken_campaign
    specs = load_specs(ROOT / "api_specs", ["numpy_ref"], [BROKEN])
    runner = Runner(resolve_runtime("numpy_ref", [str(BROKEN.parent)]), ROOT / ".nablafuzz" / "evidence.log", 60.0)
    shrunk = [r for r in reports if r.minimised_size < r.original_size and r.evidence.disagreements]
    assert shrunk
    try:
        for r in shrunk:
            spec = spec_for(r, specs)
            found = judge(runner.run(r.trial, spec, ALL), spec, runner).findings
            (again,) = [f for f in found if f.fingerprint == r.fingerprint]
            numbers = [(d.scenarios, d.actual, d.expected) for d in again.candidate.disagreements]
            assert numbers == [(d.scenarios, d.actual, d.expected) for d in r.evidence.disagreements], r.key
    finally:
        runner.close()


def _observations(campaigns: Path):
    lines = []
    for log in campaigns.glob("*/observations.jsonl"):
        for line in log.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines


def test_sigkill_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path):
    cmd = [sys.executable, "-m", "nablafuzz", "campaign", "-l", "numpy_ref", "--specs", str(BROKEN),
           "--trials", "25", "--store", str(tmp_path / "store"), "--campaign-dir", str(tmp_path / "c"),
           "--name", "killme", "--seed", "5"]
    killed_at = kill_mid_run(cmd, ROOT, tmp_path / "c" / "killme" / "observations.jsonl", 150)
    assert 0 < killed_at < 30 * 25, "the kill must land mid-campaign"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    obs = _observations(tmp_path / "c")
    keys = Counter((o["api"], o["index"]) for o in obs)
    assert len(keys) == 30 * 25 and max(keys.values()) == 1, "every trial logged exactly once"
    reports, errors = Store(tmp_path / "store").load_all()
    assert not errors
    assert Counter(r.fingerprint.api for r in reports) == Counter(set(EXPECTED))
    seen = Counter(k for o in obs for k in o["findings"])
    for r in reports:
        assert r.key in seen
        assert r.occurrences == seen[r.key], "an occurrence counted twice or lost"
    assert not list((tmp_path / "store").rglob("*.tmp")), "no half-written file left behind"


def test_libraries_take_turns_so_a_short_budget_covers_each():
    from nablafuzz.campaign.loop import _interleaved
    from nablafuzz.specs.spec import spec_from_dict
    specs = [spec_from_dict(lib, {"name": n, "args": [{"name": "x"}]}, "test")
             for lib, names in (("torch", "abc"), ("jax", "de"), ("numpy_ref", "f")) for n in names]
    assert [s.id for s in _interleaved(specs)] == ["torch:a", "jax:d", "numpy_ref:f", "torch:b", "jax:e", "torch:c"]


def test_a_campaign_behind_schedule_still_reaches_every_api(tmp_path):
    """Note [fair share]: with --api-budget far above what --budget allows per API, each API gets
    its share of what is left, so the last APIs of the list are reached too."""
    os.chdir(ROOT)
    config = _config(tmp_path, trials_per_api=100000, budget_s=12, api_budget_s=600, workers=2)
    summary = run_campaign(config)
    assert summary.apis > 20 and summary.apis_tried == summary.apis, (summary.apis_tried, summary.apis)


def test_apis_whose_first_trial_is_slow_are_reached_after_the_list(tmp_path, monkeypatch):
    """Note [breadth first]: three APIs at the end of the list whose first trial costs 1.5 s (as
    a JAX special function's compilation does) are reached although the APIs before them could
    use the whole budget (depth first, 24 of the 27 were); the time left is then shared out."""
    os.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    slow = tmp_path / "slow.yaml"
    slow.write_text("library: numpy_ref\napis:\n" + "".join(
        f'  - name: "helper_crash_ops:compiling_sin_{c}"\n    args: [{{name: x, domain: moderate}}]\n' for c in "abc"))
    config = _config(tmp_path, spec_files=[str(slow)], trials_per_api=100000, budget_s=10, api_budget_s=600)
    summary = run_campaign(config)
    assert summary.apis > 20 and summary.apis_tried == summary.apis, (summary.apis_tried, summary.apis)
    per_api = Counter(o["api"] for o in _observations(tmp_path / "campaigns"))
    assert sum(n > 1 for n in per_api.values()) > len(per_api) / 2, "the time after the first round is shared"


def test_a_report_not_reproduced_on_the_release_it_was_seen_on_is_flaky_not_fixed():
    from repro_ops import make_report, tensor
    from nablafuzz.campaign.loop import not_reproduced
    from nablafuzz.core.model import ReportStatus
    r = make_report("jax", "jax.numpy.tanh", [tensor([0.5])], versions=("jax 0.10.2", "numpy 2.4.6"))
    same = not_reproduced(r, {"jax 0.10.2", "jaxlib 0.10.2", "numpy 2.4.6"}, "c2")
    assert same.status is ReportStatus.FLAKY and "jax 0.10.2" in same.notes
    newer = not_reproduced(r, {"jax 0.10.3", "jaxlib 0.10.3", "numpy 2.4.6"}, "c2")
    assert newer.status is ReportStatus.FIXED and newer.notes == "not reproduced by campaign c2"


def test_the_campaigns_end_replays_on_every_lanes_warm_workers_at_once(tmp_path, monkeypatch):
    # the replays at the end used to start a worker of their own (2-3 s for torch), then ran on
    # one lane's worker while the other lanes' workers were closed
    from nablafuzz.campaign.inlib import InLibrary
    from nablafuzz.campaign.loop import Campaign
    pick, replay, warm, used = Campaign._replay_runners, InLibrary.replay, [], set()

    def picking(self):
        pools = pick(self)
        warm.extend({k: r.worker.proc is not None and r.worker.proc.poll() is None for k, r in p.items()} for p in pools)
        return pools

    def replaying(self, report, runners):
        used.add(id(runners))
        return replay(self, report, runners)
    monkeypatch.setattr(Campaign, "_replay_runners", picking)
    monkeypatch.setattr(InLibrary, "replay", replaying)
    os.chdir(ROOT)
    run_campaign(_config(tmp_path, spec_files=[str(BROKEN)], apis=["broken_ops:*"], trials_per_api=3,
                         budget_s=300))
    assert warm == [{"numpy_ref": True}, {"numpy_ref": True}] and len(used) == 2, (warm, used)


def test_a_report_that_reproduced_at_a_campaigns_end_on_these_versions_is_not_replayed_again(tmp_path, monkeypatch):
    """Note [finishing budget]: the first campaign's end replays its reports and records the
    versions each reproduced on; the next campaign on the same runtime replays none of them, and
    one whose record names another release is replayed again."""
    from nablafuzz.campaign.inlib import InLibrary
    from nablafuzz.core.model import Verdict, Vetting
    replay, replayed = InLibrary.replay, []

    def replaying(self, report, runners):
        replayed.append(report.key)
        return replay(self, report, runners)
    monkeypatch.setattr(InLibrary, "replay", replaying)
    os.chdir(ROOT)
    kw = dict(spec_files=[str(BROKEN)], apis=["broken_ops:*"], trials_per_api=3, budget_s=300)
    run_campaign(_config(tmp_path, **kw))
    store = Store(tmp_path / "store")
    first = {r.key: r for r in store}
    assert replayed and set(replayed) <= set(first), (replayed, first)
    reproduced = [r for r in first.values() if r.reproduced_on]
    assert reproduced and all(any(v.startswith("numpy ") for v in r.reproduced_on) for r in reproduced)
    older, vetted = reproduced[:2]
    store.save(replace(older, reproduced_on=tuple("numpy 1.0.0" if v.startswith("numpy ") else v
                                                  for v in older.reproduced_on)))
    # a report vetted as a false positive is never replayed: the campaign dismisses it
    store.save(replace(vetted, reproduced_on=(), vetted=Vetting("false_positive", "a planted check", "now")))
    replayed.clear()
    run_campaign(_config(tmp_path, **kw, seed=4))
    second = {r.key: r for r in store}
    assert older.key in replayed and vetted.key not in replayed, replayed
    assert second[vetted.key].status is vetted.status, second[vetted.key].notes
    skipped = [r.key for r in reproduced[2:] if r.key not in replayed]
    assert skipped, replayed
    # what else was replayed again is new to the second campaign, has a new representative (a
    # smaller input) or a verdict that varies from run to run (the planted noisy function)
    varying = (Verdict.NONDETERMINISTIC, Verdict.UNINITIALISED_READ)
    assert all(k not in first or second[k].trial != first[k].trial or first[k].fingerprint.verdict in varying
               for k in set(replayed) - {older.key}), replayed


"""Hardening: what a hostile or unlucky report store, function, process or machine can do.

One test (or a few) per item of the hardening issue; the ops are in helper_hostile_ops.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from repro_ops import disagreement, make_report, tensor

from nablafuzz.campaign import run_campaign
from nablafuzz.campaign.loop import campaign_dir
from nablafuzz.core.config import make_config
from nablafuzz.core.errors import RefusedError, ReportError
from nablafuzz.core.fingerprint import key
from nablafuzz.core.model import ArgKind, ErrorInfo, InputValue, ReportStatus, Trial, Verdict
from nablafuzz.core.quantities import ALL
from nablafuzz.core.tensors import to_record
from nablafuzz.reports.repro import ReproError, render
from nablafuzz.reports.store import Store, encode_report, read_report, report_path
from nablafuzz.reports.triage import render_triage
from nablafuzz.runtime import process
from nablafuzz.runtime.process import Runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.spec import _Ctx, parse_api

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """A clean working folder: markers in HOSTILE_DIR, the helper ops importable by workers."""
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("HOSTILE_DIR", str(markers))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spec_file(folder: Path, library: str, *names: str, extra: str = "") -> Path:
    path = folder / f"specs-{library}.yaml"
    body = "".join(f'  - name: "{n}"\n    args: [{{name: x, domain: moderate}}]\n{extra}' for n in names)
    path.write_text(f"library: {library}\napis:\n{body}")
    return path


def config(folder: Path, libraries=("numpy_ref",), apis=("*",), specs=(), **kw):
    base = dict(libraries=list(libraries), apis=list(apis), spec_files=[str(s) for s in specs],
                spec_dir=str(ROOT / "api_specs"), store_dir=str(folder / "store"),
                campaign_dir=str(folder / "campaigns"), workers=1, seed=5, trials_per_api=4, budget_s=300)
    base.update(kw)
    return make_config("default", **base)


def reports_of(folder: Path):
    reports, errors = Store(folder / "store").load_all()
    assert not errors, errors
    return reports


# ---- 1. no code from data -----------------------------------------------------------------------

def _planted(api_in_trial: str):
    """A stored report whose fingerprint names numpy_ref `sin` but whose trial names another API."""
    report = make_report("numpy_ref", "sin", [tensor([0.5, 1.0])], disagreements=[disagreement("rev", "fd")],
                         campaigns=("earlier",))
    return replace(report, trial=replace(report.trial, api=api_in_trial))


def test_campaign_finish_never_runs_what_a_report_names(hostile):
    (hostile / "evil.py").write_text("from pathlib import Path\nPath('IMPORTED').write_text('ran')\n"
                                     "from nablafuzz.libraries.numpy_ref.adapter import OPS\nrun = OPS['sin']\n")
    report = _planted("evil:run")
    path = report_path(hostile / "store", "numpy_ref", "sin", report.key)
    path.parent.mkdir(parents=True)
    path.write_text(encode_report(report))

    summary = run_campaign(config(hostile, apis=["sin"], trials_per_api=2))
    assert summary.complete
    assert not (hostile / "IMPORTED").exists()  # the module named by report data was never imported
    (again,) = [r for r in reports_of(hostile) if r.fingerprint.api == "sin"]
    assert again.status is report.status  # neither replayed nor marked fixed
    summary = run_campaign(config(hostile, apis=["sin"], trials_per_api=2))  # and every rerun works too
    assert summary.complete and not (hostile / "IMPORTED").exists()


def test_runner_refuses_a_trial_that_names_another_api(tmp_path):
    runner = Runner(Runtime("numpy_ref", sys.executable), tmp_path / "w.log", 10.0)
    spec = parse_api(_Ctx("test"), "numpy_ref", {"name": "sin", "args": [{"name": "x"}]})
    trial = Trial("numpy_ref", "os:system", 1, "float64",
                  (InputValue("x", ArgKind.TENSOR, to_record(np.array([1.0])), True),))
    try:
        with pytest.raises(RefusedError, match="never code"):
            runner.run(trial, spec, ALL)
    finally:
        runner.close()


def test_repro_and_triage_call_only_declared_apis(hostile):
    report = _planted("os:system")
    with pytest.raises(ReproError, match="no loaded spec declares"):
        render(report, {"numpy_ref:sin", "numpy_ref:os:system"})
    fine = make_report("numpy_ref", "repro_ops:DOUBLE_VJP_SIN", [tensor([0.3])], disagreements=[disagreement("rev", "fd")])
    with pytest.raises(ReproError, match="no loaded spec declares"):
        render(fine, {"numpy_ref:sin"})
    store = hostile / "store"
    Store(store).save(report)
    out = hostile / "triage" / "triage.md"
    render_triage(store, out, spec_dir=ROOT / "api_specs")
    text = "\n".join(p.read_text() for p in [out, *sorted((out.parent / "triage").glob("*.md"))])
    assert "os.system" not in text and "import os" not in text and "Repro script: not available" in text


# ---- 2. the store stays inside itself -------------------------------------------------------------

def test_report_fields_never_leave_the_store(tmp_path):
    store = Store(tmp_path / "store")
    report = make_report("..", "..", [tensor([1.0])], disagreements=[disagreement("rev", "fd")])
    store.save(replace(report, key="../../../escaped"))
    written = [p for p in tmp_path.rglob("*.json")]
    assert written and all((tmp_path / "store") in p.parents for p in written), written
    assert all(p.name == f"{key(report.fingerprint)}.json" for p in written)


def test_hand_edited_fingerprint_is_moved_aside_not_merged_into(tmp_path):
    from nablafuzz.core.model import Candidate, FilterOutcome, Finding
    store = Store(tmp_path / "store", notify=lambda m: notes.append(m))
    notes = []
    genuine = make_report("numpy_ref", "sin", [tensor([1.0])], disagreements=[disagreement("rev", "fd")])
    edited = replace(genuine, fingerprint=replace(genuine.fingerprint, verdict=Verdict.STATUS_MISMATCH))
    path = report_path(tmp_path / "store", "numpy_ref", "sin", genuine.key)
    path.parent.mkdir(parents=True)
    path.write_text(encode_report(edited))  # the verdict edited by hand, the file name kept

    cand = Candidate(Verdict.DERIVATIVE_MISMATCH, ("rev",), 1, genuine.evidence.disagreements, message="m")
    finding = Finding(genuine.trial, cand, (FilterOutcome("x", False, "kept"),), "wrong", "m")
    assert finding.fingerprint == genuine.fingerprint
    report, created = store.record(finding, genuine.trial, ("numpy 2",), "c2")
    assert created and report.fingerprint == genuine.fingerprint and report.occurrences == 1
    aside = list(path.parent.glob("*.mismatch-*"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["report"]["fingerprint"]["verdict"] == "status_mismatch"
    assert notes and "moved aside" in notes[0]
    with pytest.raises(ReportError, match="fingerprint"):
        from nablafuzz.reports.store import read_checked
        bad = path.parent / "0000000000000000.json"
        bad.write_text(encode_report(genuine))
        read_checked(bad)


# ---- 3. one writer per store ------------------------------------------------------------------

def test_second_campaign_on_a_store_exits_2_naming_the_holder(hostile):
    spec = spec_file(hostile, "numpy_ref", "helper_crash_ops:slow_jvp")
    cmd = [sys.executable, "-m", "nablafuzz", "campaign", "-l", "numpy_ref", "--specs", str(spec), "--api",
           "helper_crash_ops:*", "--trials", "3", "--timeout", "20", "--scenarios", "fwd", "--store", "store", "--campaign-dir", "c",
           "--spec-dir", str(ROOT / "api_specs"), "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    first = subprocess.Popen(cmd, env=env, cwd=hostile, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = hostile / "store" / ".lock"
        for _ in range(300):
            if lock.exists() and lock.read_text():
                break
            time.sleep(0.1)
        second = subprocess.run(cmd, env=env, cwd=hostile, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"PID {first.pid}" in second.stderr and "in use" in second.stderr
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    lines = (next((hostile / "c").iterdir()) / "observations.jsonl").read_text().splitlines()
    assert len(lines) == 3  # no duplicate observation lines from the refused second campaign


# ---- 4. a hang costs about one trial --------------------------------------------------------------

def test_a_hang_costs_about_one_trial_and_the_budget_holds(hostile):
    spec = spec_file(hostile, "numpy_ref", "helper_crash_ops:hang_jvp")
    start = time.monotonic()
    summary = run_campaign(config(hostile, apis=["helper_crash_ops:*"], specs=[spec], trial_timeout_s=2.0,
                                  budget_s=10.0, trials_per_api=20))
    took = time.monotonic() - start
    assert took < 10.0 + 3 * 2.0 + 8.0, took  # the budget, a timeout or so, and worker start-ups
    (report,) = reports_of(hostile)
    assert report.fingerprint.verdict is Verdict.TIMEOUT  # the hang is still found
    assert summary.complete


def test_a_timeout_matching_a_stored_hang_is_not_run_again(hostile, monkeypatch):
    """Note [stored hang]: the store's open hang of the API, in the same scenario, makes a timeout
    that hang again without the slow filter's re-run; the report keeps its representative."""
    from nablafuzz.reports.vetting import store_issues
    api = "helper_crash_ops:hang_jvp"
    spec = spec_file(hostile, "numpy_ref", api)
    stored = make_report("numpy_ref", api, [tensor(np.linspace(0.1, 0.9, 64).tolist())], verdict=Verdict.TIMEOUT,
                         scenarios=("fwd",), error=ErrorInfo("timeout", "fwd: no answer"), campaigns=("earlier",),
                         sizes=(64, 64))
    assert store_issues([replace(stored, status=ReportStatus.FIXED)]) == {}  # a fixed hang is re-run
    Store(hostile / "store").save(stored)
    limits, run = [], Runner.run

    def recording(self, trial, spec, scenarios, timeout_s=None):
        limits.append(timeout_s or self.timeout_s)
        return run(self, trial, spec, scenarios, timeout_s)
    monkeypatch.setattr(Runner, "run", recording)
    summary = run_campaign(config(hostile, apis=[api], specs=[spec], trial_timeout_s=2.0, budget_s=60.0,
                                  trials_per_api=2))
    assert summary.complete and max(limits) == 2.0, limits  # no re-run with four times the timeout
    (report,) = reports_of(hostile)
    assert report.key == stored.key and report.occurrences == 3, report.occurrences
    assert report.trial == stored.trial and report.evidence == stored.evidence  # the re-run representative


def test_a_finding_the_store_holds_open_is_not_confirmed_in_a_fresh_worker_again(hostile, monkeypatch):
    """Note [confirmation]: the first occurrence of a fingerprint is re-run in a fresh worker,
    unless the store holds it as a new or open report; a fixed one's comes back to be confirmed."""
    api = "helper_ops:square_bad_vjp"
    spec = spec_file(hostile, "numpy_ref", api)
    restarts, restart = [], Runner.restart

    def counting(self):
        restarts.append(1)
        return restart(self)
    monkeypatch.setattr(Runner, "restart", counting)

    def night(seed: int):
        restarts.clear()
        summary = run_campaign(config(hostile, apis=[api], specs=[spec], trials_per_api=3, seed=seed))
        (report,) = reports_of(hostile)
        assert summary.complete and summary.findings >= 1 and not dict(summary.dismissed).get("not_confirmed")
        return report, len(restarts)

    first, n = night(5)
    assert first.status is ReportStatus.NEW and n == 1  # made: confirmed in a fresh worker
    again, n = night(6)
    assert n == 0 and again.occurrences > first.occurrences  # held open: taken as it comes, and counted
    Store(hostile / "store").save(replace(again, status=ReportStatus.FIXED))
    back, n = night(7)
    assert n == 1 and back.status is ReportStatus.OPEN  # a fixed report's fingerprint: confirmed again


def test_a_stored_hang_the_campaign_did_not_see_gets_one_trial_timeout_at_its_end(hostile, monkeypatch):
    """Note [finishing budget]: the replay of a hang waits one trial timeout, not the slow
    filter's four more, and a hang still running then keeps its status."""
    from helper_crash_ops import HANG_AT
    api = "helper_crash_ops:hang_at_jvp"
    spec = spec_file(hostile, "numpy_ref", api)
    stored = make_report("numpy_ref", api, [tensor([HANG_AT])], verdict=Verdict.TIMEOUT, scenarios=("fwd",),
                         campaigns=("earlier",))
    Store(hostile / "store").save(stored)
    waits, run = [], Runner.run

    def recording(self, trial, spec, scenarios, timeout_s=None):
        if trial == stored.trial:
            waits.append(min(timeout_s or self.timeout_s, self.left()))
        return run(self, trial, spec, scenarios, timeout_s)
    monkeypatch.setattr(Runner, "run", recording)
    summary = run_campaign(config(hostile, apis=[api], specs=[spec], trial_timeout_s=2.0, budget_s=100.0,
                                  trials_per_api=3, workers=2))
    assert summary.complete and not summary.findings  # the campaign's own trials never hang
    assert len(waits) == 1 and waits[0] <= 2.0, waits
    (report,) = reports_of(hostile)
    assert report.status is ReportStatus.NEW and report.notes == "", (report.status, report.notes)


def _children(pid: int):
    """The processes whose parent is `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_worker_inside_a_hang_ends_when_its_campaign_is_killed(hostile):
    """Note [orphaned worker]: kill -9 of the campaign leaves its worker, in a session of its own,
    inside a 60-s hang; the worker notices that its parent has gone and ends within seconds."""
    spec = spec_file(hostile, "numpy_ref", "helper_crash_ops:hang_jvp")
    cmd = [sys.executable, "-m", "nablafuzz", "campaign", "-l", "numpy_ref", "--specs", str(spec), "--api",
           "helper_crash_ops:*", "--trials", "1", "--timeout", "60", "--scenarios", "fwd", "--store", "store",
           "--campaign-dir", "c", "--spec-dir", str(ROOT / "api_specs"), "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    campaign = subprocess.Popen(cmd, env=env, cwd=hostile, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _children(campaign.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(5)  # the worker has imported numpy and sits in the hang
        workers = _children(campaign.pid)
        assert workers and all(_running(w) for w in workers)
    finally:
        campaign.kill()
        campaign.wait()
    deadline = time.monotonic() + 10
    while any(_running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(w) for w in workers), workers


# ---- 5. memory is bounded by default -----------------------------------------------------------------

def test_memory_limit_is_on_by_default_and_stops_a_chunked_allocation(hostile):
    assert make_config("smoke").memory_limit_mb >= 4096
    from nablafuzz.core.config import default_memory_limit
    assert make_config("smoke").memory_limit_mb == default_memory_limit(2)
    assert make_config("smoke", memory_limit_mb=0).memory_limit_mb == 0  # overridable
    spec = spec_file(hostile, "numpy_ref", "helper_hostile_ops:hog_chunks_sin")
    cfg = config(hostile, apis=["helper_hostile_ops:*"], specs=[spec], trials_per_api=1, workers=64)
    assert cfg.memory_limit_mb == 4096  # 64 workers' share is below the floor
    summary = run_campaign(cfg)
    assert "memory limit per worker: 4096 MiB" in summary.lines()
    log = next((hostile / "campaigns").iterdir()) / "observations.jsonl"
    (obs,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert "MemoryError" in obs["invalid"], obs  # the allocation failed inside the worker


# ---- 6. a finding belongs to the function that caused it ----------------------------------------

def test_state_left_by_one_function_is_not_reported_against_the_next(hostile):
    spec = spec_file(hostile, "numpy_ref", "helper_hostile_ops:poison_sin", "helper_hostile_ops:victim_sin")
    summary = run_campaign(config(hostile, apis=["helper_hostile_ops:*"], specs=[spec], trials_per_api=4))
    assert [r for r in reports_of(hostile) if "victim" in r.fingerprint.api] == []
    assert dict(summary.dismissed).get("not_confirmed", 0) >= 1


# ---- 7. an outside kill is not a bug ------------------------------------------------------------------

def test_kill_of_a_worker_is_not_a_crash_report(hostile):
    spec = spec_file(hostile, "numpy_ref", "helper_hostile_ops:killed_once_sin")
    summary = run_campaign(config(hostile, apis=["helper_hostile_ops:*"], specs=[spec], trials_per_api=3))
    assert (hostile / "markers" / "killed").exists()  # the kill happened
    assert reports_of(hostile) == []
    assert dict(summary.dismissed).get("not_confirmed") == 1 and summary.complete


def test_kill_during_the_nondeterminism_rerun_is_not_a_nondeterminism_report(hostile):
    spec = spec_file(hostile, "numpy_ref", "helper_hostile_ops:wrong_vjp_killed_in_rerun")
    summary = run_campaign(config(hostile, apis=["helper_hostile_ops:*"], specs=[spec], trials_per_api=3,
                                  scenarios=["rev", "fwd", "fd"]))
    assert (hostile / "markers" / "killed-rerun").exists()
    verdicts = {r.fingerprint.verdict for r in reports_of(hostile)}
    assert verdicts == {Verdict.DERIVATIVE_MISMATCH}  # the real bug, and no `nondeterministic`
    assert dict(summary.dismissed).get("not_confirmed") == 1


def test_a_runtime_that_will_not_restart_ends_its_queue_not_the_campaign(hostile, monkeypatch):
    monkeypatch.setenv("NABLAFUZZ_ADAPTERS", "flaky=helper_hostile_ops:make_flaky")
    monkeypatch.setattr(process, "RESTART_DELAYS", (0.05, 0.1), raising=False)
    spec = spec_file(hostile, "flaky", "helper_hostile_ops:breaks_runtime_sin")
    summary = run_campaign(config(hostile, libraries=["numpy_ref", "flaky"], specs=[spec],
                                  apis=["sin", "cos", "helper_hostile_ops:*"], trials_per_api=3))
    assert not summary.complete
    assert any(s.startswith("flaky: ") and "tried 3 times" in s for s in summary.stopped), summary.stopped
    assert any("runtime given up" in line for line in summary.lines())
    log = next((hostile / "campaigns").iterdir()) / "observations.jsonl"
    apis = [json.loads(line)["api"] for line in log.read_text().splitlines()]
    assert apis.count("numpy_ref:sin") == 3 and apis.count("numpy_ref:cos") == 3  # the others went on
    assert reports_of(hostile) == []


# ---- 8. the protocol recovers ---------------------------------------------------------------------------

def test_forged_frame_costs_one_trial_and_the_worker_recovers(tmp_path):
    from test_worker import assert_sin_runs_fine, make_runner, spec_and_trial
    runner = make_runner(tmp_path / "w.log", timeout=10.0)
    try:
        spec, trial = spec_and_trial("helper_hostile_ops:forger_sin")
        ex = runner.run(trial, spec, ALL)
        assert ex.death is not None and ex.death.kind == "protocol", ex.death
        assert "protocol error" in ex.results[-1].error.message
        for _ in range(3):
            assert_sin_runs_fine(runner)
    finally:
        runner.close()


def test_worker_exits_on_a_frame_that_is_not_ours(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nablafuzz.worker.main", "numpy_ref"], input=b"GARBAGE" * 10,
                          capture_output=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 3 and b"not a nablafuzz frame" in proc.stderr


# ---- 10. bounded reports and logs -----------------------------------------------------------------------

def test_oversized_report_is_refused_before_parsing_and_not_merged_into(tmp_path):
    report = make_report("numpy_ref", "sin", [tensor(list(np.linspace(-1, 1, 300_000)))],
                         disagreements=[disagreement("rev", "fd")])
    path = report_path(tmp_path / "store", "numpy_ref", "sin", report.key)
    path.parent.mkdir(parents=True)
    path.write_text(encode_report(report))
    assert path.stat().st_size > 4 << 20  # the store's MAX_REPORT_BYTES
    start = time.monotonic()
    with pytest.raises(ReportError, match="limit"):
        read_report(path)
    text = render_triage(tmp_path / "store", spec_dir=ROOT / "api_specs")
    assert "limit" in text and time.monotonic() - start < 10
    assert Store(tmp_path / "store", notify=lambda m: None).get("numpy_ref", "sin", report.key) is None
    assert list(path.parent.glob("*.corrupt-*"))  # moved aside, kept


def test_worker_log_is_capped(tmp_path, monkeypatch):
    from test_worker import make_runner, spec_and_trial
    monkeypatch.setattr(process, "LOG_CAP", 256 << 10, raising=False)
    monkeypatch.setattr(process, "LOG_KEEP", 64 << 10, raising=False)
    log = tmp_path / "w.log"
    runner = make_runner(log)
    try:
        spec, trial = spec_and_trial("helper_hostile_ops:flood_sin")
        for _ in range(3):
            assert runner.run(trial, spec, ALL).death is None
    finally:
        runner.close()
    assert log.stat().st_size < 256 << 10
    assert log.read_text().startswith("[nablafuzz: earlier output dropped")


def test_torn_last_observation_line_is_repaired_on_resume(hostile):
    cfg = config(hostile, apis=["sin"], trials_per_api=3)
    folder = campaign_dir(cfg)[1]
    folder.mkdir(parents=True)
    (folder / "observations.jsonl").write_text('{"api": "numpy_ref:sin", "index": 0, "tri')  # power loss
    summary = run_campaign(cfg)
    lines = (folder / "observations.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["api"] == "numpy_ref:sin" for line in lines)
    assert summary.trials == 3


def test_campaign_name_with_r_resumes_and_rounds(hostile):
    cfg = config(hostile, apis=["sin"], trials_per_api=1, name="nightly-run")
    first = run_campaign(cfg)
    second = run_campaign(cfg)
    assert (first.campaign, second.campaign) == ("nightly-run", "nightly-run-r2")

"""A worker that segfaults, hangs, prints or runs out of memory costs one trial, never the campaign."""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.campaign import run_campaign
from nablafuzz.core.config import make_config
from nablafuzz.core.model import ArgKind, InputValue, Outcome, Trial, Verdict
from nablafuzz.core.quantities import ALL, direction
from nablafuzz.core.tensors import to_record
from nablafuzz.oracle.compare import compare
from nablafuzz.oracle.verdict import judge
from nablafuzz.reports.store import Store
from nablafuzz.runtime.process import Runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.spec import _Ctx, parse_api

TESTS = Path(__file__).resolve().parent
X = [0.5, -1.0, 2.0]
# one BLAS thread keeps the worker's address space small and predictable under a memory limit
ENV = (("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"))


def make_runner(log: Path, timeout: float = 30.0, memory_limit_mb=None) -> Runner:
    rt = Runtime("numpy_ref", sys.executable, ENV, memory_limit_mb, (str(TESTS),))
    return Runner(rt, log, timeout)


def spec_and_trial(api: str, x=X):
    spec = parse_api(_Ctx("test"), "numpy_ref", {"name": api, "args": [{"name": "x"}]})
    trial = Trial("numpy_ref", api, 7, "float64", (InputValue("x", ArgKind.TENSOR, to_record(np.array(x)), True),))
    return spec, trial


def assert_sin_runs_fine(runner: Runner) -> None:
    spec, trial = spec_and_trial("sin")
    ex = runner.run(trial, spec, ALL)
    assert ex.death is None
    assert [r.scenario for r in ex.results] == list(ALL)
    assert all(r.outcome is Outcome.OK for r in ex.results)
    x = np.array(X)
    want = float(np.sum(direction(7, "v", 0, x.shape, "float64") * np.cos(x) * direction(7, "u", 0, x.shape, "float64")))
    assert ex.get("rev").value == pytest.approx(want, rel=1e-13)
    assert judge(ex, spec, runner).findings == ()


@pytest.mark.parametrize("api, scenario, outcome, verdict, detail", [
    ("helper_crash_ops:segv_vjp", "rev", Outcome.CRASHED, Verdict.CRASH, "SIGSEGV"),
    ("helper_crash_ops:hang_jvp", "fwd", Outcome.TIMEOUT, Verdict.TIMEOUT, "timeout"),
    ("helper_crash_ops:mute_vjp", "rev", Outcome.CRASHED, Verdict.CRASH, "did not exit"),
], ids=["segfault", "hang", "mute-then-hang"])
def test_dead_worker_costs_one_trial(tmp_path, api, scenario, outcome, verdict, detail):
    runner = make_runner(tmp_path / "w.log", timeout=2.0)
    try:
        spec, trial = spec_and_trial(api)
        start = time.monotonic()
        ex = runner.run(trial, spec, ALL)
        assert time.monotonic() - start < 15
        dead = ex.results[-1]
        assert dead.scenario == scenario and dead.outcome is outcome
        assert detail in dead.error.message
        assert all(r.outcome is Outcome.OK for r in ex.results[:-1])  # what ran before is kept
        assert ex.death is not None and ex.death.kind == outcome.value

        (cand,) = compare(ex, spec).candidates
        assert cand.verdict is verdict and cand.scenarios == (scenario,) and detail in cand.message
        (finding,) = judge(ex, spec, runner).findings  # a hang is re-run with 4x the time: still hangs
        assert finding.candidate.verdict is verdict and finding.severity == "crash"

        restarts = runner.worker.restarts
        assert_sin_runs_fine(runner)  # the same runner carries on with a fresh worker
        assert runner.worker.restarts == restarts + 1
        assert_sin_runs_fine(runner)
        assert runner.worker.restarts == restarts + 1
    finally:
        runner.close()


def test_a_slow_trial_is_not_a_hang(tmp_path):
    runner = make_runner(tmp_path / "w.log", timeout=2.0)
    try:
        spec, trial = spec_and_trial("helper_crash_ops:slow_jvp")
        ex = runner.run(trial, spec, ALL)
        assert ex.get("fwd").outcome is Outcome.TIMEOUT
        j = judge(ex, spec, runner)
        assert j.findings == () and j.dismissed == (("slow", 1),)
    finally:
        runner.close()


def test_stdout_of_ops_does_not_corrupt_protocol(tmp_path):
    log = tmp_path / "w.log"
    runner = make_runner(log)
    try:
        spec, trial = spec_and_trial("helper_crash_ops:chatty_sin")
        for _ in range(2):
            ex = runner.run(trial, spec, ALL)
            assert ex.death is None and all(r.outcome is Outcome.OK for r in ex.results)
            np.testing.assert_allclose(ex.get("direct").outputs[0], np.sin(X), rtol=1e-15)
            assert judge(ex, spec, runner).findings == ()
        assert runner.worker.restarts == 0
        assert_sin_runs_fine(runner)
    finally:
        runner.close()
    text = log.read_text()
    assert "CHATTY-PRINT" in text and "CHATTY-FD1" in text  # printed output ends up in the log


def test_memory_limit_turns_allocation_into_one_failed_trial(tmp_path):
    runner = make_runner(tmp_path / "w.log", timeout=20.0, memory_limit_mb=1024)
    try:
        spec, trial = spec_and_trial("helper_crash_ops:hog_sin")
        ex = runner.run(trial, spec, ALL)
        direct = ex.results[0]
        assert direct.scenario == "direct"
        assert (direct.outcome is Outcome.RAISED and "MemoryError" in direct.error.type) or \
            direct.outcome is Outcome.CRASHED, direct
        assert_sin_runs_fine(runner)
    finally:
        runner.close()


def test_differentiated_outputs_subset_runs_in_the_worker(tmp_path):
    # a spec that differentiates only some outputs must run like any other, not kill the worker
    runner = make_runner(tmp_path / "w.log")
    try:
        spec = parse_api(_Ctx("test"), "numpy_ref",
                         {"name": "tanh", "args": [{"name": "x"}], "differentiable_outputs": [0]})
        _, trial = spec_and_trial("tanh")
        trial = Trial(trial.library, trial.api, trial.seed, trial.dtype, trial.inputs, (0,))
        ex = runner.run(trial, spec, ALL)
        assert ex.death is None, ex.death
        assert all(r.outcome is Outcome.OK for r in ex.results), [(r.scenario, r.error) for r in ex.results]
        assert judge(ex, spec, runner).findings == ()
    finally:
        runner.close()


SPEC_FILE = """
library: numpy_ref
apis:
  - name: "helper_crash_ops:segv_vjp"
    args: [{name: x, domain: moderate}]
  - name: sin
    args: [{name: x}]
"""


def test_campaign_survives_segfaults(tmp_path, monkeypatch):
    monkeypatch.chdir(TESTS)  # the campaign puts its working directory on the workers' path
    spec_file = tmp_path / "crash.yaml"
    spec_file.write_text(textwrap.dedent(SPEC_FILE))
    (tmp_path / "no_library_specs").mkdir()
    config = make_config(libraries=["numpy_ref"], apis=["helper_crash_ops:segv_vjp", "sin"],
                         spec_files=[str(spec_file)], spec_dir=str(tmp_path / "no_library_specs"),
                         store_dir=str(tmp_path / "reports"), campaign_dir=str(tmp_path / "campaigns"),
                         trials_per_api=5, trial_timeout_s=3, workers=2)
    from nablafuzz.campaign.inlib import InLibrary
    replayed, replay = [], InLibrary.replay
    monkeypatch.setattr(InLibrary, "replay", lambda self, r: replayed.append(r.fingerprint.verdict) or replay(self, r))
    summary = run_campaign(config)
    # the crash was confirmed in a fresh worker during the campaign: its end does not kill one more
    assert replayed == []
    assert summary.complete and summary.trials == 10 and summary.apis_tried == 2 and summary.apis_valid == 2
    assert dict(summary.deaths) == {"crashed": 5}  # each segfault cost exactly its own trial
    assert summary.fingerprints == 1 and summary.new_reports == 1

    reports, errors = Store(tmp_path / "reports").load_all()
    assert errors == []
    (report,) = reports
    fp = report.fingerprint
    assert (fp.api, fp.verdict, fp.scenarios, fp.error_type) == ("helper_crash_ops:segv_vjp", Verdict.CRASH,
                                                                 ("rev",), "crashed")
    assert report.occurrences == 5
    assert report.minimised_size <= min(1, report.original_size)  # any input crashes: shrunk to one element
    assert "SIGSEGV" in report.evidence.message
    assert not any(r.fingerprint.api == "sin" for r in reports)


def test_an_op_without_float64_kernels_loses_its_references_not_the_worker(tmp_path):
    runner = make_runner(tmp_path / "w.log")
    try:
        spec, trial = spec_and_trial("helper_crash_ops:float32_only_sin")
        trial = Trial(trial.library, trial.api, trial.seed, "float32",
                      (InputValue("x", ArgKind.TENSOR, to_record(np.array(X, dtype=np.float32)), True),))
        ex = runner.run(trial, spec, ALL)
        assert ex.death is None
        assert ex.get("fd").outcome is Outcome.RAISED and "float64" in ex.get("fd").error.message
        assert ex.get("rev").outcome is Outcome.OK
        assert judge(ex, spec, runner).findings == ()  # no reference: nothing to report
    finally:
        runner.close()

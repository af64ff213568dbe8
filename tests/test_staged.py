"""Staged scenarios (Note [staged scenarios]) and signature pools (Note [signature pools]), in the
real JAX and TensorFlow workers: the same numbers as eager, no compilation for a signature seen
before, eager where a kernel cannot be compiled, findings re-established eagerly; and the
standby worker (Note [standby worker])."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helper_adapter import library_runner, run_spec, tensor_input

from nablafuzz.campaign import run_campaign
from nablafuzz.core.config import make_config
from nablafuzz.core.model import Outcome
from nablafuzz.core.quantities import ALL, COMPILED
from nablafuzz.core.tensors import to_array
from nablafuzz.libraries import scenarios_for, staged_for
from nablafuzz.reports.store import Store
from nablafuzz.runtime.process import STANDBYS
from nablafuzz.specs import pool
from nablafuzz.specs.generate import generate, trial_seed
from nablafuzz.specs.spec import load_specs

ROOT = Path(__file__).resolve().parents[1]
SPECS = {"jax": ("jax.numpy.sum", "jax.numpy.tanh", "jax.numpy.matmul", "jax.nn.softmax"),
         "tensorflow": ("tf.reduce_sum", "tf.tanh", "tf.matmul", "tf.keras.activations.softmax")}


def _spec(library, name):
    return next(s for s in load_specs(ROOT / "api_specs", [library]).specs if s.name == name)


def _signature(trial):
    return trial.dtype, tuple((i.name, getattr(i.value, "shape", None), None if hasattr(i.value, "shape") else
                               repr(i.value)) for i in trial.inputs)


def test_pooled_trials_share_few_signatures_with_every_edge_and_fresh_values():
    spec = _spec("jax", "jax.numpy.sum")
    trials = [generate(spec, 5, i, pooled=True) for i in range(200)]
    assert [generate(spec, 5, i, pooled=True) for i in range(20)] == trials[:20]  # regenerates exactly
    signatures = {_signature(t) for t in trials}
    rounds = 200 // pool.ROUND
    assert len(signatures) <= len(pool.EDGES) + pool.ROTATING + rounds
    assert len({_signature(generate(spec, 5, i)) for i in range(200)}) > 2 * len(signatures)  # unpooled: many
    shapes = [to_array(t.inputs[0].value).shape for t in trials]
    assert any(0 in s for s in shapes)                                 # the empty edge
    assert any(all(d == 1 for d in s) for s in shapes)                 # the smallest
    assert max(int(np.prod(s)) for s in shapes) == 64                  # the largest (capped at --max-size)
    same = [t for t in trials if _signature(t) == _signature(trials[0])]
    assert len(same) > 1 and not np.array_equal(to_array(same[0].inputs[0].value), to_array(same[1].inputs[0].value))


def test_the_next_rounds_of_a_campaign_keep_its_pools_first_generation_with_fresh_values():
    """Note [signature pools]: seeds 4-7 (a campaign's next rounds) share the edges and each
    slot's first draw, whose programs the compilation cache then holds; later generations, and
    the next KEEP seeds, draw their own."""
    spec = _spec("jax", "jax.numpy.sum")

    def drawn(seed, indices, edges=True):
        sigs = {pool.signature(seed, spec.id, i, trial_seed(seed, spec.id, i, 0)) for i in indices}
        return {s for s in sigs if edges or not s.edge}
    assert pool.KEEP == 4
    first, later = range(pool.ROTATING * pool.ROUND), range(3 * pool.ROUND, 8 * pool.ROUND)
    assert drawn(5, first) <= drawn(4, range(8 * pool.ROUND)) and drawn(7, first) <= drawn(4, range(8 * pool.ROUND))
    assert len(drawn(5, first, edges=False)) == 2 and {s.edge for s in drawn(5, range(8 * pool.ROUND))} > {""}
    assert not drawn(5, later, edges=False) & drawn(4, later, edges=False)  # later generations: their own
    assert not drawn(8, range(8 * pool.ROUND)) & drawn(4, range(8 * pool.ROUND))  # the next KEEP seeds: their own
    pairs = [(generate(spec, 4, i, pooled=True), generate(spec, 5, i, pooled=True)) for i in first]
    same = [(x, y) for x, y in pairs if _signature(x) == _signature(y)]
    assert same and all(not np.array_equal(to_array(x.inputs[0].value), to_array(y.inputs[0].value))
                        for x, y in same if to_array(x.inputs[0].value).size)


def test_staging_is_on_by_default_for_jax_and_tensorflow_only():
    config = make_config()
    assert staged_for(config, "jax") and staged_for(config, "tensorflow")
    assert not staged_for(config, "torch") and not staged_for(config, "oneflow")
    assert not staged_for(make_config(staged=False), "jax") and staged_for(make_config(staged=True), "torch")


def _close(a, b, dtype):
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= (1e-4 if dtype != "float64" else 1e-9) * (1 + abs(a))


@pytest.mark.parametrize("library", ["jax", "tensorflow"])
def test_staged_scenarios_give_the_eager_numbers_and_compile_each_signature_once(library, tmp_path):
    eager, staged = (library_runner(library, tmp_path / f"{k}.log") for k in ("eager", "staged"))
    staged.staged = True
    config = make_config()
    try:
        for name in SPECS[library]:
            spec = _spec(library, name)
            scenarios = scenarios_for(config, library, spec.capabilities)
            for index in range(6):
                trial = generate(spec, 3, index, pooled=True)
                want, got = eager.run(trial, spec, scenarios), staged.run(trial, spec, scenarios)
                assert [r.scenario for r in want.results] == [r.scenario for r in got.results]
                for w, g in zip(want.results, got.results):
                    assert (w.outcome, w.error and w.error.type) == (g.outcome, g.error and g.error.type), (name, w, g)
                    assert _close(w.value, g.value, trial.dtype), (name, index, w.scenario, w.value, g.value)
            before = staged.compiles
            again = staged.run(trial, spec, scenarios)  # a signature seen before: nothing compiles
            assert staged.compiles == before and all(r.outcome is Outcome.OK for r in again.results)
    finally:
        eager.close()
        staged.close()


@pytest.mark.parametrize("library, api", [("jax", "helper_jax_ops:value_dependent_shape"),
                                          ("tensorflow", "helper_tf_ops:reads_a_value")])
def test_a_kernel_that_cannot_be_compiled_runs_eagerly(library, api, tmp_path):
    """The helpers need values no compiled kernel has (an output shape, a Python branch), so the
    staged runner gives what the eager one gives, with no error."""
    eager, staged = (library_runner(library, tmp_path / f"{k}.log") for k in ("eager", "staged"))
    staged.staged = True
    scenarios = scenarios_for(make_config(), library)
    try:
        for values in ([0.5, 1.5], [-0.5, 0.25]):
            want = run_spec(eager, library, {"name": api, "args": [{"name": "x"}]}, [tensor_input("x", values)],
                            scenarios, "float64", seed=2)[1]
            got = run_spec(staged, library, {"name": api, "args": [{"name": "x"}]}, [tensor_input("x", values)],
                           scenarios, "float64", seed=2)[1]
            assert all(r.outcome is Outcome.OK for r in got.results if r.scenario != COMPILED), got.results
            for w, g in zip(want.results, got.results):
                assert w.outcome is g.outcome and _close(w.value, g.value, "float64"), (w, g)
    finally:
        eager.close()
        staged.close()


def test_a_fused_kernel_that_cannot_be_compiled_runs_its_scenarios_one_by_one(tmp_path):
    """Note [fused kernel alone]: TensorFlow's graph-mode forward-over-forward of clip_by_norm
    raises, so its fused kernel cannot be compiled; the scenarios then run one by one (each its
    own time, where a fused kernel shares its time equally), with eager's numbers."""
    eager, staged = (library_runner("tensorflow", tmp_path / f"{k}.log") for k in ("eager", "staged"))
    staged.staged = True
    spec = _spec("tensorflow", "tf.clip_by_norm")
    scenarios = scenarios_for(make_config(), "tensorflow", spec.capabilities)
    fused = [s for s in scenarios if "." in s and not s.startswith("fd") or s in ("rev", "fwd")]
    try:
        for index in (1, 2):  # the first run of the key finds it cannot be compiled, the second knows
            trial = generate(spec, 3, index, pooled=True)
            want, got = eager.run(trial, spec, scenarios), staged.run(trial, spec, scenarios)
            for w, g in zip(want.results, got.results):
                assert (w.outcome, w.error and w.error.type) == (g.outcome, g.error and g.error.type), (w, g)
                assert _close(w.value, g.value, trial.dtype), (index, w.scenario, w.value, g.value)
            assert len({r.seconds for r in got.results if r.scenario in fused}) > 1, got.results
    finally:
        eager.close()
        staged.close()


def test_a_crash_after_the_fused_scenarios_keeps_their_results_and_is_attributed_to_its_scenario(tmp_path):
    """Note [answers in batches]: the fused AD scenarios' results reach the orchestrator in one
    batch before the references run; the references' crash (float64 only) is theirs."""
    runner = library_runner("jax", tmp_path / "w.log", timeout_s=60.0)
    runner.staged = True
    try:
        spec, ex = run_spec(runner, "jax", {"name": "helper_jax_ops:crashes_in_float64", "args": [{"name": "x"}]},
                            [tensor_input("x", [0.5, -1.5], "float32")], ALL, "float32", seed=2)
        assert [r.scenario for r in ex.results] == ["direct", "rev", "fwd", "fd"]
        assert all(r.outcome is Outcome.OK for r in ex.results[:3]), ex.results
        assert ex.results[3].outcome is Outcome.CRASHED and "SIGSEGV" in ex.results[3].error.message
        assert ex.death is not None and ex.death.kind == "crashed"
    finally:
        runner.close()


PLANTED = '''
import jax


def jit_differs(x):
    """2x eagerly, 3x wherever jax traces it for compilation: a planted jit-only bug."""
    traced = isinstance(x, jax.core.Tracer) and not hasattr(x, "primal")
    return (3.0 if traced else 2.0) * x
'''


def test_findings_of_staged_trials_are_established_eagerly(tmp_path):
    """Staged, the planted function's finite differences (traced) see 3x and its AD modes 2x: a
    judgement of the staged run alone would blame reverse and forward mode.  Re-run eagerly, as
    its repro script runs it, only the compiled scenario `jit` disagrees, and only that is reported."""
    (tmp_path / "planted_jit.py").write_text(PLANTED)
    (tmp_path / "planted.yaml").write_text('library: jax\napis:\n  - name: "planted_jit:jit_differs"\n'
                                           '    args: [{name: x, domain: moderate}]\n')
    os.chdir(ROOT)
    config = make_config("default", libraries=["jax"], apis=["planted_jit:*"], spec_files=[str(tmp_path / "planted.yaml")],
                         store_dir=str(tmp_path / "store"), campaign_dir=str(tmp_path / "campaigns"), workers=1,
                         trials_per_api=4, budget_s=300, seed=1)
    assert staged_for(config, "jax")
    summary = run_campaign(config)
    reports, errors = Store(tmp_path / "store").load_all()
    assert summary.findings and reports and not errors
    assert all(r.fingerprint.scenarios == (COMPILED,) for r in reports), [r.fingerprint for r in reports]


def test_a_restarted_worker_keeps_standbys_that_the_next_restarts_take_over(tmp_path):
    runner = library_runner("numpy_ref", tmp_path / "w.log")
    try:
        runner.worker.ensure()
        assert runner.worker.standbys == []  # none until a worker has been restarted
        runner.restart()
        assert len(runner.worker.standbys) == 1  # one restart (a finding confirmed): one standby
        (standby,) = runner.worker.standbys
        runner.restart()
        assert runner.worker.proc.pid == standby.pid  # the standby took over
        standbys = list(runner.worker.standbys)  # restarted again: a crash class, STANDBYS ahead
        assert len(standbys) == STANDBYS and all(s.poll() is None for s in standbys)
        first = runner.worker.proc.pid
        for standby in standbys:  # a burst of restarts (a crash and its confirmation): each takes one
            runner.restart()
            assert runner.worker.proc.pid == standby.pid != first
            assert len(runner.worker.standbys) == STANDBYS and standby not in runner.worker.standbys
    finally:
        runner.close()
    assert runner.worker.standbys == [] and all(s.poll() is not None for s in standbys)  # closing stops them too


EAGER_ONLY = '''
import tensorflow as tf


@tf.custom_gradient
def eager_gradient_fails(x):
    """2x whose gradient raises when run eagerly, and works inside a tf.function graph."""
    def grad(g):
        if tf.executing_eagerly():
            raise ValueError("this gradient fails eagerly")
        return 2.0 * g
    return 2.0 * x, grad
'''


def test_the_first_trial_of_each_signature_runs_eagerly(tmp_path):
    """Note [eager first]: an error of the eager path only (TensorFlow: a gradient that fails
    eagerly, fine in a graph) is found although the other trials run staged, and stays found."""
    (tmp_path / "planted_tf.py").write_text(EAGER_ONLY)
    (tmp_path / "planted.yaml").write_text('library: tensorflow\napis:\n  - name: "planted_tf:eager_gradient_fails"\n'
                                           '    args: [{name: x, domain: moderate}]\n')
    os.chdir(ROOT)
    config = make_config("default", libraries=["tensorflow"], apis=["planted_tf:*"],
                         spec_files=[str(tmp_path / "planted.yaml")], store_dir=str(tmp_path / "store"),
                         campaign_dir=str(tmp_path / "campaigns"), workers=1, trials_per_api=3, budget_s=300, seed=1,
                         scenarios=["direct", "rev", "fd"])
    assert staged_for(config, "tensorflow")
    run_campaign(config)
    reports, errors = Store(tmp_path / "store").load_all()
    found = [r for r in reports if r.fingerprint.verdict.value == "status_mismatch" and "rev" in r.fingerprint.scenarios]
    assert not errors and found, [r.fingerprint for r in reports]
    # the campaign's end replays it eagerly, as it was found (Note [finishing budget]): staged,
    # the gradient works, and the replay called the report flaky
    assert [r.status.value for r in found] == ["new"], [(r.status, r.notes) for r in found]


def test_a_cross_trial_runs_eagerly_first_only_where_the_eager_path_differs(tmp_path, monkeypatch):
    """Note [eager first] in a --cross campaign: the first trial of a signature runs eagerly in
    TensorFlow (whose eager path differs) and staged in JAX (whose eager path compiles every
    primitive on its own); torch is never staged."""
    from nablafuzz.runtime.runner import Runner
    ran = []
    run = Runner.run

    def recording(self, trial, spec, scenarios):
        ran.append((self.runtime.library, self.staged))
        return run(self, trial, spec, scenarios)
    monkeypatch.setattr(Runner, "run", recording)
    os.chdir(ROOT)
    config = make_config("default", libraries=["torch", "jax", "tensorflow"], apis=["sin"], cross=True,
                         store_dir=str(tmp_path / "store"), campaign_dir=str(tmp_path / "campaigns"), workers=1,
                         trials_per_api=1, budget_s=300, seed=3, scenarios=["direct", "rev"])
    assert staged_for(config, "jax") and staged_for(config, "tensorflow")
    run_campaign(config)
    assert dict(ran) == {"torch": False, "tensorflow": False, "jax": True} and len(ran) == 3, ran


def test_jax_workers_share_a_persistent_compilation_cache(tmp_path, monkeypatch):
    """Note [persistent compilation cache]: what one JAX worker compiled, a later worker loads
    (no entry is written twice), with the same numbers, also from a copy of the cache elsewhere;
    a user's own cache directory wins."""
    from nablafuzz.runtime import registry
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setattr(registry, "state_dir", lambda: tmp_path / "home")
    cache = tmp_path / "home" / "jax-compilation-cache" / "jax"
    spec = _spec("jax", "jax.numpy.tanh")
    scenarios = scenarios_for(make_config(), "jax", spec.capabilities)
    trials = [generate(spec, 5, index, pooled=True) for index in range(4)]
    runs, entries = [], []
    for k in ("first", "second", "moved"):
        if k == "moved":  # the same cache under another NABLAFUZZ_HOME
            shutil.copytree(tmp_path / "home", tmp_path / "moved")
            monkeypatch.setattr(registry, "state_dir", lambda: tmp_path / "moved")
            cache = tmp_path / "moved" / "jax-compilation-cache" / "jax"
        runner = library_runner("jax", tmp_path / f"{k}.log")
        runner.staged = True
        try:
            runs.append([[r.value for r in runner.run(t, spec, scenarios).results] for t in trials])
        finally:
            runner.close()
        entries.append(sorted(p.name for p in cache.iterdir()) if cache.exists() else [])
    assert entries[0], "the first worker's compilations are on disk"
    assert entries[1] == entries[0], "the second worker compiled nothing new: it loaded them"
    assert entries[2] == entries[0], "the moved cache's keys do not name where it lies"
    assert runs[0] == runs[1] == runs[2]
    assert registry.compilation_cache_env("torch", "torch") == ()
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert dict(registry.compilation_cache_env("jax", "jax")) == {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                                                                  "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES": "none"}


def test_the_compilation_cache_is_pruned_to_its_bound_least_recently_used_first(tmp_path, monkeypatch):
    """Note [persistent compilation cache]: JAX runs it unbounded (a bound made it scan the
    cache at every write); each campaign prunes it once, the oldest entries first."""
    from nablafuzz.runtime import registry
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_MAX_SIZE", raising=False)
    monkeypatch.setattr(registry, "state_dir", lambda: tmp_path)
    monkeypatch.setattr(registry, "CACHE_BYTES", 250)
    cache = tmp_path / "jax-compilation-cache" / "jax"
    cache.mkdir(parents=True)
    for age, name in enumerate(["newest", "recent", "old", "oldest"]):
        f = cache / f"{name}-cache"
        f.write_bytes(b"x" * 100)
        os.utime(f, (1e9 - 100 * age, 1e9 - 100 * age))
    os.utime(cache / "oldest-cache", (2e9, 1e9 - 300))  # read lately: recently used
    env = dict(registry.compilation_cache_env("jax", "jax"))
    assert "JAX_COMPILATION_CACHE_MAX_SIZE" not in env and env["JAX_COMPILATION_CACHE_DIR"] == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == ["newest-cache", "oldest-cache"]
    (cache / "more-cache").write_bytes(b"x" * 100)
    registry.compilation_cache_env("jax", "jax")
    assert len(list(cache.iterdir())) == 3, "once per campaign (process), not at every worker start"


HANGS_IN_A_GRAPH = '''
import tensorflow as tf


def hangs_in_a_graph(x):
    """sin, whose trace never ends: a tf.function of it hangs, the eager call does not."""
    while not tf.executing_eagerly():
        pass
    return tf.sin(x)
'''


def test_a_staged_trial_that_times_out_is_not_re_run_staged(tmp_path, monkeypatch):
    """Note [staged findings]: a staged trial that timed out goes to its eager run unjudged, with
    no staged re-run for the slow filter (four times the timeout); eagerly it completes, and
    nothing is reported."""
    from nablafuzz.runtime.runner import Runner
    (tmp_path / "planted_hang.py").write_text(HANGS_IN_A_GRAPH)
    (tmp_path / "planted.yaml").write_text('library: tensorflow\napis:\n  - name: "planted_hang:hangs_in_a_graph"\n'
                                           '    args: [{name: x, domain: moderate}]\n')
    runs, run = [], Runner.run

    def recording(self, trial, spec, scenarios, timeout_s=None):
        ex = run(self, trial, spec, scenarios, timeout_s)
        runs.append((self.staged, timeout_s or self.timeout_s, ex.timed_out))
        return ex
    monkeypatch.setattr(Runner, "run", recording)
    os.chdir(ROOT)
    config = make_config("default", libraries=["tensorflow"], apis=["planted_hang:*"],
                         spec_files=[str(tmp_path / "planted.yaml")], store_dir=str(tmp_path / "store"),
                         campaign_dir=str(tmp_path / "campaigns"), workers=1, trials_per_api=3, budget_s=300, seed=1,
                         scenarios=["direct", "rev", "fd"], trial_timeout_s=3.0)
    summary = run_campaign(config)
    staged = [r for r in runs if r[0]]
    assert staged and all(timed_out for _, _, timed_out in staged), runs  # the staged trials hung
    assert all(limit == 3.0 for _, limit, _ in staged), runs  # and none was re-run staged for longer
    assert not any(timed_out for s, _, timed_out in runs if not s), runs  # eagerly it completes
    assert summary.complete and not summary.findings and not Store(tmp_path / "store").load_all()[0]

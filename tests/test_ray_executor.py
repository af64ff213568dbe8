"""`campaign --executor ray` on one machine (a private Ray cluster, loopback only, 2 CPUs, no
dashboard): the same report keys and occurrence counts as worker threads, with an actor killed
mid-run, and after the driver is killed and the command re-run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from helper_kill import kill_mid_run
from nablafuzz.campaign import run_campaign
from nablafuzz.core.config import make_config
from nablafuzz.reports.store import Store

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "tests" / "specs" / "broken.yaml"
TRIALS = 12


def _config(tmp: Path, **kw):
    base = dict(libraries=["numpy_ref"], spec_dir=str(ROOT / "api_specs"), spec_files=[str(BROKEN)],
                store_dir=str(tmp / "store"), campaign_dir=str(tmp / "campaigns"), workers=2, seed=7,
                trials_per_api=TRIALS, budget_s=600, api_budget_s=120, name="ray-test")
    base.update(kw)
    return make_config("default", **base)


def _counts(store: Path):
    reports, errors = Store(store).load_all()
    assert not errors
    return {r.key: r.occurrences for r in reports}


def _logged(campaigns: Path):
    lines = (campaigns / "ray-test" / "observations.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def threaded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("threads")
    os.chdir(ROOT)
    run_campaign(_config(tmp))
    counts = _counts(tmp / "store")
    assert len(counts) == 6, "the broken ops' six root causes"
    return counts


def _actors():
    """Pids of the Ray actor processes running campaign shards."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ray::ShardWorker" in (proc / "cmdline").read_bytes():
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def test_ray_gives_the_reports_threads_give_even_with_an_actor_killed(tmp_path, threaded):
    killed = []

    def progress(obs):
        if len(killed) == 0 and progress.n == 60:  # mid-run: kill one actor's process
            pids = _actors()
            assert pids, "the actors run as Ray worker processes"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        progress.n += 1
    progress.n = 0

    summary = run_campaign(_config(tmp_path, executor="ray"), progress)
    assert summary.complete
    assert killed
    assert _counts(tmp_path / "store") == threaded
    keys = Counter((o["api"], o["index"]) for o in _logged(tmp_path / "campaigns"))
    assert len(keys) == 30 * TRIALS and max(keys.values()) == 1, "every trial logged exactly once"
    assert "Ray actor lost" in (tmp_path / "campaigns" / "ray-test" / "engine-errors.log").read_text()


def test_killing_the_driver_and_rerunning_resumes(tmp_path, threaded):
    cmd = [sys.executable, "-m", "nablafuzz", "campaign", "-l", "numpy_ref", "--specs", str(BROKEN),
           "--trials", str(TRIALS), "--store", str(tmp_path / "store"), "--campaign-dir", str(tmp_path / "campaigns"),
           "--name", "ray-test", "--seed", "7", "--executor", "ray"]
    killed_at = kill_mid_run(cmd, ROOT, tmp_path / "campaigns" / "ray-test" / "observations.jsonl", 100)
    assert 0 < killed_at < 30 * TRIALS, "the kill must land mid-campaign"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    keys = Counter((o["api"], o["index"]) for o in _logged(tmp_path / "campaigns"))
    assert len(keys) == 30 * TRIALS and max(keys.values()) == 1, "every trial logged exactly once"
    assert _counts(tmp_path / "store") == threaded


def test_a_cluster_without_the_runtime_resource_is_a_clear_error(tmp_path):
    from nablafuzz.campaign.distributed import RayExecutor, resource
    from nablafuzz.campaign.inlib import InLibrary
    from nablafuzz.campaign.loop import Campaign
    from nablafuzz.core.errors import ConfigError
    from nablafuzz.specs.spec import load_specs
    import ray
    config = _config(tmp_path, executor="ray")
    specs = load_specs(Path(config.spec_dir), config.libraries, [BROKEN])
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with pytest.raises(ConfigError, match=resource("numpy_ref") + ".*ray start --resources"):
            RayExecutor(Campaign(config, specs, InLibrary), [], set())
    finally:
        ray.shutdown()


def test_a_private_cluster_keeps_to_loopback(tmp_path):
    from nablafuzz.campaign.distributed import RayExecutor
    from nablafuzz.campaign.inlib import InLibrary
    from nablafuzz.campaign.loop import Campaign
    from nablafuzz.specs.spec import load_specs
    config = _config(tmp_path, executor="ray")
    specs = load_specs(Path(config.spec_dir), config.libraries, [BROKEN])
    executor = RayExecutor(Campaign(config, specs, InLibrary), [], set())
    import ray  # after: a private cluster sets Ray's loopback switch before Ray is first imported
    try:
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        assert ray.cluster_resources().get("CPU") == max(2, os.cpu_count() or 1)
    finally:
        executor.close()
    assert not ray.is_initialized()

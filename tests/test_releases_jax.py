"""A release-vs-release campaign between two real JAX releases: jax 0.8.0 (built next to the
default runtime by `nablafuzz install --only jax@0.8.0`, ~15 s) against the default jax.

jax.scipy.linalg.rsf2csf gained batch dimensions between them: 0.8.0 raises "Input 'T' must be
square" on a stack of matrices that the newer release converts (checked by hand in both
interpreters).  The campaign must report that as `fixed`, replay it against both runtimes, and
report nothing for an API whose results did not change."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from nablafuzz.campaign import run_campaign
from nablafuzz.campaign.releases import ReleaseReplayer
from nablafuzz.core.config import make_config
from nablafuzz.core.model import Verdict
from nablafuzz.reports.replay import ReplayOutcome
from nablafuzz.reports.store import Store
from nablafuzz.reports.triage import render_triage
from nablafuzz.runtime.install import install
from nablafuzz.specs.spec import load_specs

ROOT = Path(__file__).resolve().parents[1]
OLD = "jax@0.8.0"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    install([OLD], log=lambda line: None)  # the default home, as a user builds it; up to date after once
    tmp = tmp_path_factory.mktemp("releases")
    os.chdir(ROOT)
    config = make_config("default", libraries=["jax"], versions=[OLD, "jax"], spec_dir=str(ROOT / "api_specs"),
                         apis=["jax.scipy.linalg.rsf2csf", "jax.numpy.tanh"], trials_per_api=6, budget_s=600,
                         api_budget_s=300, workers=1, seed=0, store_dir=str(tmp / "store"),
                         campaign_dir=str(tmp / "campaigns"))
    summary = run_campaign(config)
    reports, errors = Store(tmp / "store").load_all()
    assert not errors
    return summary, reports, tmp


def test_the_batching_rsf2csf_gained_is_reported_as_fixed(campaign):
    summary, reports, _ = campaign
    assert summary.complete
    assert [r.fingerprint.api for r in reports] == ["jax.scipy.linalg.rsf2csf"], "tanh did not change"
    (r,) = reports
    fp = r.fingerprint
    assert (fp.verdict, fp.error_type, fp.releases, fp.scenarios) == (Verdict.RELEASE_CHANGE, "fixed", (OLD, "jax"), ("direct",))
    assert "must be square" in r.evidence.message
    assert {"jax 0.8.0", "jax 0.10.2"} <= set(r.versions_seen), "both releases in the evidence"
    assert summary.releases == ((f"{OLD}..jax", 0, 1, 0),)


def test_the_report_replays_against_both_runtimes(campaign):
    _, (report,), _ = campaign
    spec = next(s for s in load_specs(ROOT / "api_specs", ["jax"], []).specs if s.name == report.fingerprint.api)
    replayer = ReleaseReplayer([str(ROOT)])
    try:
        result = replayer.replay(report, spec)
    finally:
        replayer.close()
    assert result.outcome is ReplayOutcome.REPRODUCED
    assert {"jax 0.8.0", "jax 0.10.2"} <= set(result.versions)


def test_triage_lists_the_change_under_its_release_pair(campaign):
    _, (report,), tmp = campaign
    text = render_triage(tmp / "store", tmp / "triage.md", ROOT / "api_specs")
    assert f"### {OLD} → jax: 0 new, 1 fixed, 0 changed" in text
    assert (tmp / "triage" / f"release-{report.key}.md").exists()

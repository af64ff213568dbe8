"""A release-vs-release campaign between two real JAX releases: jax 0.6.0 (built next to the
default runtime by `nablafuzz install --only jax@0.6.0`, ~15 s) against the default jax 0.10.2.

Two changes between them, checked by hand in both interpreters: the derivative of
jax.numpy.frexp's mantissa was 0 in 0.6.0 (grad and jvp at -0.08: 0.0; finite differences and
0.10.2: 8.0), and jax.scipy.linalg.rsf2csf gained batch dimensions (0.6.0 raises "Input 'T'
must be square" on a stack of matrices).  The campaign must report both as `fixed`, the first
from the derivative modes with the finite-difference reference deciding, replay them against
both runtimes, and report nothing for an API whose results did not change (tanh)."""
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
OLD = "jax@0.6.0"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    install([OLD], log=lambda line: None)  # the default home, as a user builds it; up to date after once
    tmp = tmp_path_factory.mktemp("releases")
    os.chdir(ROOT)
    config = make_config("default", libraries=["jax"], versions=[OLD, "jax"], spec_dir=str(ROOT / "api_specs"),
                         apis=["jax.numpy.frexp", "jax.scipy.linalg.rsf2csf", "jax.numpy.tanh"], trials_per_api=6, budget_s=600,
                         api_budget_s=300, workers=1, seed=0, store_dir=str(tmp / "store"),
                         campaign_dir=str(tmp / "campaigns"))
    summary = run_campaign(config)
    reports, errors = Store(tmp / "store").load_all()
    assert not errors
    return summary, reports, tmp


def test_the_frexp_derivative_fix_and_rsf2csf_batching_are_reported_as_fixed(campaign):
    summary, reports, _ = campaign
    assert summary.complete
    by_api = {r.fingerprint.api: r for r in reports}
    assert sorted(by_api) == ["jax.numpy.frexp", "jax.scipy.linalg.rsf2csf"], "tanh did not change"
    frexp, rsf = by_api["jax.numpy.frexp"].fingerprint, by_api["jax.scipy.linalg.rsf2csf"].fingerprint
    assert (frexp.verdict, frexp.error_type, frexp.releases, frexp.order) == (Verdict.RELEASE_CHANGE, "value", (OLD, "jax"), 1)
    assert set(frexp.scenarios) == {"fwd", "rev"}
    assert (rsf.error_type, rsf.scenarios) == ("works", ("direct",))
    assert "must be square" in by_api["jax.scipy.linalg.rsf2csf"].evidence.message
    for r in reports:
        assert {"jax 0.6.0", "jax 0.10.2"} <= set(r.versions_seen), "both releases in the evidence"
    assert summary.releases == ((f"{OLD}..jax", 0, 2, 0),), "frexp: fixed where finite differences decide"


def test_the_reports_replay_against_both_runtimes(campaign):
    _, reports, _ = campaign
    specs = {s.name: s for s in load_specs(ROOT / "api_specs", ["jax"], []).specs}
    replayer = ReleaseReplayer([str(ROOT)])
    try:
        results = [replayer.replay(r, specs[r.fingerprint.api]) for r in reports]
    finally:
        replayer.close()
    assert [x.outcome for x in results] == [ReplayOutcome.REPRODUCED] * len(reports)
    assert all({"jax 0.6.0", "jax 0.10.2"} <= set(x.versions) for x in results)


def test_triage_lists_the_changes_under_their_release_pair(campaign):
    _, reports, tmp = campaign
    text = render_triage(tmp / "store", tmp / "triage.md", ROOT / "api_specs")
    assert f"### {OLD} → jax: 0 new, 2 fixed, 0 changed" in text
    assert all((tmp / "triage" / f"release-{r.key}.md").exists() for r in reports)

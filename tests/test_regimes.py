"""Value regimes: edges learnt by probing, trials drawn at them, and bugs only they reach."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.campaign import run_campaign
from nablafuzz.cli import derive_regimes
from nablafuzz.core.config import make_config
from nablafuzz.core.errors import SpecError
from nablafuzz.reports.store import Store
from nablafuzz.specs.generate import generate
from nablafuzz.specs.regimes import REGIMES, draw, find_edges, load_edges
from nablafuzz.specs.spec import _Ctx, load_specs, parse_api

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def _numpy(f, dtype):
    def evaluate(x):
        with np.errstate(all="ignore"):
            return f(np.asarray(x, dtype=dtype)).astype(np.float64)
    return evaluate


@pytest.mark.parametrize("f, dtype, want", [
    (np.exp, "float64", (-708.3964, 709.7827)),
    (np.exp, "float32", (-87.3365, 88.7228)),
    (lambda x: 1 / (1 + np.exp(-x)), "float64", (-708.3964, 26.2826)),  # and where it saturates (a flat branch)
    (lambda x: np.clip(x, -1, 1), "float64", (-1.0, 1.0)),  # hardtanh's corners: branch changes
    (lambda x: np.minimum(np.maximum(x, 0), 6), "float32", (6.0,)),  # relu6 (its corner at 0 is a special point)
    (np.sin, "float64", ()),  # an oscillation, not branches
    (np.log1p, "float64", (-1.0,)),
    (np.sqrt, "float64", ()),  # NaN below 0 at 0 itself: no edge between grid neighbours of one sign
])
def test_edges_are_found_where_the_output_changes_class(f, dtype, want):
    got = find_edges(_numpy(f, dtype), dtype)
    assert len(got) == len(want) and all(abs(g - w) <= 1e-4 * abs(w) for g, w in zip(got, want)), got


def test_each_regime_draws_what_it_names():
    rng = np.random.default_rng(0)
    typical = rng.standard_normal((3, 4))
    edges = (("float64", (709.78,)),)
    x = {r: draw(r, rng, (3, 4), "float64", edges, typical) for r in REGIMES}
    near = np.abs(x["edge"] / 709.78 - 1) <= 2 ** -4
    assert near.any() and np.all(near | (x["edge"] == typical))  # some at the edge, the others ordinary
    assert set(np.unique(x["special"])) <= {0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.5, 10.0}
    assert np.all((np.abs(x["tiny"]) >= np.finfo(np.float64).tiny) & (np.abs(x["tiny"]) <= 1e-8))
    assert np.all(np.abs(x["large"]) <= 709.78) and np.all(np.abs(x["large"]) >= 10)
    assert len(np.unique(x["ties"])) == 1 and np.any(x["zeros"] == 0)


def test_share_of_trials_in_a_regime_and_the_others_unchanged():
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "exp", "args": [{"name": "x"}]})
    plain = [generate(spec, 4, i) for i in range(200)]
    mixed = [generate(spec, 4, i, regime_share=0.3) for i in range(200)]
    assert all(t.regime == "" for t in plain)
    drawn = [t for t in mixed if t.regime]
    assert 30 <= len(drawn) <= 90 and {t.regime for t in drawn} <= set(REGIMES) - {"edge"}  # no edges known
    assert all(m == p for m, p in zip(mixed, plain) if not m.regime)


def test_malformed_edges_file_is_a_spec_error(tmp_path):
    path = tmp_path / "regimes.yaml"
    path.write_text("edges:\n  numpy_ref:exp: {float64: [.inf]}\n")
    with pytest.raises(SpecError, match="regimes.yaml"):
        load_edges(path)


def test_bug_only_near_an_edge_is_found_and_its_twin_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(tmp_path)
    spec_dir = tmp_path / "specs"
    (spec_dir / "numpy_ref").mkdir(parents=True)
    user = tmp_path / "user.yaml"
    user.write_text('library: numpy_ref\napis:\n  - {name: "helper_regime_ops:log_edge_bug", args: [{name: x}]}\n'
                    '  - {name: "helper_regime_ops:log_edge", args: [{name: x}]}\n')
    assert derive_regimes(spec_dir, "numpy_ref", ["helper_regime_ops:*"], False, [user]) == 2  # the real probe
    (bug,) = [s for s in load_specs(spec_dir, ["numpy_ref"], [user]).specs if s.name.endswith("edge_bug")]
    assert any(abs(p - 1000) < 1e-3 for p in dict(bug.edges)["float64"])

    def campaign(share, name):
        store = tmp_path / f"store-{name}"
        run_campaign(make_config("default", libraries=["numpy_ref"], apis=["helper_regime_ops:*"],
                                 spec_files=[str(user)], spec_dir=str(spec_dir), store_dir=str(store),
                                 campaign_dir=str(tmp_path / "c"), workers=1, trials_per_api=80, budget_s=300,
                                 regime_share=share, name=name))
        reports, errors = Store(store).load_all()
        assert not errors
        return reports
    found = campaign(0.6, "regimes")
    assert [r.fingerprint.api for r in found] == ["helper_regime_ops:log_edge_bug"]
    assert campaign(0.0, "plain") == []  # the domain's values never get there


def test_summary_counts_trials_and_findings_per_regime(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = run_campaign(make_config("default", libraries=["numpy_ref"], apis=["exp", "log1p"],
                                       spec_dir=str(ROOT / "api_specs"), store_dir=str(tmp_path / "s"),
                                       campaign_dir=str(tmp_path / "c"), workers=1, trials_per_api=30,
                                       regime_share=0.5))
    rows = {r: (t, v, f) for r, t, v, f in summary.regimes}
    assert sum(t for t, _, _ in rows.values()) == summary.trials == 60
    assert "" in rows and len(rows) >= 4 and set(rows) <= {""} | set(REGIMES)
    assert any(line.startswith("value regimes (trials / valid / findings): domain ") for line in summary.lines())
    log = next((tmp_path / "c").iterdir()) / "observations.jsonl"
    assert '"regime": "' in log.read_text()

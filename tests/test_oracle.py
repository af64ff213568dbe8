"""The oracle's side (issue: references and scenarios): non-finite derivatives and errors in
undeclared modes are found, their correct twins are not."""
from __future__ import annotations

import os
from pathlib import Path

from nablafuzz.campaign import run_campaign
from nablafuzz.config import make_config
from nablafuzz.model import Verdict
from nablafuzz.store import Store

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def _campaign(tmp_path, monkeypatch, api, extra="", trials=12, regime_share=0.25):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / f"{api}.yaml"
    spec.write_text(f'library: numpy_ref\napis:\n  - name: "helper_oracle_ops:{api}"\n    args: [{{name: x}}]\n{extra}')
    store = tmp_path / f"store-{api}"
    summary = run_campaign(make_config("default", libraries=["numpy_ref"], apis=["helper_oracle_ops:*"],
                                       spec_files=[str(spec)], spec_dir=str(ROOT / "api_specs"), store_dir=str(store),
                                       campaign_dir=str(tmp_path / "c"), workers=1, trials_per_api=trials,
                                       budget_s=300, name=api, regime_share=regime_share))
    reports, errors = Store(store).load_all()
    assert not errors
    return reports, summary


def test_a_nan_derivative_at_a_smooth_point_is_one_report(tmp_path, monkeypatch):
    (report,), _ = _campaign(tmp_path, monkeypatch, "square_nan_at_integers", trials=30)
    assert report.fingerprint.verdict is Verdict.NONFINITE_DERIVATIVE and "rev" in report.fingerprint.scenarios
    assert _campaign(tmp_path / "twin", monkeypatch, "square", trials=30)[0] == []


DECLARED = "    capabilities: [rev, rev.rev, fwd.rev, rev.fwd, fwd.fwd]\n    unsupported: [fwd]\n"


def test_an_internal_error_in_an_undeclared_mode_is_one_report(tmp_path, monkeypatch):
    (report,), _ = _campaign(tmp_path, monkeypatch, "square_fwd_internal_error", DECLARED)
    assert report.fingerprint.verdict is Verdict.STATUS_MISMATCH and report.fingerprint.scenarios == ("fwd",)
    assert "does not declare" in report.evidence.message
    # "not implemented" in the library's own words, where the spec says unsupported: nothing
    assert _campaign(tmp_path / "twin", monkeypatch, "square_fwd_not_implemented", DECLARED)[0] == []

"""Trial validity: trials compare non-empty derivatives.  Empty tensors are a trial-level choice
of the generator, `specs check` fails on a spec whose trials are mostly empty, the campaign
summary counts empty trials apart from valid ones, and torch derivation grows specs whose
OpInfo samples are all empty."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from nablafuzz.campaign import run_campaign
from nablafuzz.campaign.stats import Observation
from nablafuzz.cli import main
from nablafuzz.core.config import make_config
from nablafuzz.core.errors import SpecError
from nablafuzz.core.model import ApiSpec, ArgKind, ArgSpec, records
from nablafuzz.derive.specsource import MIN_NON_EMPTY, list_specs, non_empty_share
from nablafuzz.runtime.process import WorkerProcess
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.specs.generate import EMPTY_TRIALS, generate

ROOT = Path(__file__).resolve().parents[1]


def _empty_dims(trial) -> bool:
    return any(0 in r.shape for i in trial.inputs for r in records(i.value))


# ---- the generator ---------------------------------------------------------------------------

FREE = ApiSpec("numpy_ref", "free", (ArgSpec("x", ArgKind.TENSOR, rank=(1, 3)),
                                     ArgSpec("y", ArgKind.TENSOR, dims=("n", "m")),
                                     ArgSpec("s", ArgKind.SHAPE, rank=(1, 3))))


def test_zero_sized_dims_come_only_from_the_trials_that_choose_them():
    trials = [generate(FREE, 7, i) for i in range(3000)]
    chosen = [t.seed % 10_000 < EMPTY_TRIALS * 10_000 for t in trials]
    with_zero = [_empty_dims(t) or 0 in next(i.value for i in t.inputs if i.name == "s") for t in trials]
    assert not any(z and not c for z, c in zip(with_zero, chosen)), "a zero-sized dim outside an empty trial"
    assert 0.01 < sum(chosen) / len(trials) < 0.05
    assert sum(with_zero) > 0.5 * sum(chosen)  # the chosen trials do draw empty tensors
    assert generate(FREE, 7, 11) == generate(FREE, 7, 11)  # still deterministic per (seed, spec, index)


def test_a_free_shaped_spec_is_non_empty_in_nearly_every_trial():
    assert non_empty_share(FREE, 400) >= 0.97


# ---- specs check -----------------------------------------------------------------------------

def test_every_committed_spec_generates_non_empty_inputs():
    """The acceptance: `nablafuzz specs check` passes, every spec at >= 90% (it raises otherwise)."""
    lines = list(list_specs(ROOT / "api_specs", None, check_only=True))
    summaries = [line for line in lines if "generated trials have a non-empty differentiable input" in line]
    assert {line.split(":")[0] for line in summaries} >= {"numpy_ref", "torch", "jax", "tensorflow", "oneflow"}
    assert all(line.endswith(f"0 specs under {MIN_NON_EMPTY:.0%}") for line in summaries), summaries


PLANTED = """\
library: numpy_ref
apis:
  - name: sin
    args: [{name: x, dims: ['0']}]
  - name: cos
    args: [{name: x}]
  - name: tanh
    args: [{name: x, dims: ['3', '0']}]
    overloads:
      - [{name: x, dims: ['3']}]
"""


def test_specs_check_fails_naming_the_spec_whose_only_sample_is_empty(tmp_path, capsys):
    (tmp_path / "numpy_ref").mkdir()
    (tmp_path / "numpy_ref" / "planted.yaml").write_text(PLANTED)
    code = main(["specs", "check", "--spec-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert "numpy_ref:sin (0%)" in err and "fix:" in err and "specs derive" in err
    assert "numpy_ref:tanh (" in err  # one overload of two is empty: about half its trials
    assert "numpy_ref:cos" not in err
    assert "  numpy_ref:sin: 0% (" in out and "2 specs under 90%" in out
    with pytest.raises(SpecError, match="numpy_ref:sin"):
        list(list_specs(tmp_path, "numpy_ref", check_only=True))


# ---- campaign statistics ---------------------------------------------------------------------

EMPTY_OPS = """\
import numpy as np
from nablafuzz.libraries.numpy_ref.adapter import unary

square = unary(np.square, lambda x: 2 * x, lambda x: 2 + 0 * x)
"""

EMPTY_SPECS = """\
library: numpy_ref
apis:
  - name: "empty_ops:square"
    args: [{name: x, dims: ['0']}]
"""


def test_summary_counts_trials_with_only_empty_inputs_apart(tmp_path):
    (tmp_path / "empty_ops.py").write_text(EMPTY_OPS)
    (tmp_path / "empty.yaml").write_text(EMPTY_SPECS)
    os.chdir(ROOT)
    config = make_config("default", libraries=["numpy_ref"], spec_dir=str(ROOT / "api_specs"),
                         store_dir=str(tmp_path / "store"), campaign_dir=str(tmp_path / "campaigns"), workers=1,
                         seed=3, spec_files=[str(tmp_path / "empty.yaml")], apis=["empty_ops:*", "sin"],
                         trials_per_api=6, budget_s=300, api_budget_s=120)
    summary = run_campaign(config)
    assert summary.complete and summary.trials == 12
    assert summary.empty == 6 and summary.valid >= 5  # sin: non-empty in nearly every trial
    assert any(line.startswith("empty trials") and line.endswith(": 6") for line in summary.lines())
    assert any(a.startswith("numpy_ref:empty_ops:square: only empty derivatives") for a in summary.invalid_apis)
    folder = next((tmp_path / "campaigns").iterdir())
    assert json.loads((folder / "summary.json").read_text())["empty_trials"] == 6
    obs = [json.loads(line) for line in (folder / "observations.jsonl").read_text().splitlines()]
    square = [o for o in obs if o["api"] == "numpy_ref:empty_ops:square"]
    assert len(square) == 6 and all(o["empty"] and not o["valid"] for o in square)


def test_an_observation_logged_before_empty_existed_reads_as_not_empty():
    obs = Observation("numpy_ref:sin", 0, "k", "float64", True, 0, (), (), (), 0.1)
    old = obs.to_json()
    del old["empty"]
    assert Observation.from_json(old) == obs and not obs.empty
    assert Observation.from_json(replace(obs, valid=False, empty=True).to_json()).empty


# ---- torch derivation ------------------------------------------------------------------------

def _derive_in_torch(apis) -> dict:
    """torch_specs.derive for these API globs, run in the torch runtime's interpreter."""
    runtime = resolve_runtime("torch")
    env = WorkerProcess(runtime, Path(os.devnull))._env()
    code = ("import json, sys; from nablafuzz.libraries.torch.specs import derive; "
            f"print(json.dumps(derive({list(apis)!r})))")
    proc = subprocess.run([runtime.python, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def derived():
    out = _derive_in_torch(["torch.flip", "torch.mm"])
    return {a["name"]: a for a in out["apis"]}


def test_a_spec_whose_samples_are_all_empty_is_grown(derived):
    # every OpInfo sample of flip within 128 elements is [5, 0, 10]: grown, it is [5, 2, 10]
    structures = [derived["torch.flip"]["args"]] + derived["torch.flip"].get("overloads", [])
    assert len(structures) == 3
    for args in structures:
        x = args[0]
        assert x["dims"] and "0" not in x["dims"] and x["differentiable"]
        assert "values" not in x  # a grown sample's values are not seeds


def test_non_empty_samples_are_preferred(derived):
    structures = [derived["torch.mm"]["args"]] + derived["torch.mm"].get("overloads", [])
    for args in structures:
        for a in args:
            assert "0" not in a["dims"] and len(a["values"]) > 0  # OpInfo's own values, as seeds

"""`nablafuzz modelfuzz`: model specs, coverage, the fuzz loop, and the real libraries on the
shipped and planted models (tests/models/)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.cli import main
from nablafuzz.core.errors import RefusedError, SpecError
from nablafuzz.modelfuzz.client import Batch, ModelClient
from nablafuzz.modelfuzz.coverage import FAISS_FROM, Neighbours, auto_threshold
from nablafuzz.modelfuzz.findings import minimise
from nablafuzz.modelfuzz.loop import Hit, Settings, fuzz
from nablafuzz.modelfuzz.replay import model_spec_for
from nablafuzz.modelfuzz.run import confident_rtol, cross_evaluate
from nablafuzz.reports.modelrepro import render_model
from nablafuzz.reports.store import read_report
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.specs.models import MODELS_FILE, load_model_specs

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / MODELS_FILE
PLANTED = ROOT / "tests/models/models.yaml"


# ---- specs -------------------------------------------------------------------------------

def test_shipped_model_specs_load():
    specs = load_model_specs([SHIPPED])
    assert {"digits_unsafe", "digits_safe", "keras_digits"} <= set(specs)
    assert set(specs["keras_digits"].libraries) == {"jax", "torch", "tensorflow"}
    assert specs["digits_unsafe"].builder("torch") == "digits:build_torch"
    assert specs["digits_unsafe"].api == "model:digits_unsafe"
    assert (specs["digits_unsafe"].sigma, specs["digits_safe"].sigma) == (0.5, 0.2), "a model's own mutation size"


@pytest.mark.parametrize("entry, field", [
    ("- {name: m, build: {torch: 'os.system'}}", "build.torch"),
    ("- {name: m, build: {torch: 'a:b'}, input_range: [1, 0]}", "input_range"),
    ("- {name: 'bad name', build: {torch: 'a:b'}}", "name"),
    ("- {name: m, build: {torch: 'a:b'}, colour: red}", "colour"),
    ("- {name: m}", "build"),
    ("- {name: m, build: {torch: 'a:b'}, sigma: 0}", "sigma"),
])
def test_bad_model_spec_names_file_field_and_fix(tmp_path, entry, field):
    path = tmp_path / "m.yaml"
    path.write_text("models:\n" + entry + "\n")
    with pytest.raises(SpecError) as exc:
        load_model_specs([path])
    assert exc.value.field == field and str(path) in str(exc.value) and "fix:" in str(exc.value)


def test_model_defined_twice_is_an_error(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("models:\n- {name: m, build: {torch: 'a:b'}}\n- {name: m, build: {jax: 'a:c'}}\n")
    with pytest.raises(SpecError, match="defined twice"):
        load_model_specs([path])


# ---- coverage and the loop (numpy, no worker) -------------------------------------------

def test_neighbours_exact_and_faiss_agree():
    rng = np.random.default_rng(0)
    rows, queries = rng.normal(size=(FAISS_FROM + 10, 3)), rng.normal(size=(50, 3))
    small = Neighbours(3)
    for r in rows[:FAISS_FROM - 1]:
        small.add(r)
    want = np.sqrt(((queries[:, None] - rows[None, :FAISS_FROM - 1]) ** 2).sum(-1).min(1))
    assert small.index is None and np.allclose(small.distances(queries), want)
    for r in rows[FAISS_FROM - 1:]:
        small.add(r)
    assert small.index is not None  # faiss is installed with the tests (extra `models`)
    want = np.sqrt(((queries[:, None] - rows[None]) ** 2).sum(-1).min(1))
    assert np.allclose(small.distances(queries), want, atol=1e-4)


def test_auto_threshold_is_a_low_quantile():
    assert auto_threshold(np.arange(101.0)) == pytest.approx(10.0)
    assert auto_threshold(np.array([np.inf])) == 1.0


def _needle(x: np.ndarray, y: np.ndarray, seeds) -> Batch:
    """A 'model' in numpy: coverage is sum(x) (1-d), the objective holds where sum(x) > 6 (far
    from seeds near 0: a random walk around a seed rarely gets there, a walk that keeps the
    inputs with new coverage does)."""
    s = x.reshape(len(x), -1).sum(1)
    return Batch(s[:, None], {"nonfinite": s > 6.0}, {"loss": s})


def test_guided_search_finds_what_random_search_does_not():
    seeds_x, seeds_y = np.zeros((4, 8), np.float32), np.zeros(4, np.int64)
    s = Settings(mutations=20_000, batch=50, sigma=0.1, seed=3, seed_inputs=4)
    guided = fuzz(_needle, seeds_x, seeds_y, (-1.0, 1.0), s)
    unguided = fuzz(_needle, seeds_x, seeds_y, (-1.0, 1.0), replace(s, random=True))
    assert [h.objective for h in guided.hits] == ["nonfinite"] and guided.mutations < 20_000
    assert guided.hits[0].x.sum() > 6 and guided.corpus > 4
    assert unguided.hits == () and unguided.corpus == 4 and unguided.mutations == 20_000
    assert guided.curve[-1][0] == guided.mutations


def test_linf_bound_keeps_mutants_near_their_seed():
    seen = []

    def record(x, y, seeds):
        seen.append(x.copy())
        return _needle(x, y, seeds)
    seeds_x = np.zeros((2, 8), np.float32)
    fuzz(record, seeds_x, np.zeros(2, np.int64), (-1.0, 1.0), Settings(mutations=2000, linf=0.25, seed_inputs=2))
    assert max(np.abs(x).max() for x in seen) <= 0.25 + 1e-7


def test_minimise_moves_toward_the_seed_and_still_hits():
    root = np.zeros(8)
    hit = Hit("nonfinite", 7, np.full(8, 0.95, np.float32), 0, 0, ())
    x = minimise(_needle, hit, root)
    assert x.sum() > 6 and np.abs(x).max() <= 0.95 and x.sum() < hit.x.sum()


# ---- the real libraries ----------------------------------------------------------------

def test_unsafe_digits_nan_found_by_guidance_not_by_random_and_replays(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    store, out = tmp_path / "store", tmp_path / "out"
    rc = main(["modelfuzz", "--model", "digits_unsafe", "-l", "jax", "--mutations", "30000", "--seed", "1",
               "--random", "--store", str(store), "--out", str(out)])
    assert rc == 0
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    assert summary["guided"]["first_hit"]["nonfinite"] is not None
    assert summary["random"]["first_hit"]["nonfinite"] is None
    assert summary["guided"]["corpus"] > summary["random"]["corpus"] == 10
    assert next(out.glob("*/plot.png")).stat().st_size > 1000
    (path,) = store.glob("jax/model_digits_unsafe/*.json")
    report = read_report(path)
    assert report.fingerprint.scenarios == ("nonfinite",) and "guided search" in report.evidence.message
    capsys.readouterr()
    assert main(["replay", str(path)]) == 0
    assert "reproduced" in capsys.readouterr().out
    script = tmp_path / "repro.py"
    script.write_text(render_model(report, load_model_specs([SHIPPED])))
    runtime = resolve_runtime("jax")
    r = subprocess.run([runtime.python, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "DEFECT" in r.stdout, r.stdout + r.stderr


def test_model_report_naming_an_unknown_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    store = tmp_path / "store"
    assert main(["modelfuzz", "--models", str(PLANTED), "--model", "planted_torch", "--objective", "rev-fwd-fd",
                 "--mutations", "3000", "--store", str(store), "--out", str(tmp_path / "o")]) == 0
    (path,) = store.glob("torch/*/*.json")
    report = read_report(path)
    with pytest.raises(RefusedError, match="no loaded model spec"):
        model_spec_for(report, load_model_specs([SHIPPED]))
    assert main(["replay", "--models", str(PLANTED), str(path)]) == 0
    script = tmp_path / "repro.py"
    script.write_text(render_model(report, load_model_specs([PLANTED])))
    r = subprocess.run([resolve_runtime("torch").python, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "DISAGREEMENT" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("model, library", [("planted_torch", "torch"), ("planted_jax", "jax")])
def test_planted_wrong_derivative_rule_is_found_and_the_control_is_not(tmp_path, monkeypatch, model, library):
    monkeypatch.chdir(ROOT)
    for name, expect in ((model, True), ("control", False)):
        store = tmp_path / name
        assert main(["modelfuzz", "--models", str(PLANTED), "--model", name, "-l", library, "--objective",
                     "rev-fwd-fd,grad-nonfinite,compiled" if name == "control" and library == "jax" else "rev-fwd-fd",
                     "--mutations", "4000", "--store", str(store), "--out", str(tmp_path / "o")]) == 0
        reports = list(store.glob("*/*/*.json"))
        assert bool(reports) == expect, [read_report(p).evidence.message for p in reports]
        if expect:
            message = read_report(reports[0]).evidence.message
            assert "reverse mode" in message and "central differences" in message


def test_wrong_parameter_rule_alone_is_found_by_the_parameter_projection(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    store = tmp_path / "store"
    assert main(["modelfuzz", "--models", str(PLANTED), "--model", "planted_param", "-l", "torch", "--objective",
                 "rev-fwd-fd", "--mutations", "2000", "--store", str(store), "--out", str(tmp_path / "o")]) == 0
    (path,) = store.glob("torch/*/*.json")
    message = read_report(path).evidence.message
    assert "<w, dloss/dparams> in float64: reverse mode" in message, message
    rev, fwd = (float(message.split("dloss/dparams> in float64: reverse mode ")[1].split(",")[0]),
                float(message.split("dloss/dparams> in float64: reverse mode ")[1].split("forward mode ")[1].split(",")[0]))
    assert rev != pytest.approx(fwd, rel=1e-3)


def test_cross_library_objective_finds_the_planted_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    for name, expect in (("planted_cross", True), ("control", False)):
        store = tmp_path / name
        assert main(["modelfuzz", "--models", str(PLANTED), "--model", name, "-l", "torch,jax", "--objective", "cross",
                     "--mutations", "3000", "--store", str(store), "--out", str(tmp_path / "o")]) == 0
        assert bool(list(store.glob("*/*/*.json"))) == expect


def test_keras_model_has_the_same_gradients_on_all_three_backends(tmp_path):
    spec = load_model_specs([SHIPPED])["keras_digits"]
    clients = [ModelClient(spec, lib, tmp_path / f"{lib}.log") for lib in ("jax", "torch", "tensorflow")]
    try:
        x, y, _ = clients[0].seeds()
        answers = [c.batch(x[:32], y[:32], list(range(32)), ["cross"], "logits") for c in clients]
        first = answers[0].detail
        for other in answers[1:]:
            d = other.detail
            assert np.allclose(d["loss"], first["loss"], rtol=1e-4, atol=1e-6)
            rtol = 2e-3 + confident_rtol(d["loss"], first["loss"])  # Note [confident gradients]
            assert np.all(np.abs(d["rev"] - first["rev"]) <= rtol * np.maximum(d["scale"], first["scale"]))
            assert np.all(rtol[first["loss"] > 1e-2] < 2.1e-3), "widened only where the loss is near 0"
            assert abs(d["params"][0] - first["params"][0]) <= 2e-3 * first["params"][1]
        evaluate = cross_evaluate(clients, ["cross"], "logits", 2e-3)
        assert not evaluate(x[:32], y[:32], list(range(32))).hits["cross"].any()
    finally:
        for c in clients:
            c.close()


def test_bad_modelfuzz_arguments_are_clear_errors(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["modelfuzz", "--model", "nope"]) == 2
    assert "digits_unsafe" in capsys.readouterr().err
    assert main(["modelfuzz", "--model", "digits_unsafe", "--objective", "fast"]) == 2
    assert "choose from" in capsys.readouterr().err
    assert main(["modelfuzz", "--model", "digits_unsafe", "--coverage", "weights"]) == 2
    assert main(["modelfuzz", "--model", "digits_unsafe", "-l", "jax", "--objective", "cross"]) == 2
    assert main(["modelfuzz", "--model", "digits_safe", "-l", "oneflow"]) == 2
    assert "no builder for oneflow" in capsys.readouterr().err


def test_cli_help_lists_modelfuzz():
    r = subprocess.run([sys.executable, "-m", "nablafuzz", "modelfuzz", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "--objective" in r.stdout and "--random" in r.stdout

"""Programs of 2-4 ops (`campaign --programs`, nablafuzz/programs.py): names, specs, the
numpy_ref composites, planted bugs only a program reaches (tests/helper_program_ops.py), blame,
replay and repro scripts, refusal of undeclared steps, and a real torch program."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from repro_ops import disagreement, make_report, tensor

from nablafuzz import cli
from nablafuzz.campaign import run_campaign
from nablafuzz.core.config import make_config
from nablafuzz.core.errors import ConfigError, RefusedError
from nablafuzz.core.model import Verdict
from nablafuzz.core.quantities import ALL
from nablafuzz.core.tensors import to_array
from nablafuzz.libraries.numpy_ref.adapter import OPS
from nablafuzz.oracle.verdict import judge
from nablafuzz.reports.repro import ReproError, render
from nablafuzz.reports.store import Store
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.generate import generate
from nablafuzz.specs.spec import load_specs
from nablafuzz.worker.programs import (ProgramError, StepInfo, build_program, generate_programs, name_of, parse,
                                       probe_steps, program_spec, step_names)

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
OPS_MODULE = "helper_program_ops"
DOMAINS = {"clamp0": "moderate", "xsin": "positive", "xsin_bad": "positive", "zero_tangent": "real"}


# ---- names and specs ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["program:a>b", "program:where(sqrt|sin)>sum", "program:poly(exp)",
                                  "program:m:f>where(a>b|c)>poly(d)", "program:torch.exp>torch.tanh"])
def test_names_round_trip(name):
    assert name_of(parse(name)) == name


@pytest.mark.parametrize("name", ["program:", "program:a>", "program:where(a)", "program:a b", "program:a)",
                                  "program:program:x", "os:system", "program:" + ">".join("a" * 9),
                                  "program:" + "poly(" * 6 + "a" + ")" * 6])
def test_malformed_names_are_not_programs(name):
    with pytest.raises(ProgramError):
        parse(name)


def _numpy_ref_specs():
    return load_specs(ROOT / "api_specs", ["numpy_ref"]).by_id()


@pytest.mark.parametrize("name", ["program:os:system", "program:sin>os:system", "program:where(sqrt|os.system)",
                                  "program:poly(matmul)", "program:sin>", "program:sin>program:sin"])
def test_program_spec_refuses_what_no_loaded_spec_declares(name):
    with pytest.raises(RefusedError, match="refus"):
        program_spec("numpy_ref", name, _numpy_ref_specs())


def test_program_spec_combines_its_steps():
    specs = _numpy_ref_specs()
    spec = program_spec("numpy_ref", "program:log>tanh", specs)
    assert (spec.library, spec.name, [a.name for a in spec.args]) == ("numpy_ref", "program:log>tanh", ["x"])
    assert spec.args[0].domain == "positive" and spec.support == "observed"
    assert program_spec("numpy_ref", "program:where(sqrt|sin)", specs).args[0].domain == "nonzero"
    assert program_spec("numpy_ref", "program:poly(abs)", specs).kinks == "subgradient"


# ---- numpy_ref composites: the chain, product and selection rules ------------------------------

@pytest.mark.parametrize("name", ["program:sin>exp>tanh", "program:exp>sum>sigmoid", "program:where(sqrt|atan)",
                                  "program:poly(tanh)>mean", "program:cumsum>square", "program:poly(sum)"])
def test_numpy_ref_composites_match_finite_differences(name):
    op = build_program(name, OPS.__getitem__, "numpy_ref")
    rng = np.random.default_rng(1)
    x, u, w = rng.uniform(0.2, 1.5, (3, 4)) * np.where(rng.random((3, 4)) < 0.5, -1, 1), *rng.normal(size=(2, 3, 4))
    v = rng.normal(size=np.shape(op.f(x)))
    h = 1e-6
    fd = (op.f(x + h * u) - op.f(x - h * u)) / (2 * h)
    assert np.allclose(op.jvp([x], [u])[0], fd, atol=1e-6)
    assert np.isclose(np.sum(op.vjp([x], [v])[0] * u), np.sum(v * fd), atol=1e-6)

    def q(z):
        return np.sum(v * op.jvp([z], [u])[0])
    assert np.isclose(np.sum(op.hess([x], [u], [v])[0] * w), (q(x + h * w) - q(x - h * w)) / (2 * h), atol=1e-5)


# ---- generation ---------------------------------------------------------------------------------

STEPS = [StepInfo("sqrt", "elementwise", "positive", (0.5, 2.0)), StepInfo("sin", "elementwise", "real", (-0.5, 0.9)),
         StepInfo("exp", "elementwise", "real", (0.3, 7.0)), StepInfo("sum", "reduction", "real", (4.0,))]


def test_programs_are_deterministic_from_the_seed_and_fit():
    names = generate_programs("torch", STEPS, 5, 30)
    assert names == generate_programs("torch", STEPS, 5, 30) != generate_programs("torch", STEPS, 6, 30)
    assert len(names) == len(set(names)) == 30
    chains = [parse(n) for n in names]
    assert all(1 <= len(step_names(c)) <= 4 for c in chains)
    assert any(n.startswith("program:where(") for n in names) and any(n.startswith("program:poly(") for n in names)
    assert any("sum" in step_names(c) for c in chains)
    assert "program:sin>sqrt" not in names  # sin's negative outputs are outside sqrt's domain
    assert generate_programs("numpy_ref", STEPS, 5, 30) != names  # the library is part of the draw


# ---- campaigns with planted ops -----------------------------------------------------------------

def _campaign(tmp_path, monkeypatch, ops, seed=1, trials=8, name=""):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    spec = tmp_path / f"{'-'.join(ops)}.yaml"
    spec.write_text("library: numpy_ref\napis:\n" + "".join(
        f'  - name: "{OPS_MODULE}:{op}"\n    args: [{{name: x, domain: {DOMAINS[op]}}}]\n' for op in ops))
    store = tmp_path / f"store-{'-'.join(ops)}"
    # regime_share 0: the `special` regime draws exact zeros, which would find the ops alone
    config = make_config("default", libraries=["numpy_ref"], apis=[f"{OPS_MODULE}:*"], spec_files=[str(spec)],
                         spec_dir=str(ROOT / "api_specs"), store_dir=str(store), campaign_dir=str(tmp_path / "c"),
                         workers=1, trials_per_api=trials, budget_s=300, programs=True, max_programs=10,
                         regime_share=0.0, seed=seed, name=name or "-".join(ops))
    summary = run_campaign(config)
    reports, errors = Store(store).load_all()
    assert summary.complete and not errors
    observations = [json.loads(line) for line in
                    (tmp_path / "c" / config.name / "observations.jsonl").read_text().splitlines()]
    return reports, observations, spec, store


def test_bug_only_a_program_reaches_is_blamed_on_the_op_that_explains_it(tmp_path, monkeypatch):
    reports, observations, _, _ = _campaign(tmp_path, monkeypatch, ["clamp0", "xsin_bad"])
    pair = f"program:{OPS_MODULE}:clamp0>{OPS_MODULE}:xsin_bad"
    assert any(o["api"] == f"numpy_ref:{pair}" for o in observations)  # the program ran ...
    alone = [o for o in observations if o["api"] == f"numpy_ref:{OPS_MODULE}:xsin_bad"]
    assert alone and not any(o["findings"] for o in alone)  # ... the op alone never reaches the bug
    blamed = [r for r in reports if r.fingerprint.api == f"{OPS_MODULE}:xsin_bad"]
    assert blamed and all(r.fingerprint.verdict is Verdict.DERIVATIVE_MISMATCH for r in blamed)
    assert all(0.0 in r.trial.inputs[0].value.values for r in blamed)  # the intermediate value clamp0 gave it
    assert not [r for r in reports if r.fingerprint.api == pair]  # never against the chain


def test_correct_twin_program_is_not_reported(tmp_path, monkeypatch):
    reports, observations, _, _ = _campaign(tmp_path, monkeypatch, ["clamp0", "xsin"])
    assert any(o["api"] == f"numpy_ref:program:{OPS_MODULE}:clamp0>{OPS_MODULE}:xsin" for o in observations)
    assert reports == []


def test_program_bug_no_op_explains_alone_is_the_shortest_programs_and_replays(tmp_path, monkeypatch, capsys):
    reports, _, spec, store = _campaign(tmp_path, monkeypatch, ["clamp0", "zero_tangent"], seed=3)
    pair = f"program:{OPS_MODULE}:clamp0>{OPS_MODULE}:zero_tangent"
    assert reports and all(r.fingerprint.api == pair for r in reports)  # longer programs blamed on the pair
    fwd = next(r for r in reports if r.fingerprint.scenarios == ("fwd",))
    assert fwd.minimised_size == 1 and fwd.trial.inputs[0].value.values[0] < 0  # saturated: a zero tangent
    path = next(Path(store).rglob(f"{fwd.key}.json"))
    monkeypatch.chdir(tmp_path)
    code = cli.main(["replay", str(path), "--specs", str(spec), "--spec-dir", str(ROOT / "api_specs")])
    out = capsys.readouterr().out
    assert code == 0 and "reproduced" in out, out
    script = render(fwd, {f"numpy_ref:{OPS_MODULE}:clamp0", f"numpy_ref:{OPS_MODULE}:zero_tangent"})
    assert "# the program: zero_tangent(clamp0(x))" in script
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 1 and "DISAGREEMENT: fwd" in run.stdout, run.stdout + run.stderr


def test_program_with_an_undeclared_step_is_refused_by_replay_and_never_sent(tmp_path, monkeypatch, capsys):
    (tmp_path / "evil_step.py").write_text(f"open({str(tmp_path / 'IMPORTED')!r}, 'w').close()\nrun = abs\n")
    sent = []
    monkeypatch.setattr(Runner, "run", lambda self, *a, **k: sent.append(a) or pytest.fail("sent to a worker"))
    monkeypatch.chdir(tmp_path)
    for api in ("program:sin>evil_step:run", "program:os:system", "program:where(sin|evil_step:run)"):
        report = make_report("numpy_ref", api, [tensor([0.5, -1.0])], disagreements=[disagreement("rev", "fd")])
        Store(tmp_path / "store").save(report)
        path = next((tmp_path / "store").rglob(f"{report.key}.json"))
        code = cli.main(["replay", str(path), "--spec-dir", str(ROOT / "api_specs")])
        err = capsys.readouterr().err
        assert code == 2 and "refus" in err, err
        with pytest.raises(ReproError, match="no loaded spec declares"):  # and no repro script calls it
            render(report, {"numpy_ref:sin"})
    assert not sent and not (tmp_path / "IMPORTED").exists()


def test_campaign_programs_use_only_the_selected_specs(tmp_path):
    config = make_config("default", libraries=["numpy_ref"], apis=["sin", "tanh", "sum", "sqrt"],
                         spec_dir=str(ROOT / "api_specs"), store_dir=str(tmp_path / "s"),
                         campaign_dir=str(tmp_path / "c"), workers=1, trials_per_api=2, budget_s=120, programs=True,
                         max_programs=12, name="selected")
    summary = run_campaign(config)
    apis = {json.loads(line)["api"] for line in (tmp_path / "c" / "selected" / "observations.jsonl").read_text().splitlines()}
    programs = [a.split(":", 1)[1] for a in apis if a.startswith("numpy_ref:program:")]
    assert summary.complete and len(programs) == 12 and len(apis) == 16
    assert all(set(step_names(parse(p))) <= {"sin", "tanh", "sum", "sqrt"} for p in programs)
    assert Store(tmp_path / "s").load_all() == ([], [])  # numpy_ref's own ops compose correctly


def test_programs_flag_and_config():
    args = cli._parser().parse_args(["campaign", "-l", "numpy_ref", "--programs", "--trials", "5"])
    assert args.programs is True
    assert make_config("default").programs is False and make_config("default").max_programs == 100
    with pytest.raises(ConfigError, match="max_programs"):
        make_config("default", max_programs=0)
    with pytest.raises(ConfigError, match="cross"):
        make_config("default", programs=True, cross=True)


def test_probe_tells_elementwise_ops_from_other_shapes_and_casts():
    fns = {"sin": np.sin, "cumsum": lambda x: np.cumsum(x, 0), "sum": np.sum, "half": lambda x: x.astype("float16"),
           "first": lambda x: x[0], "sign": lambda x: np.sign(x).astype(int), "fails": None}
    specs = load_specs(ROOT / "api_specs", ["numpy_ref"]).by_id()
    probed = [dataclasses.replace(specs["numpy_ref:sin"], name=name) for name in fns]

    def direct(trial, spec):
        fn = fns[spec.name]
        return None if fn is None else np.asarray(fn(to_array(trial.inputs[0].value)))
    found = {s.name: s.kind for s in probe_steps(probed, direct, 0)}
    assert found == {"sin": "elementwise", "cumsum": "same_shape", "sum": "reduction"}


# ---- a real library ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_runner(tmp_path_factory):
    try:
        runtime = resolve_runtime("torch", [str(TESTS)])
    except ConfigError as exc:
        pytest.skip(str(exc))
    r = Runner(runtime, tmp_path_factory.mktemp("torch") / "w.log", 120.0)
    yield r
    r.close()


def test_correct_torch_program_gives_no_finding(torch_runner):
    specs = load_specs(ROOT / "api_specs", ["torch"]).by_id()
    spec = program_spec("torch", "program:torch.exp>torch.tanh", specs)
    for index in range(4):
        trial = generate(spec, 0, index, 16)
        execution = torch_runner.run(trial, spec, ALL)
        assert execution.get("rev").value is not None
        assert judge(execution, spec, torch_runner).findings == ()


def test_torch_program_repro_is_plain_library_code(torch_runner, tmp_path):
    name = "program:where(torch.sqrt|torch.sin)>torch.sum"
    report = make_report("torch", name, [tensor([0.5, -1.0, 2.0])], disagreements=[disagreement("rev", "fd")])
    script = render(report, {"torch:torch.sqrt", "torch:torch.sin", "torch:torch.sum"})
    assert "    t3 = torch.where(x > 0, t1, t2)\n    t4 = torch.sum(t3)\n    return t4" in script
    assert "t1 = torch.sqrt(x)" in script and "return pick(program(d[0]))" in script
    run = subprocess.run([torch_runner.worker.runtime.python, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode in (0, 1) and "rev (VJP) = nan" in run.stdout, run.stdout + run.stderr


def _where_trial(spec, values):
    from nablafuzz.core.tensors import to_record
    trial = generate(spec, 0, 0, 16, dtype="float64")
    x = to_record(np.array(values, dtype=np.float64))
    return dataclasses.replace(trial, inputs=(dataclasses.replace(trial.inputs[0], value=x),))


def test_a_nan_gradient_from_where_s_untaken_branch_is_the_where_convention(torch_runner):
    # sqrt below 0 is NaN on the untaken side; torch.where's backward multiplies its NaN
    # gradient by the zero mask: NaN where the function and finite differences are finite
    loaded = load_specs(ROOT / "api_specs", ["torch"])
    name = "program:where(torch.sqrt|torch.sin)"
    trial_values = [0.5, -1.0, 2.0]
    plain = program_spec("torch", name, loaded.by_id())  # without the convention table
    bare = judge(torch_runner.run(_where_trial(plain, trial_values), plain, ALL), plain, torch_runner)
    assert [f.fingerprint.verdict for f in bare.findings][:1] == [Verdict.NONFINITE_DERIVATIVE]  # not filtered away
    spec = program_spec("torch", name, loaded.by_id(), loaded.conventions)
    judged = judge(torch_runner.run(_where_trial(spec, trial_values), spec, ALL), spec, torch_runner)
    assert judged.findings == () and any("torch.where" in c for c in judged.conventions)

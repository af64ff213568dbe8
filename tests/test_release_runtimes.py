"""Runtimes of other releases (`nablafuzz install --only jax@0.10.1`): name parsing, the plan derived
from the library's default plan, the registry merge, the errors, `resolve_runtime` of a release, and
one real build of jax 0.10.1 with pip (about 15 s on the CI machine: ~100 MB of wheels)."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.version import Version

from nablafuzz.core.errors import ConfigError
from nablafuzz.runtime import install as inst
from nablafuzz.runtime import process
from nablafuzz.runtime.process import Runtime, RuntimeUnavailable, WorkerProcess
from nablafuzz.runtime.registry import compilation_cache_env, resolve_runtime, split_release
from nablafuzz.runtime.runner import Runner, versions_of

PLANS = {plan.name: plan for plan in inst.PLANS}
OLD_JAX = "0.10.1"  # the default plan's jax is 0.10.2


# ---- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, parts", [
    ("jax", ("jax", None)),
    ("jax@0.10.1", ("jax", "0.10.1")),
    ("torch@2.12.0+cpu", ("torch", "2.12.0+cpu")),
    ("tensorflow@2.21.0rc1", ("tensorflow", "2.21.0rc1")),
    ("oneflow@1!0.9.0.post1.dev2", ("oneflow", "1!0.9.0.post1.dev2")),
])
def test_split_release(name, parts):
    assert split_release(name) == parts


@pytest.mark.parametrize("version", ["0.10.1", "2.12.0+cpu", "2.21.0rc1", "0.4.0a3", "1.0b2",
                                     "1!0.9.0.post1.dev2", "2.0.dev0", "0", "2.13.0+cu121.x86"])
def test_accepted_versions_are_pep440_normal_form(version):
    assert str(Version(version)) == version


@pytest.mark.parametrize("name, says", [
    ("jax@", "'jax@' names no version after '@'; write LIB@VERSION, e.g. jax@0.10.1"),
    ("jax@ 0.10.1", "version ' 0.10.1' in 'jax@ 0.10.1' is not a release version"),
    ("jax@0.10.1 ", "is not a release version"),
    ("jax@0.10.1;rm -rf ~", "is not a release version"),
    ("jax@$(id)", "is not a release version"),
    ("jax@0.10.*", "is not a release version"),
    ("jax@>=0.10", "is not a release version"),
    ("jax@v0.10.1", "write it as pip lists it, e.g. 0.10.1"),  # valid PEP 440, not its normal form
    ("jax@0.10.01", "is not a release version"),
    ("jax@0.10.1@2", "version '0.10.1@2'"),
])
def test_split_release_rejects_what_is_no_plain_version(name, says):
    with pytest.raises(inst.InstallError) as info:
        split_release(name)
    assert says in str(info.value)


# ---- plans ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, requirements", [
    ("jax@0.10.1", ("jax==0.10.1", "jaxlib==0.10.1", "numpy")),
    ("tensorflow@2.20.0", ("tensorflow-cpu==2.20.0", "numpy")),
    ("torch@2.12.0+cpu", ("torch==2.12.0+cpu", "expecttest==0.3.0", "numpy")),
    ("oneflow@0.8.0", ("oneflow==0.8.0", "numpy==1.26.4", "nvidia-cudnn-cu11==8.5.0.96",
                       "nvidia-cublas-cu11==11.10.3.66")),
])
def test_release_plan_is_the_default_plan_with_only_that_library(name, requirements):
    plan = inst.release_plan(name)
    base = PLANS["oneflow" if name.startswith("oneflow") else "py311"]
    assert plan == inst.RuntimePlan(name=name, libraries=(name,), python_candidates=base.python_candidates,
                                    requirements=requirements, env=base.env)


def test_every_library_has_a_release_recipe():
    assert set(inst.RELEASES) == set(inst.LIBRARIES)
    for library in inst.LIBRARIES:  # the kept requirements exist in the default plan
        assert inst.release_plan(f"{library}@1.0").requirements


def test_releases_hash_apart():
    a, b = inst.release_plan("jax@0.10.1"), inst.release_plan("jax@0.10.2")
    assert inst.plan_hash(a, "3.11.7") != inst.plan_hash(b, "3.11.7")


@pytest.mark.parametrize("only, plans", [
    (["jax@0.10.1"], ["jax@0.10.1"]),
    (["jax", "jax@0.10.1"], ["py311", "jax@0.10.1"]),
    (["jax@0.10.1", "jax@0.10.1"], ["jax@0.10.1"]),
    (["jax@0.10.1", "tensorflow@2.20.0", "oneflow"], ["oneflow", "jax@0.10.1", "tensorflow@2.20.0"]),
])
def test_select_plans_with_releases(only, plans):
    assert [p.name for p in inst.select_plans(only)] == plans


@pytest.mark.parametrize("only, says", [
    ("foo@1.0", "unknown library 'foo' in 'foo@1.0'; choose from torch, jax, tensorflow, oneflow"),
    ("jax,numpy_ref@1", "'numpy_ref@1': numpy_ref runs in nablafuzz's own interpreter and has no releases"),
    ("jax@", "'jax@' names no version after '@'"),
    ("jax@0.10.1;id", "version '0.10.1;id' in 'jax@0.10.1;id' is not a release version"),
])
def test_main_reports_bad_release_names(tmp_path, capsys, only, says):
    assert inst.main(["--only", only, "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "venvs").exists()


# ---- the registry ---------------------------------------------------------------------------

def _bare(plan: inst.RuntimePlan) -> inst.RuntimePlan:
    """The plan as a venv without pip and without packages (no network), in our interpreter."""
    return replace(plan, python_candidates=(sys.executable,), requirements=())


def _entry(python: str) -> dict:
    return {"python": python, "venv": str(Path(python).parents[1]), "plan": "py311", "env": {}}


def test_release_and_default_entries_keep_each_other(tmp_path):
    defaults = {lib: _entry(f"/opt/py311/bin/python{n}") for n, lib in enumerate(("jax", "torch", "oneflow"))}
    (tmp_path / "runtimes.json").write_text(json.dumps(defaults))
    registry = inst.install_plans([_bare(inst.release_plan("jax@0.10.1"))], home=tmp_path, log=lambda line: None)
    venv = tmp_path / "venvs" / "jax@0.10.1"
    assert {k: registry[k] for k in defaults} == defaults
    assert registry["jax@0.10.1"] == {"python": str(venv / "bin" / "python"), "venv": str(venv), "plan": "jax@0.10.1",
                                      "env": dict(PLANS["py311"].env), "library": "jax", "version": "0.10.1"}
    # rebuilding the default jax (here a bare stand-in) keeps the release
    default = replace(_bare(PLANS["py311"]), libraries=("jax",))
    registry = inst.install_plans([default], home=tmp_path, log=lambda line: None)
    assert set(registry) == {"jax", "torch", "oneflow", "jax@0.10.1"}
    assert registry == inst.load_registry(tmp_path)


def test_up_to_date_release_keeps_its_recorded_version(tmp_path):
    plan, logs = _bare(inst.release_plan("jax@0.10.1")), []
    first = inst.install_plans([plan], home=tmp_path, log=logs.append)
    marker = tmp_path / "venvs" / "jax@0.10.1" / inst.MARKER
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(data, versions={"jax": "0.10.1", "jaxlib": "0.10.1"})))
    again = inst.install_plans([plan], home=tmp_path, log=logs.append)
    assert "up to date" in logs[-1]
    assert again["jax@0.10.1"] == first["jax@0.10.1"]


def test_failed_release_keeps_the_other_entries_and_leaves_no_venv(tmp_path, monkeypatch):
    defaults = {"jax": _entry("/opt/py311/bin/python")}
    (tmp_path / "runtimes.json").write_text(json.dumps(defaults))

    def broken(plan, interp, venv, logfile):
        (venv / "bin").mkdir(parents=True)
        raise inst.InstallError("pip install failed (exit 1): ERROR: No matching distribution found for jax==9.9")
    monkeypatch.setattr(inst, "_create", broken)
    with pytest.raises(inst.InstallError, match="jax@9.9: pip install failed"):
        inst.install_plans([_bare(inst.release_plan("jax@9.9"))], home=tmp_path, log=lambda line: None)
    assert inst.load_registry(tmp_path) == defaults
    assert not (tmp_path / "venvs" / "jax@9.9").exists()


def test_pip_failure_says_what_pip_said_and_where_the_log_is(tmp_path):
    log = tmp_path / "x.log"
    listing = ", ".join(f"0.{i}" for i in range(2000))
    script = (f"print('ERROR: Could not find a version that satisfies the requirement jax==9.9 "
              f"(from versions: {listing})'); print('ERROR: No matching distribution found for jax==9.9'); "
              "raise SystemExit(1)")
    interp = inst.Interpreter("/usr/bin/python3.11", "3.11.7")
    hint = inst._pip_hint(inst.release_plan("jax@9.9"), interp)
    with pytest.raises(inst.InstallError) as info:
        inst._run_logged([sys.executable, "-c", script], log, "pip install", hint)
    message = str(info.value)
    assert message.startswith("pip install failed (exit 1): ERROR: No matching distribution found for "
                              "jax==9.9; is 9.9 a release of jax for Python 3.11? `/usr/bin/python3.11 -m pip "
                              f"index versions jax` lists them; see {log}, last lines:")
    assert len(message) < 2000  # pip's list of every version is cut
    assert inst._pip_hint(PLANS["py311"], interp) == ""


# ---- resolving ------------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NABLAFUZZ_HOME", str(tmp_path))
    for var in ("NABLAFUZZ_ADAPTERS", "NABLAFUZZ_LIBRARIES"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_resolve_release(home, monkeypatch):
    entry = dict(_entry(sys.executable), env={"B": "2", "A": "1"}, library="jax", version="0.10.1")
    (home / "runtimes.json").write_text(json.dumps({"jax@0.10.1": entry}))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    rt = resolve_runtime("jax@0.10.1", [str(home)], 512)
    cache = compilation_cache_env("jax", "jax@0.10.1")  # Note [persistent compilation cache]: one per release
    assert dict(cache)["JAX_COMPILATION_CACHE_DIR"] == str(home / "jax-compilation-cache" / "jax@0.10.1")
    assert rt == Runtime("jax", sys.executable, (("A", "1"), ("B", "2")) + cache, 512, (str(home.resolve()),), "0.10.1")
    assert rt.name == "jax@0.10.1" and Runtime("jax", sys.executable).name == "jax"


@pytest.mark.parametrize("name, says", [
    ("jax@0.10.1", "no runtime installed for jax@0.10.1: run `nablafuzz install --only jax@0.10.1`"),
    ("foo@1.0", "unknown library 'foo' in 'foo@1.0': choose from"),
    ("numpy_ref@1", "'numpy_ref@1': numpy_ref runs in nablafuzz's own interpreter"),
    ("jax@", "'jax@' names no version"),
    ("jax@0.10.1 && id", "is not a release version"),
])
def test_resolve_release_errors(home, name, says):
    (home / "runtimes.json").write_text(json.dumps({"jax": _entry(sys.executable)}))
    with pytest.raises(ConfigError) as info:
        resolve_runtime(name)
    assert says in str(info.value)


def test_a_release_that_will_not_start_is_given_up_by_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "RESTART_DELAYS", ())
    worker = WorkerProcess(Runtime("jax", str(tmp_path / "missing" / "python"), release="0.10.1"), tmp_path / "w.log")
    with pytest.raises(RuntimeUnavailable) as info:
        worker.ensure()
    assert info.value.library == "jax@0.10.1"
    assert "cannot start the jax@0.10.1 worker" in str(info.value)


# ---- one real build -------------------------------------------------------------------------

def test_build_and_run_an_old_jax(tmp_path, monkeypatch, capsys):
    """pip installs jax 0.10.1 into a fresh home; its worker loads the jax adapter and says 0.10.1."""
    home = tmp_path / "home"
    start = time.monotonic()
    assert inst.main(["--only", f"jax@{OLD_JAX}", "--home", str(home)]) == 0, capsys.readouterr().err
    built = time.monotonic() - start
    entry = inst.load_registry(home)[f"jax@{OLD_JAX}"]
    assert (entry["library"], entry["version"], entry["plan"]) == ("jax", OLD_JAX, f"jax@{OLD_JAX}")
    found = inst.installed_versions(Path(entry["python"]), ["jax", "jaxlib", "torch", "tensorflow-cpu"])
    assert found == {"jax": OLD_JAX, "jaxlib": OLD_JAX, "torch": None, "tensorflow-cpu": None}
    assert inst.main(["--only", f"jax@{OLD_JAX}", "--home", str(home)]) == 0
    assert "up to date" in capsys.readouterr().out

    monkeypatch.setenv("NABLAFUZZ_HOME", str(home))
    runner = Runner(resolve_runtime(f"jax@{OLD_JAX}"), tmp_path / "w.log", 120.0)
    try:
        assert {f"jax {OLD_JAX}", f"jaxlib {OLD_JAX}"} <= set(versions_of(runner))
    finally:
        runner.close()
    print(f"jax@{OLD_JAX} built in {built:.1f} s")

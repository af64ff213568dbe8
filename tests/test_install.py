"""nablafuzz.runtime.install without network: plan selection, interpreter lookup, idempotence."""

import json
import os
import sys
from pathlib import Path

import pytest

from nablafuzz.runtime import install as inst

ONEFLOW = next(p for p in inst.PLANS if p.name == "oneflow")


def fake_plan(name="fake", libraries=("fakelib",), requirements=()):
    return inst.RuntimePlan(name=name, libraries=libraries, python_candidates=(sys.executable,),
                            requirements=requirements, env=(("FAKE_VAR", "1"),))


def fake_python(path: Path, version: str, rc: int = 0) -> Path:
    """A shell script answering the interpreter probe like a Python `version` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {path}\necho {version}\nexit {rc}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def bare_env(tmp_path, monkeypatch):
    """No interpreter reachable: empty PATH, empty pyenv root, no override variables."""
    for var in ("NABLAFUZZ_PYTHON310", "NABLAFUZZ_PYTHON311", "NABLAFUZZ_HOME"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "bin").mkdir()
    (tmp_path / "pyenv").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    return tmp_path


@pytest.mark.parametrize("only, plans", [
    (None, ["py311", "oneflow"]),
    (["torch", "jax"], ["py311"]),
    (["tensorflow"], ["py311"]),
    (["oneflow"], ["oneflow"]),
    (["oneflow", "torch"], ["py311", "oneflow"]),
    (["numpy_ref"], []),
])
def test_select_plans(only, plans):
    assert [p.name for p in inst.select_plans(only)] == plans


def test_every_library_has_one_plan():
    assert sorted(inst.LIBRARIES) == ["jax", "oneflow", "tensorflow", "torch"]


@pytest.mark.parametrize("only", [["pytorch"], []])
def test_select_plans_rejects_bad_requests(only):
    with pytest.raises(inst.InstallError, match="choose from torch, jax, tensorflow, oneflow"):
        inst.select_plans(only)


def test_main_reports_unknown_library_on_stderr(tmp_path, capsys):
    assert inst.main(["--only", "torch,caffe", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown library 'caffe'" in err and "Traceback" not in err


def test_state_dir_and_registry_path(tmp_path, monkeypatch):
    monkeypatch.setenv("NABLAFUZZ_HOME", str(tmp_path))
    assert inst.state_dir() == tmp_path
    assert inst.registry_path() == tmp_path / "runtimes.json"
    monkeypatch.delenv("NABLAFUZZ_HOME")
    assert inst.state_dir() == Path.home() / ".cache" / "nablafuzz"


def test_plan_hash_depends_on_name_requirements_and_python():
    base = inst.plan_hash(fake_plan(), "3.11.7")
    assert base == inst.plan_hash(fake_plan(), "3.11.7")
    assert base != inst.plan_hash(fake_plan(name="other"), "3.11.7")
    assert base != inst.plan_hash(fake_plan(requirements=("numpy==1.26.4",)), "3.11.7")
    assert base != inst.plan_hash(fake_plan(), "3.11.8")


def test_pins_parse_exact_and_loose_requirements():
    plan = fake_plan(requirements=("torch==2.13.0+cpu", "numpy<2.5", "tensorflow-cpu==2.21.0"))
    assert inst._pins(plan) == [("torch", "2.13.0+cpu"), ("numpy", None),
                                ("tensorflow-cpu", "2.21.0")]


def test_pins_satisfied():
    plan = fake_plan(requirements=("torch==2.13.0+cpu", "numpy<2.5"))
    assert inst._pins_satisfied(plan, {"torch": "2.13.0+cpu", "numpy": "2.4.1"})
    assert not inst._pins_satisfied(plan, {"torch": "2.12.0", "numpy": "2.4.1"})
    assert not inst._pins_satisfied(plan, {"torch": "2.13.0+cpu", "numpy": None})
    assert not inst._pins_satisfied(plan, None)


def test_installed_versions_reads_metadata_of_an_interpreter():
    found = inst.installed_versions(Path(sys.executable), ["pytest", "no-such-dist-xyz"])
    assert found == {"pytest": pytest.__version__, "no-such-dist-xyz": None}


def test_build_is_idempotent(tmp_path):
    plan, logs = fake_plan(), []
    registry = inst.install_plans([plan], home=tmp_path, log=logs.append)
    venv = tmp_path / "venvs" / "fake"
    assert registry == {"fakelib": {"python": str(venv / "bin" / "python"), "venv": str(venv),
                                    "plan": "fake", "env": {"FAKE_VAR": "1"}}}
    assert inst.load_registry(tmp_path) == registry
    marker = json.loads((venv / inst.MARKER).read_text())
    assert marker["hash"] == inst.plan_hash(plan, marker["python"])
    stamp = (venv / inst.MARKER).stat().st_mtime_ns
    assert inst.install_plans([plan], home=tmp_path, log=logs.append) == registry
    assert "up to date" in logs[-1]
    assert (venv / inst.MARKER).stat().st_mtime_ns == stamp


def test_half_built_venv_is_rebuilt(tmp_path):
    plan, logs = fake_plan(), []
    inst.install_plans([plan], home=tmp_path, log=logs.append)
    venv = tmp_path / "venvs" / "fake"
    (venv / inst.MARKER).unlink()
    (venv / "leftover").write_text("junk")
    inst.install_plans([plan], home=tmp_path, log=logs.append)
    assert any("stale or incomplete" in line for line in logs)
    assert (venv / inst.MARKER).exists() and not (venv / "leftover").exists()


def test_force_rebuilds(tmp_path):
    plan, logs = fake_plan(), []
    inst.install_plans([plan], home=tmp_path, log=logs.append)
    inst.install_plans([plan], home=tmp_path, force=True, log=logs.append)
    assert any("removing old venv" in line for line in logs)


def test_changed_pins_invalidate_marker(tmp_path, monkeypatch):
    plan = fake_plan(requirements=("torch==2.13.0+cpu",))
    venv = tmp_path / "venv"
    venv.mkdir()
    digest = inst.plan_hash(plan, "3.11.7")
    (venv / inst.MARKER).write_text(json.dumps({"hash": digest}))
    monkeypatch.setattr(inst, "installed_versions", lambda py, dists: {"torch": "2.13.0+cpu"})
    assert inst.is_up_to_date(plan, venv, digest)
    assert not inst.is_up_to_date(plan, venv, inst.plan_hash(plan, "3.11.8"))
    monkeypatch.setattr(inst, "installed_versions", lambda py, dists: {"torch": "2.12.0"})
    assert not inst.is_up_to_date(plan, venv, digest)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"torch": "oops"}'])
def test_corrupt_registry_names_file_and_fix(tmp_path, content):
    path = tmp_path / "runtimes.json"
    path.write_text(content)
    with pytest.raises(inst.InstallError) as info:
        inst.load_registry(tmp_path)
    message = str(info.value)
    assert str(path) in message and "run `nablafuzz install`" in message
    assert "\n" not in message


def test_missing_registry_is_empty(tmp_path):
    assert inst.load_registry(tmp_path) == {}


def test_install_replaces_corrupt_registry(tmp_path):
    (tmp_path / "runtimes.json").write_text("{not json")
    inst.install_plans([fake_plan()], home=tmp_path, log=lambda line: None)
    assert set(inst.load_registry(tmp_path)) == {"fakelib"}


def test_missing_python310_gives_clear_message(bare_env):
    with pytest.raises(inst.InstallError) as info:
        inst.find_python(ONEFLOW)
    assert str(info.value) == (
        "no Python <= 3.10 found for the oneflow runtime; set NABLAFUZZ_PYTHON310="
        "/path/to/python3.10 (OneFlow 0.9.0 has no wheel for 3.11)")


def test_dead_shim_is_skipped_and_newest_pyenv_build_wins(bare_env):
    fake_python(bare_env / "bin" / "python3.10", "3.10.13", rc=127)
    fake_python(bare_env / "pyenv" / "versions" / "3.10.2" / "bin" / "python3.10", "3.10.2")
    newest = fake_python(bare_env / "pyenv" / "versions" / "3.10.13" / "bin" / "python3.10",
                         "3.10.13")
    assert inst.find_python(ONEFLOW) == inst.Interpreter(str(newest), "3.10.13")


def test_python39_is_the_fallback(bare_env):
    py39 = fake_python(bare_env / "bin" / "python3.9", "3.9.18")
    assert inst.find_python(ONEFLOW).path == str(py39)


def test_override_variable_wins_and_is_checked(bare_env, monkeypatch):
    fake_python(bare_env / "bin" / "python3.10", "3.10.13")
    chosen = fake_python(bare_env / "opt" / "python", "3.10.4")
    monkeypatch.setenv("NABLAFUZZ_PYTHON310", str(chosen))
    assert inst.find_python(ONEFLOW).version == "3.10.4"
    monkeypatch.setenv("NABLAFUZZ_PYTHON310", str(fake_python(bare_env / "py311", "3.11.7")))
    with pytest.raises(inst.InstallError, match="is Python 3.11.7; the oneflow runtime needs"):
        inst.find_python(ONEFLOW)


def test_one_failed_plan_keeps_the_other(bare_env):
    home = bare_env / "home"
    with pytest.raises(inst.InstallError) as info:
        inst.install_plans([fake_plan(), ONEFLOW], home=home, log=lambda line: None)
    assert "oneflow: no Python <= 3.10 found" in str(info.value)
    assert set(inst.load_registry(home)) == {"fakelib"}


def test_failed_command_names_log_and_tail(tmp_path):
    log = tmp_path / "x.log"
    cmd = [sys.executable, "-c", "print('first'); print('boom'); raise SystemExit(3)"]
    with pytest.raises(inst.InstallError) as info:
        inst._run_logged(cmd, log, "pip install")
    message = str(info.value)
    assert message.startswith("pip install failed (exit 3); see " + str(log))
    assert "boom" in message


def test_pythonpath_is_not_passed_to_children(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.getcwd())
    assert "PYTHONPATH" not in inst._clean_env()

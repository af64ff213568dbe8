"""The CLI works with no deep-learning library importable."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = ("import sys\n"
         "for m in ('torch', 'jax', 'jaxlib', 'tensorflow', 'oneflow'):\n"
         "    sys.modules[m] = None  # any import of them now raises ImportError\n"
         "from nablafuzz.cli import main\n"
         "sys.exit(main(sys.argv[1:]))\n")


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK, *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}, timeout=120)


def test_help_without_dl_libraries():
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    for command in ("campaign", "replay", "triage", "install", "specs"):
        assert command in r.stdout


def test_triage_without_dl_libraries(tmp_path):
    store = tmp_path / "store"
    r = _run("campaign", "-l", "numpy_ref", "--specs", str(ROOT / "tests/specs/broken.yaml"), "--api",
             "broken_ops:tanh_fwd", "--trials", "8", "--store", str(store), "--campaign-dir", str(tmp_path / "c"),
             "--spec-dir", str(ROOT / "api_specs"))
    assert r.returncode == 0, r.stderr
    r = _run("triage", "--store", str(store), "--out", str(tmp_path / "t.md"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "t.md").read_text()
    assert "broken_ops:tanh_fwd" in text and "derivative_mismatch" in text


def test_bad_config_is_a_clear_error():
    r = _run("campaign", "-l", "numpy_ref", "--workers", "0")
    assert r.returncode == 2
    assert "workers=0" in r.stderr and "between 1 and 64" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_runtime_is_a_clear_error(tmp_path):
    r = _run("campaign", "-l", "torch", "--store", str(tmp_path / "s"), "--campaign-dir", str(tmp_path / "c"))
    assert r.returncode == 2
    assert "nablafuzz install" in r.stderr and "Traceback" not in r.stderr

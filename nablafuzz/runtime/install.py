"""Build the library runtimes (one virtual environment per plan) and record them.

`nablafuzz install` creates `<home>/venvs/<plan>` for every plan that serves a
requested library, both plans at once, and writes `<home>/runtimes.json`, which
maps each library id to the interpreter its worker runs under.  A venv is
stamped with a marker after a successful install; a re-run whose marker still
matches (and whose pinned distributions are all present) does nothing.

`LIB@VERSION` (e.g. `jax@0.10.1`) names another release of a library: its own
venv `<home>/venvs/LIB@VERSION`, built from a plan derived from the library's
default plan (`release_plan`), recorded under that name next to the default
entry, so that two releases can be fuzzed against each other.

Standard library only: this runs before any runtime exists.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MARKER = ".nablafuzz-plan.json"
REGISTRY = "runtimes.json"
LOG_TAIL_LINES = 20
LOG_LINE_WIDTH = 240
NO_RUNTIME = ("numpy_ref",)
_MISSING_HINT = {"oneflow": " (OneFlow 0.9.0 has no wheel for 3.11)"}


class InstallError(Exception):
    """An expected install failure; the message is meant for the user as is."""


RELEASE_SEP = "@"
# PEP 440's normal form (what pip prints), plus a local label: `2.21.0`, `0.5.0rc1`,
# `2.12.0+cpu`.  Only the normal form, so that one release has one registry name, and
# nothing a shell or pip would read as more than a version.
_VERSION = re.compile(r"(?:[1-9][0-9]*!)?(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*"
                      r"(?:(?:a|b|rc)(?:0|[1-9][0-9]*))?(?:\.post(?:0|[1-9][0-9]*))?"
                      r"(?:\.dev(?:0|[1-9][0-9]*))?(?:\+[a-z0-9]+(?:\.[a-z0-9]+)*)?")


def split_release(name: str) -> tuple[str, str | None]:
    """`jax@0.10.1` -> ("jax", "0.10.1"), `jax` -> ("jax", None).

    The one parser of release names (install, the registry, campaigns).  Raises
    InstallError when the part after `@` is empty or not a version in PEP 440's
    normal form; whether the library exists is the caller's question."""
    library, sep, version = name.partition(RELEASE_SEP)
    if not sep:
        return name, None
    if not version:
        raise InstallError(f"{name!r} names no version after {RELEASE_SEP!r}; "
                           f"write LIB{RELEASE_SEP}VERSION, e.g. jax{RELEASE_SEP}0.10.1")
    if not _VERSION.fullmatch(version):
        raise InstallError(f"version {version!r} in {name!r} is not a release version in pip's "
                           "normal form (PEP 440); write it as pip lists it, e.g. 0.10.1, "
                           "2.21.0rc1 or 2.12.0+cpu")
    return library, version


@dataclass(frozen=True)
class RuntimePlan:
    """What one venv should contain.

    `python_candidates` are tried in order: `$VAR` is an environment variable
    holding an interpreter path, `pyenv:X.Y` the newest pyenv `X.Y*` build, and
    anything else a command looked up on PATH (or an absolute path).  The
    minor versions named by `pythonX.Y` / `pyenv:X.Y` entries are the ones the
    plan accepts; with none named, any interpreter is accepted.
    """

    name: str
    libraries: tuple[str, ...]
    python_candidates: tuple[str, ...]
    requirements: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


PLANS: tuple[RuntimePlan, ...] = (
    RuntimePlan(
        name="py311",
        libraries=("torch", "jax", "tensorflow"),
        python_candidates=("$NABLAFUZZ_PYTHON311", "python3.11", "pyenv:3.11"),
        requirements=("torch==2.13.0+cpu", "jax==0.10.2", "jaxlib==0.10.2",
                      "tensorflow-cpu==2.21.0", "numpy==2.4.6",
                      # torch's OpInfo database (spec derivation) imports it
                      "expecttest==0.3.0"),
        env=(("TF_CPP_MIN_LOG_LEVEL", "2"), ("TF_ENABLE_ONEDNN_OPTS", "0")),
    ),
    RuntimePlan(
        name="oneflow",
        libraries=("oneflow",),
        python_candidates=("$NABLAFUZZ_PYTHON310", "python3.10", "pyenv:3.10",
                           "python3.9", "pyenv:3.9"),
        requirements=("oneflow==0.9.0", "numpy==1.26.4", "nvidia-cudnn-cu11==8.5.0.96",
                      "nvidia-cublas-cu11==11.10.3.66"),
        env=(("GLOG_minloglevel", "3"),),
    ),
)

LIBRARIES: tuple[str, ...] = tuple(lib for plan in PLANS for lib in plan.libraries)


@dataclass(frozen=True)
class Release:
    """How another release of a library is installed, relative to its default plan.

    Only the library itself, not the other libraries that share its default plan: a
    release venv exists to run one worker.  `pinned` are the library's own
    distributions, pinned to the requested version (the first one's installed version
    is recorded); `kept` are requirements of the default plan kept as they are (named
    by distribution); `loose` are installed unpinned, so that pip picks what the old
    release accepts (numpy 2.4 is too new for a jax of a year ago).
    """

    pinned: tuple[str, ...]
    kept: tuple[str, ...] = ()
    loose: tuple[str, ...] = ("numpy",)


RELEASES: dict[str, Release] = {
    # torch's PyPI wheels are the CUDA builds; for a CPU one name its local version
    # (torch@2.12.0+cpu) and point PIP_EXTRA_INDEX_URL at download.pytorch.org/whl/cpu
    "torch": Release(pinned=("torch",), kept=("expecttest",)),
    "jax": Release(pinned=("jax", "jaxlib")),
    "tensorflow": Release(pinned=("tensorflow-cpu",)),
    # OneFlow 0.9 needs numpy < 2 and the plan's CUDA 11 libraries
    "oneflow": Release(pinned=("oneflow",), loose=(),
                       kept=("numpy", "nvidia-cudnn-cu11", "nvidia-cublas-cu11")),
}


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def state_dir() -> Path:
    """`$NABLAFUZZ_HOME` if set, else `~/.cache/nablafuzz`."""
    home = os.environ.get("NABLAFUZZ_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "nablafuzz"


def _home(home: Path | str | None) -> Path:
    return Path(home).expanduser().absolute() if home else state_dir().absolute()


def registry_path(home: Path | str | None = None) -> Path:
    return _home(home) / REGISTRY


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def load_registry(home: Path | str | None = None) -> dict:
    """The recorded runtimes, `{}` when none were installed yet."""
    path = registry_path(home)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ok = isinstance(data, dict) and all(isinstance(v, dict) for v in data.values())
        problem = "" if ok else "not a mapping of library entries"
    except (OSError, ValueError) as exc:
        problem = str(exc)
    if problem:
        raise InstallError(f"corrupt runtime registry {path} ({problem}); "
                           "run `nablafuzz install` to rebuild it")
    return data


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _release_fields(name: str, versions: dict) -> dict:
    """A release entry also names its adapter and the version pip installed."""
    library, version = split_release(name)
    if version is None:
        return {}
    return {"library": library, "version": versions.get(RELEASES[library].pinned[0]) or version}


def _entries(plan: RuntimePlan, venv: Path, versions: dict) -> dict:
    entry = {"python": str(venv_python(venv)), "venv": str(venv), "plan": plan.name,
             "env": dict(plan.env)}
    return {lib: dict(entry, **_release_fields(lib, versions)) for lib in plan.libraries}


_PROBE = "import platform, sys; print(sys.executable); print(platform.python_version())"


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _probe(exe: str) -> Interpreter | None:
    """Run `exe` once; None when it is no working interpreter (e.g. a dead pyenv shim)."""
    try:
        proc = subprocess.run([exe, "-c", _PROBE], capture_output=True, text=True,
                              timeout=60, env=_clean_env())
    except (OSError, subprocess.SubprocessError):
        return None
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != 2:
        return None
    return Interpreter(path=lines[0], version=lines[1])


def _pyenv_root() -> Path:
    """What `pyenv root` prints, without needing pyenv on PATH."""
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(path).parents[1].name))


def _expand(candidate: str) -> list[str]:
    if candidate.startswith("$"):
        value = os.environ.get(candidate[1:])
        return [value] if value else []
    if candidate.startswith("pyenv:"):
        minor = candidate[len("pyenv:"):]
        pattern = str(_pyenv_root() / "versions" / f"{minor}*" / "bin" / f"python{minor}")
        return sorted(glob.glob(pattern), key=_version_key, reverse=True)
    found = shutil.which(candidate)
    return [found] if found else []


def _wanted_minors(plan: RuntimePlan) -> list[str]:
    minors = {m.group(1) for c in plan.python_candidates
              if (m := re.fullmatch(r"(?:python|pyenv:)(\d+\.\d+)", c))}
    return sorted(minors, key=lambda v: tuple(map(int, v.split("."))))


def _no_python_message(plan: RuntimePlan, wanted: list[str]) -> str:
    var = next((c[1:] for c in plan.python_candidates if c.startswith("$")), "the interpreter")
    what = f"<= {wanted[-1]}" if len(wanted) > 1 else " or ".join(wanted) or "interpreter"
    top = wanted[-1] if wanted else "3"
    return (f"no Python {what} found for the {plan.name} runtime; "
            f"set {var}=/path/to/python{top}{_MISSING_HINT.get(plan.name, '')}")


def _explicit(plan: RuntimePlan, var: str, exe: str, wanted: list[str]) -> Interpreter:
    interp = _probe(exe)
    if interp is None:
        raise InstallError(f"{var}={exe} does not run as a Python interpreter")
    if wanted and interp.minor not in wanted:
        raise InstallError(f"{var}={exe} is Python {interp.version}; the {plan.name} "
                           f"runtime needs Python {' or '.join(wanted)}")
    return interp


def find_python(plan: RuntimePlan) -> Interpreter:
    """The first working interpreter among the plan's candidates."""
    wanted = _wanted_minors(plan)
    for candidate in plan.python_candidates:
        for exe in _expand(candidate):
            if candidate.startswith("$"):
                return _explicit(plan, candidate[1:], exe, wanted)
            interp = _probe(exe)
            if interp and (not wanted or interp.minor in wanted):
                return interp
    raise InstallError(_no_python_message(plan, wanted))


def _pins(plan: RuntimePlan) -> list[tuple[str, str | None]]:
    """(distribution, exact version or None) for every requirement."""
    pins = []
    for req in plan.requirements:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;,<>=!~]+)\s*$)?", req)
        if not m:
            raise InstallError(f"cannot parse requirement {req!r} of plan {plan.name}")
        pins.append((m.group(1), m.group(2)))
    return pins


def plan_hash(plan: RuntimePlan, python_version: str) -> str:
    blob = json.dumps([plan.name, list(plan.requirements), python_version])
    return hashlib.sha256(blob.encode()).hexdigest()


_VERSIONS = """import json, sys
from importlib import metadata
def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
print(json.dumps({d: version(d) for d in sys.argv[1:]}))"""


def installed_versions(python: Path, dists: list[str]) -> dict | None:
    """Installed version (or None) of each distribution; None if `python` fails."""
    try:
        proc = subprocess.run([str(python), "-c", _VERSIONS, *dists], capture_output=True,
                              text=True, timeout=120, env=_clean_env())
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _pins_satisfied(plan: RuntimePlan, found: dict | None) -> bool:
    if found is None:
        return False
    return all(found.get(d) is not None and (v is None or found[d] == v) for d, v in _pins(plan))


def _read_marker(venv: Path) -> dict:
    try:
        return json.loads((venv / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_up_to_date(plan: RuntimePlan, venv: Path, digest: str) -> bool:
    """Marker matches the spec and every pinned distribution is present."""
    if _read_marker(venv).get("hash") != digest:
        return False
    found = installed_versions(venv_python(venv), [d for d, _ in _pins(plan)])
    return _pins_satisfied(plan, found)


def _short(line: str, width: int = LOG_LINE_WIDTH) -> str:
    """One log line, cut: pip's list of every version there is runs to thousands of characters."""
    return line if len(line) <= width else line[:width - 3] + "..."


def _tail(logfile: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = logfile.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + _short(line) for line in text[-lines:])


def _last_error(logfile: Path, offset: int) -> str:
    """pip's last `ERROR:` line (its conclusion) among what a command wrote from `offset` on."""
    try:
        with open(logfile, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR:")]
    return _short(errors[-1]) if errors else ""


def _run_logged(cmd: list[str], logfile: Path, what: str, hint: str = "") -> None:
    with open(logfile, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        offset = fh.tell()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_clean_env())
    if proc.returncode != 0:
        said = _last_error(logfile, offset)
        raise InstallError(
            f"{what} failed (exit {proc.returncode}){': ' + said if said else ''}{hint}; "
            f"see {logfile}, last lines:\n{_tail(logfile)}"
        )


def _pip_hint(plan: RuntimePlan, interp: Interpreter) -> str:
    """For a release plan: how to list the releases pip can install with this interpreter."""
    library, version = split_release(plan.name)
    if version is None:
        return ""
    dist = RELEASES[library].pinned[0]
    return (f"; is {version} a release of {dist} for Python {interp.minor}? "
            f"`{interp.path} -m pip index versions {dist}` lists them")


def _create(plan: RuntimePlan, interp: Interpreter, venv: Path, logfile: Path) -> dict:
    """Create the venv, pip-install the pins, and return the installed versions."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text(f"# plan {plan.name} with Python {interp.version} ({interp.path})\n")
    cmd = [interp.path, "-m", "venv", str(venv)]
    _run_logged(cmd if plan.requirements else cmd + ["--without-pip"], logfile, "venv creation")
    if plan.requirements:
        pip = [str(venv_python(venv)), "-m", "pip", "install", "--no-cache-dir",
               "--progress-bar", "off", *plan.requirements]
        _run_logged(pip, logfile, "pip install", _pip_hint(plan, interp))
    found = installed_versions(venv_python(venv), [d for d, _ in _pins(plan)])
    if not _pins_satisfied(plan, found):
        raise InstallError(f"installed versions {found} do not match {list(plan.requirements)}; "
                           f"see {logfile}")
    return found


def build_plan(plan: RuntimePlan, home: Path, force: bool = False,
               log: Callable[[str], None] = print) -> dict:
    """Make `<home>/venvs/<plan>` match the plan; return its registry entries."""
    start = time.monotonic()
    interp = find_python(plan)
    venv = home / "venvs" / plan.name
    digest = plan_hash(plan, interp.version)
    if not force and is_up_to_date(plan, venv, digest):
        log(f"[{plan.name}] up to date: {venv} (checked in {time.monotonic() - start:.1f} s)")
        return _entries(plan, venv, _read_marker(venv).get("versions") or {})
    if venv.exists():
        log(f"[{plan.name}] removing {'old' if force else 'stale or incomplete'} venv {venv}")
        shutil.rmtree(venv)
    logfile = home / "logs" / f"{plan.name}.log"
    log(f"[{plan.name}] building with Python {interp.version} ({interp.path}); log: {logfile}")
    try:
        found = _create(plan, interp, venv, logfile)
    except BaseException:
        # unusable, and a mistyped release would never be rebuilt (and so removed); the log stays
        shutil.rmtree(venv, ignore_errors=True)
        raise
    marker = {"hash": digest, "plan": plan.name, "requirements": list(plan.requirements),
              "python": interp.version, "interpreter": interp.path, "versions": found}
    _write_json(venv / MARKER, marker)
    log(f"[{plan.name}] built in {time.monotonic() - start:.0f} s: {venv}")
    return _entries(plan, venv, found)


def _default_plan(library: str) -> RuntimePlan:
    return next(plan for plan in PLANS if library in plan.libraries)


def _requirement(plan: RuntimePlan, dist: str) -> str:
    """The plan's requirement string for `dist`."""
    return next(req for req, (name, _) in zip(plan.requirements, _pins(plan)) if name == dist)


def release_plan(name: str) -> RuntimePlan:
    """The plan of `LIB@VERSION`: the default plan of LIB (its interpreters, its
    environment) with only LIB's own distributions, pinned to VERSION (see Release)."""
    library, version = split_release(name)
    if version is None:
        raise InstallError(f"{name!r} names no release; write LIB{RELEASE_SEP}VERSION, "
                           f"e.g. jax{RELEASE_SEP}0.10.1")
    if library in NO_RUNTIME:
        raise InstallError(f"{name!r}: {library} runs in nablafuzz's own interpreter and has no "
                           f"releases to install; name one of {', '.join(LIBRARIES)}")
    if library not in RELEASES:
        raise InstallError(f"unknown library {library!r} in {name!r}; choose from "
                           f"{', '.join(LIBRARIES)}, e.g. jax{RELEASE_SEP}0.10.1")
    base, recipe = _default_plan(library), RELEASES[library]
    requirements = (tuple(f"{dist}=={version}" for dist in recipe.pinned)
                    + tuple(_requirement(base, dist) for dist in recipe.kept) + recipe.loose)
    return RuntimePlan(name=name, libraries=(name,), python_candidates=base.python_candidates,
                       requirements=requirements, env=base.env)


def select_plans(libraries: list[str] | None) -> tuple[RuntimePlan, ...]:
    """The plans serving `libraries` (None = every library; `LIB@VERSION` = a release)."""
    if libraries is None:
        return PLANS
    releases = tuple(release_plan(lib) for lib in dict.fromkeys(libraries) if RELEASE_SEP in lib)
    defaults = [lib for lib in libraries if RELEASE_SEP not in lib]
    unknown = [lib for lib in defaults if lib not in LIBRARIES + NO_RUNTIME]
    if unknown:
        raise InstallError(f"unknown library {', '.join(map(repr, unknown))}; "
                           f"choose from {', '.join(LIBRARIES)}")
    if not libraries:
        raise InstallError(f"no library requested; choose from {', '.join(LIBRARIES)}")
    return tuple(plan for plan in PLANS if set(plan.libraries) & set(defaults)) + releases


def _previous_registry(home: Path, log: Callable[[str], None]) -> dict:
    try:
        return load_registry(home)
    except InstallError as exc:
        log(f"ignoring the old registry: {exc}")
        return {}


def _build_all(plans, home: Path, force: bool, log) -> dict:
    """Build every plan at once; a plan's result is its entries or its exception."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(plans))) as pool:
        futures = {plan: pool.submit(build_plan, plan, home, force, log) for plan in plans}
    return {plan: future.exception() or future.result() for plan, future in futures.items()}


def install_plans(plans, home: Path | str | None = None, force: bool = False,
                  log: Callable[[str], None] = print) -> dict:
    """Build `plans`, merge what succeeded into the registry, then report failures.

    Only the entries of the plans built here change: a release (`jax@0.10.1`) is an
    entry of its own, so building it keeps `jax`, and rebuilding `jax` keeps it."""
    home = _home(home)
    registry = _previous_registry(home, log)
    failures = []
    for plan, result in _build_all(plans, home, force, log).items():
        for lib in plan.libraries:
            registry.pop(lib, None)
        if isinstance(result, BaseException):
            kind = "" if isinstance(result, InstallError) else f"{type(result).__name__}: "
            failures.append(f"{plan.name}: {kind}{result}")
        else:
            registry.update(result)
    _write_json(registry_path(home), registry)
    if failures:
        raise InstallError(f"{len(failures)} runtime(s) failed (the registry "
                           f"{registry_path(home)} keeps the others):\n" + "\n".join(failures))
    return registry


def install(libraries: list[str] | None = None, home: Path | None = None, force: bool = False,
            log: Callable[[str], None] = print) -> dict:
    """Build the runtimes serving `libraries` (None = all) and return the registry."""
    return install_plans(select_plans(libraries), home=home, force=force, log=log)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nablafuzz install", description=__doc__.split("\n")[0])
    parser.add_argument("--only", metavar="LIBS",
                        help=f"comma-separated subset of {','.join(LIBRARIES)}; LIB{RELEASE_SEP}"
                             f"VERSION (e.g. jax{RELEASE_SEP}0.10.1) builds that release "
                             "next to the default one")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--home", metavar="DIR",
                        help="state directory (default $NABLAFUZZ_HOME or ~/.cache/nablafuzz)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    libraries = None
    if args.only is not None:
        libraries = [lib.strip() for lib in args.only.split(",") if lib.strip()]
    start = time.monotonic()
    try:
        registry = install(libraries, home=args.home, force=args.force)
    except InstallError as exc:
        print(f"nablafuzz install: error: {exc}", file=sys.stderr)
        return 2
    for lib, entry in sorted(registry.items()):
        print(f"  {lib:<11} {entry['python']}")
    print(f"registry: {registry_path(args.home)} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One validated, immutable campaign configuration, with named profiles.

Profiles give defaults; command-line values override them field by field through
`make_config`, which is the only constructor that validates.  Nothing here reads files or
starts processes.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from .errors import ConfigError
from .quantities import ALL as ALL_SCENARIOS
from .quantities import COMPILED, ENTRY, KERNELS, THIRD_ORDER


@dataclass(frozen=True)
class Config:
    libraries: Tuple[str, ...] = ("numpy_ref",)
    apis: Tuple[str, ...] = ("*",)
    spec_files: Tuple[str, ...] = ()
    spec_dir: str = "api_specs"
    store_dir: str = "bug_reports"
    campaign_dir: str = ".nablafuzz/campaigns"
    trials_per_api: int = 50
    budget_s: float = 600.0
    api_budget_s: float = 60.0
    seed: int = 0
    workers: int = 2
    max_tensor_size: int = 64
    max_rank: int = 4
    trial_timeout_s: float = 30.0
    memory_limit_mb: int = 0  # per worker; make_config derives it from the machine unless given (0: none)
    scenarios: Tuple[str, ...] = ALL_SCENARIOS
    compiled: Optional[bool] = None  # None: each library's default (Library.compiled_by_default)
    staged: Optional[bool] = None  # compiled scenario kernels and signature pools; None: Library.staged
    minimise: bool = True
    name: str = ""
    profile: str = "default"
    cross: bool = False  # one trial per equivalence class, run by every member library (crosscampaign)
    equivalence_file: str = ""  # default: <spec_dir>/equivalence.yaml
    regime_share: float = 0.25  # trials whose float inputs come from a value regime (regimes.py)
    programs: bool = False  # also fuzz programs of 2-4 of each library's selected ops (programs.py)
    max_programs: int = 100  # programs per library when `programs` is on; each gets trials_per_api trials
    entry_points: bool = False  # also the transforms users call: jacrev, jacfwd, vmap, hessian (ENTRY)
    third_order: bool = False  # also third order by composition, for specs with second order (THIRD_ORDER)
    kernels: bool = False  # also the call and VJP with the library's other kernels (KERNELS: oneDNN, mkldnn)
    reference: bool = False  # judge elementwise APIs against their 50-digit reference (reference.py)
    # pick each trial among candidates by a per-API validity classifier (campaign/validity.py);
    # None: when scikit-learn is installed (the default and nightly profiles)
    validity_model: Optional[bool] = False
    executor: str = "threads"  # where trials run: worker threads here, or "ray" actors (campaign/distributed.py)
    versions: Tuple[str, ...] = ()  # two runtimes of one library, older first (jax@0.10.1, jax): campaign/releases.py
    address: str = ""  # --executor ray: the cluster to join ("auto", HOST:PORT); "": a private one on this machine


PROFILES: Dict[str, Dict[str, Any]] = {
    "default": {"validity_model": None},
    "smoke": {"trials_per_api": 12, "budget_s": 300.0, "api_budget_s": 20.0},
    "nightly": {"trials_per_api": 400, "budget_s": 6 * 3600.0, "api_budget_s": 300.0, "compiled": True,
                "entry_points": True, "third_order": True, "kernels": True, "reference": True,
                "validity_model": None},
}

_RULES = [
    ("trials_per_api", lambda v: v >= 1, "at least 1"),
    ("budget_s", lambda v: v > 0, "a positive number of seconds"),
    ("api_budget_s", lambda v: v > 0, "a positive number of seconds"),
    ("workers", lambda v: 1 <= v <= 64, "between 1 and 64"),
    ("max_tensor_size", lambda v: 1 <= v <= 4096, "between 1 and 4096 elements"),
    ("max_rank", lambda v: 0 <= v <= 8, "between 0 and 8"),
    ("trial_timeout_s", lambda v: v > 0, "a positive number of seconds"),
    ("memory_limit_mb", lambda v: v == 0 or v >= 256, "0 (no limit) or at least 256"),
    ("budget_s", lambda v: v < 10 ** 9, "below 1e9 seconds"),
    ("regime_share", lambda v: 0 <= v <= 1, "a fraction between 0 and 1"),
    ("max_programs", lambda v: 1 <= v <= 10000, "between 1 and 10000 programs per library"),
    ("seed", lambda v: 0 <= v < 2 ** 63, "a non-negative integer below 2**63"),
    ("libraries", lambda v: len(v) >= 1, "at least one library"),
    ("executor", lambda v: v in ("threads", "ray"), "threads or ray"),
]


def make_config(profile: str = "default", **overrides: Any) -> Config:
    """Build and validate a Config: profile defaults, then non-None overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    known = {f.name for f in dataclasses.fields(Config)}
    values = dict(PROFILES[profile], profile=profile)
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}; known settings: {', '.join(sorted(known))}")
        if value is not None:
            values[key] = tuple(value) if isinstance(value, list) else value
    values.setdefault("workers", min(2, os.cpu_count() or 1))
    values.setdefault("memory_limit_mb", default_memory_limit(values["workers"]))
    config = Config(**values)
    _validate(config)
    return config


MEMORY_FLOOR_MB = 4096  # OneFlow's worker alone maps ~4 GiB of address space after import


def default_memory_limit(workers: int) -> int:
    """Each worker's address-space limit unless --memory-limit says otherwise: the machine's
    memory shared by the workers and two more (the orchestrator, and headroom), at least
    MEMORY_FLOOR_MB, so one runaway function cannot starve the machine."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError):
        return 0
    return max(MEMORY_FLOOR_MB, total // (workers + 2))



def _validate(config: Config) -> None:
    for name, ok, rule in _RULES:
        value = getattr(config, name)
        if not ok(value):
            raise ConfigError(f"setting {name}={value!r} is invalid: it must be {rule}")
    if config.versions and (config.cross or config.programs):
        raise ConfigError("setting versions (a release-vs-release campaign) runs one library's APIs in two of its "
                          "releases; drop --cross and --programs")
    if config.versions and {v.partition("@")[0] for v in config.versions} != set(config.libraries):
        raise ConfigError(f"setting versions={list(config.versions)} names runtimes of a library other than "
                          f"libraries={list(config.libraries)}; drop -l (the library of --versions is used)")
    if config.programs and config.cross:
        raise ConfigError("setting programs=True needs an in-library campaign: programs are not cross-library "
                          "classes; drop --cross or --programs")
    unknown = [s for s in config.scenarios if s not in ALL_SCENARIOS + (COMPILED, KERNELS) + ENTRY + THIRD_ORDER]
    if unknown:
        raise ConfigError(f"setting scenarios has unknown id(s) {unknown}: choose from {', '.join(ALL_SCENARIOS)}")

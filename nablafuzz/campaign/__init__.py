"""`nablafuzz campaign`: the loop (loop.py) around one of three oracles, in-library (inlib.py),
cross-library (cross.py) or release-vs-release (releases.py), run on worker threads or, with
--executor ray, on Ray actors (distributed.py, imported only then); this entry is the one
module that knows them all."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..core.config import Config
from ..core.errors import ConfigError
from ..reports.vetting import with_store_issues
from ..runtime.registry import resolve_runtime
from ..specs.spec import load_specs
from .cross import CrossLibrary
from .inlib import InLibrary
from .releases import Releases
from .loop import Campaign
from .stats import Summary


def oracle_for(config: Config):
    """The oracle class of a campaign: cross-library, release-vs-release, or in-library."""
    return CrossLibrary if config.cross else Releases if config.versions else InLibrary


def run_campaign(config: Config, progress=None) -> Summary:
    specs = load_specs(Path(config.spec_dir), config.libraries, [Path(f) for f in config.spec_files])
    specs = replace(specs, specs=tuple(with_store_issues(specs.specs, Path(config.store_dir))))  # vetting.py
    executor = None
    if config.executor == "ray":
        from .distributed import RayExecutor  # Ray is an optional extra, imported only when asked for
        executor = RayExecutor
    campaign = Campaign(config, specs, oracle_for(config), progress, executor=executor)
    for library in config.libraries + config.versions:
        resolve_runtime(library)  # fail fast, before any thread starts, if a runtime is missing
    if not campaign.oracle.specs:
        raise ConfigError(f"no API spec matches libraries {', '.join(config.libraries)} and API globs "
                          f"{', '.join(config.apis)} (spec dir {config.spec_dir}); derive specs with "
                          "`nablafuzz specs derive <library>` or pass --specs FILE"
                          + ("; --cross needs classes with two or more members among these libraries "
                             "(api_specs/equivalence.yaml, `nablafuzz specs derive-cross`)" if config.cross else ""))
    try:
        return campaign.run()
    finally:
        campaign.close_runners()

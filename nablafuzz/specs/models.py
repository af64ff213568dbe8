"""Model specs for `nablafuzz modelfuzz`: which models exist and how each library builds them.

A model spec file (the shipped one is `models/models.yaml`) lists models; each names, per
library, a `module:function` that the library's worker imports (the module is looked up in
the spec file's directory) and calls with no arguments.  It returns `(fn, params, (x, y))`:
`fn(params, x, y)` gives a dict of the library's tensors with at least `loss` (one value per
example) and `logits`, and any named activations; `params` is a flat dict of the library's
tensors; `x`, `y` are numpy seed inputs and labels.  A model is only ever built from a loaded
spec: a report names a model, never code (Note [model names]).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import yaml

from ..core.errors import SpecError

MODELS_FILE = Path("models") / "models.yaml"  # the shipped models, relative to a checkout
MODEL_PREFIX = "model:"  # a model report's API name: model:<name>
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BUILD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
_FIELDS = {"name", "description", "build", "input_range", "layers", "sigma"}
SIGMA = 0.2  # the Gaussian mutation's standard deviation where a model names none


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Tuple[Tuple[str, str], ...]  # (library, "module:function")
    input_range: Tuple[float, float]
    layers: Tuple[str, ...]
    source: str  # the spec file
    directory: str  # its directory: the builders' modules are found there
    sigma: float = SIGMA  # the fuzz loop's mutation, unless --sigma says otherwise

    @property
    def api(self) -> str:
        """The name its findings carry in the report store."""
        return MODEL_PREFIX + self.name

    def builder(self, library: str) -> Optional[str]:
        return dict(self.build).get(library)

    @property
    def libraries(self) -> Tuple[str, ...]:
        return tuple(lib for lib, _ in self.build)


def _need(cond: bool, source: str, name: str, field: str, problem: str, fix: str) -> None:
    if not cond:
        raise SpecError(source, name, field, problem, fix)


def _model(entry: Any, source: str, directory: str) -> ModelSpec:
    _need(isinstance(entry, dict), source, "", "models", f"each entry must be a mapping, got {type(entry).__name__}",
          "write `- name: ...` with build, input_range")
    name = entry.get("name")
    _need(isinstance(name, str) and bool(_NAME.match(name)), source, str(name), "name",
          f"{name!r} is not a model name", "letters, digits and _ only, e.g. digits_unsafe")
    unknown = sorted(set(entry) - _FIELDS)
    _need(not unknown, source, name, unknown[0] if unknown else "", "unknown field",
          f"remove it; the fields are {', '.join(sorted(_FIELDS))}")
    build = entry.get("build")
    _need(isinstance(build, dict) and bool(build), source, name, "build", "must map libraries to module:function",
          "e.g. build: {torch: digits:build_torch}")
    for lib, target in build.items():
        _need(isinstance(target, str) and bool(_BUILD.match(target)), source, name, f"build.{lib}",
              f"{target!r} is not module:function", "e.g. digits:build_torch (module beside the spec file)")
    rng = entry.get("input_range", [-1.0, 1.0])
    ok = isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng) and rng[0] < rng[1]
    _need(ok, source, name, "input_range", f"{rng!r} is not [low, high] with low < high", "e.g. input_range: [-1.0, 1.0]")
    layers = entry.get("layers", [])
    _need(isinstance(layers, list) and all(isinstance(v, str) and _NAME.match(v) for v in layers), source, name,
          "layers", f"{layers!r} is not a list of activation names", "e.g. layers: [h1, h2] (keys of fn's output)")
    sigma = entry.get("sigma", SIGMA)
    _need(isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0, source, name, "sigma",
          f"{sigma!r} is not a positive number", "e.g. sigma: 0.5 (the mutation's standard deviation)")
    return ModelSpec(name, str(entry.get("description", "")), tuple(sorted(build.items())),
                     (float(rng[0]), float(rng[1])), tuple(layers), source, directory, float(sigma))


def load_model_specs(paths: Iterable[Path]) -> Dict[str, ModelSpec]:
    """Every model of the given spec files by name; a name defined twice is an error."""
    out: Dict[str, ModelSpec] = {}
    for path in paths:
        source = str(path)
        try:
            data = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except OSError as exc:
            raise SpecError(source, "", "models", f"cannot be read ({exc.strerror})",
                            "pass --models naming a model spec file, e.g. models/models.yaml") from None
        except yaml.YAMLError as exc:
            raise SpecError(source, "", "models", f"not valid YAML ({str(exc).splitlines()[0]})",
                            "fix the YAML syntax") from None
        _need(isinstance(data, dict) and isinstance(data.get("models"), list), source, "", "models",
              "the file must be a mapping with a `models:` list", "see models/models.yaml")
        for entry in data["models"]:
            spec = _model(entry, source, str(Path(path).resolve().parent))
            _need(spec.name not in out, source, spec.name, "name", "is defined twice",
                  f"rename one (the other is in {out[spec.name].source if spec.name in out else ''})")
            out[spec.name] = spec
    return out


def model_name(api: str) -> Optional[str]:
    """`model:<name>` -> name; None for an API that is not a model."""
    return api[len(MODEL_PREFIX):] if api.startswith(MODEL_PREFIX) else None

"""The side tables beside the spec files (api_specs/regimes.yaml, batching.yaml,
references.yaml): read one section, or fail naming the file and how to fix it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..core.errors import SpecError

MISSING = object()


def read_section(path: Path, key: str, fix: str) -> Any:
    """The `key` entry of a YAML side table, MISSING if the file does not exist; a SpecError
    naming the file and `fix` if it is not readable YAML or has no such entry."""
    if not path.exists():
        return MISSING
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), "", "(file)", f"cannot be read as YAML: {exc}", fix) from None
    if not isinstance(data, dict) or key not in data:
        raise SpecError(str(path), "", key, f"expected a top-level `{key}:` entry", fix)
    return data[key]

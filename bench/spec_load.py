"""Seconds to load every library's API specs, with libyaml's parser (what nablafuzz uses where
installed) and with PyYAML's pure-Python one; both give the same specs.

    python bench/spec_load.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.specs import spec  # noqa: E402

LIBRARIES = ["torch", "jax", "tensorflow", "oneflow"]


def timed():
    start = time.perf_counter()
    loaded = spec.load_specs(ROOT / "api_specs", LIBRARIES)
    return time.perf_counter() - start, loaded


fast, a = timed()


class PurePython(yaml.SafeLoader):
    pass


for tag, fn in ((yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, spec._construct_mapping),
                (yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, spec._construct_sequence)):
    PurePython.add_constructor(tag, fn)
spec._LineLoader = PurePython
slow, b = timed()
print(f"{len(a.specs)} specs: libyaml {fast:.2f} s, pure Python {slow:.2f} s ({slow / fast:.1f}x); same specs: {a == b}")

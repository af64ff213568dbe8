"""Print the longest import chain of the package, counting module-level imports (what importing a
module runs) and every import (function-level ones too), and whether any import closes a cycle.

    python bench/import_chains.py > bench/results/import-chains.txt
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_layers import _graph  # noqa: E402  (the graph the layering test checks)


def longest(graph):
    @functools.lru_cache(maxsize=None)
    def chain(m, stack=()):
        if m in stack:  # a cycle: report it as the chain's end
            return (m + " (cycle)",)
        return (m,) + max((chain(d, stack + (m,)) for d in graph[m]), key=len, default=())
    return max((chain(m) for m in graph), key=len)


for what, module_level in (("module-level imports", True), ("every import", False)):
    path = longest(_graph(module_level))
    print(f"{what}: longest chain {len(path)} modules: {' -> '.join(path)}")

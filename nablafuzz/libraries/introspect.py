"""A library's public callables and their signatures, for the probing spec source.

Runs inside the library's worker (it imports the library's modules); the orchestrator turns
the catalogue into argument templates and probes them (`nablafuzz.derive.probing`).  Aliases (the same
function object under several names) are listed once, under the first name, with the others
recorded.  Worker-safe: Python 3.10, numpy 1.26.
"""
from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Dict, List, Optional, Pattern, Sequence, Tuple, Union

from ..core.structures import doc_structures


def _default(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
        return list(value)
    return f"<{type(value).__name__}>"


def _annotation(p: inspect.Parameter) -> str:
    a = p.annotation
    if a is inspect.Parameter.empty:
        return ""
    return a if isinstance(a, str) else a.__name__ if isinstance(a, type) else str(a)


def _params(fn: Any) -> List[Dict[str, Any]]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        entry = {"name": p.name, "kind": p.kind.name.lower(), "annotation": _annotation(p)[:200],
                 "required": p.default is inspect.Parameter.empty
                 and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if p.default is not inspect.Parameter.empty:
            entry["default"] = _default(p.default)
        out.append(entry)
    return out


def catalogue(modules: Sequence[Union[str, Tuple[str, Any]]], skip: Optional[Pattern[str]] = None,
              alias_modules: Sequence[Tuple[str, Any]] = ()) -> Dict[str, Any]:
    """{"entries": [{name, module, params, doc, aliases}], "dropped": ["name: why"]} for the
    public callables (not classes, not modules) of `modules`, in order.  A module is given by
    its import name, or as (public name, module object) where the two differ (`tf.math`).
    `alias_modules` only add aliases: their names for objects already listed (`tf.compat.v1`)."""
    entries: Dict[int, Dict[str, Any]] = {}
    dropped: List[str] = []
    for item in modules:
        module, mod = item if isinstance(item, tuple) else (item, None)
        try:
            mod = mod if mod is not None else importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - recorded, the other modules still count
            dropped.append(f"{module}: cannot import: {type(exc).__name__}: {exc}")
            continue
        for attr in sorted(dir(mod)):
            name = f"{module}.{attr}"
            obj = getattr(mod, attr, None)
            if attr.startswith("_") or not callable(obj) or inspect.isclass(obj) or inspect.ismodule(obj):
                continue
            if id(obj) in entries:
                entries[id(obj)]["aliases"].append(name)
                continue
            if skip is not None and skip.search(name):
                dropped.append(f"{name}: not an API to differentiate (skipped by name)")
                continue
            try:
                params = _params(obj)
            except (TypeError, ValueError) as exc:
                dropped.append(f"{name}: no signature ({exc})")
                continue
            full = (inspect.getdoc(obj) or "").strip()
            entries[id(obj)] = {"name": name, "module": module, "params": params, "doc": full.split("\n")[0][:160],
                                "aliases": [], "structures": doc_structures(full, [p["name"] for p in params])}
    for module, mod in alias_modules:
        for attr in sorted(dir(mod)) if mod is not None else ():
            obj = getattr(mod, attr, None)
            if not attr.startswith("_") and id(obj) in entries:
                entries[id(obj)]["aliases"].append(f"{module}.{attr}")
    return {"entries": _merge_documented_aliases(list(entries.values())), "dropped": dropped}


ALIAS_DOC = re.compile(r"^Alias (?:of|for) :\w+:`~?([\w.]+)`")


def _merge_documented_aliases(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A wrapper whose docstring says it is an alias of a listed API (numpy-style names such as
    `acos` for `arccos`) is counted as an alias of that API, not as an API of its own."""
    by_name = {e["name"]: e for e in entries}
    kept = []
    for e in entries:
        m = ALIAS_DOC.match(e["doc"])
        target = by_name.get(m.group(1)) if m else None
        if target is not None and target is not e:
            target["aliases"].append(e["name"])
        else:
            kept.append(e)
    return kept


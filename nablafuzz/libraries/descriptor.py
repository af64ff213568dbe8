"""What the rest of nablafuzz knows about one library: one `Library` record in the library's
own folder (`libraries/<lib>/__init__.py`), read through the registry (`libraries/__init__.py`).

Its adapter (imported only inside the library's worker), its part of repro scripts, the words it
uses for "this derivative is not implemented", where numpy's functions live in it, its `where`,
its other kernels, how a maintainer prints its environment, its campaign defaults and where its
specs come from.  Importing a descriptor imports no deep-learning library.  Worker-safe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Tuple


# set (to anything) in a worker's environment: a library whose record says `forked_worker` is served
# unforked (Note [stuck child] in worker/main.py)
UNFORKED = "NABLAFUZZ_UNFORKED"


class Renderer(NamedTuple):
    """A library's part of the script: import lines, the names its APIs start with, AD helpers
    (defining `flatten`, and `compiled` where `compiler` names the library's compiled form)."""
    head: Tuple[str, ...]
    roots: Tuple[Tuple[str, str], ...]  # (API root, the name the script imports it as)
    helpers: str
    compiler: str = ""  # what the `jit` scenario compiles with; "" refuses `jit` reports
    submodules: bool = False  # whether `import <root>` may leave an API's module unloaded
    permute: str = ""  # an axis permutation of {x} by {p} (a trial's layout), "" if none
    triangle: Tuple[str, str] = ("", "")  # the lower and upper triangle of {x} (structured inputs)
    dtype: str = "{name!r}"  # a dtype argument named {name}, as the library's dtype object
    entry: str = ""  # the library's functional transforms for the entry-point scenarios ("" none)
    entry_helpers: Tuple[Callable, ...] = ()  # functions `entry` calls, whose source the script includes
    # layer specs (a module class fuzzed as a function of its inputs and parameters): the script
    # lines defining `layer`, given the class expression and its init arguments as literals (None: none)
    layer: Optional[Callable[[str, str, str], List[str]]] = None


@dataclass(frozen=True)
class Library:
    name: str
    adapter: str  # "module:factory", imported only inside the library's worker
    renderer: Optional[Renderer] = None  # its part of repro scripts (None: reports replay only)
    unsupported: Tuple[Tuple[str, str], ...] = ()  # (row, regex): "not implemented" in its own words
    numpy_prefixes: Tuple[str, ...] = ()  # where numpy's functions live in it (specs/counterpart.py)
    where: str = ""  # its `where`, for the where(e1|e2) step of programs
    kernels_env: Tuple[Tuple[str, str], ...] = ()  # the environment of its other kernels (`kernels`)
    env_report: str = "`pip list`"  # how a maintainer prints the full environment
    compiled_by_default: bool = False  # the `jit` scenario in every trial (a cheap compiler)
    staged: bool = False  # compiled scenario kernels and signature pools by default (Note [staged scenarios])
    # its eager AD path can fail where its compiled one does not (TensorFlow's eager and graph
    # gradients differ): a staged campaign runs each signature's first trial eagerly (Note [eager first])
    eager_differs: bool = False
    # its worker serves from a child forked once the library is imported (Note [forked worker] in
    # worker/main.py): only for a library whose forked child runs as it would unforked
    forked_worker: bool = False
    entry_points: bool = False  # its adapter gives the functional transforms of the entry points
    namespaces: Tuple[str, ...] = ()  # its public namespaces (the equivalence-map derivation)
    mirror: Optional[Tuple[str, Tuple[Tuple[str, str], ...]]] = None  # specs mirrored from another library

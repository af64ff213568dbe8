"""The numpy reference backend (tests and planted bugs): runs in the orchestrator's own
interpreter; its programs compose the steps' hand-written derivatives (no `where` API)."""
from __future__ import annotations

from ..descriptor import Library, Renderer
from ..scripts import FLATTEN
from .script import TEXT

LIBRARY = Library("numpy_ref", "nablafuzz.libraries.numpy_ref.adapter:make_adapter", Renderer((), (), FLATTEN + TEXT),
                  numpy_prefixes=("",))

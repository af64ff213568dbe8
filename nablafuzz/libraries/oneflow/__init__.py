"""OneFlow: what nablafuzz knows about it (the adapter is adapter.py, run in its worker)."""
from __future__ import annotations

from ..descriptor import Library, Renderer
from ..scripts import COMPOSED, FLATTEN, JVP_OF_JVP, TENSOR
from .script import TEXT

LIBRARY = Library(
    "oneflow", "nablafuzz.libraries.oneflow.adapter:make_adapter",
    Renderer(("import oneflow",), (("oneflow", "oneflow"), ("flow", "oneflow")),
             FLATTEN + TENSOR + TEXT + JVP_OF_JVP + COMPOSED, permute="{x}.permute(*{p})",
             triangle=("oneflow.tril({x})", "oneflow.triu({x})"), dtype="oneflow.{name}"),
    unsupported=(
        ("gradient_function_not_found", r"gradient function for op \S+ is not found"),
        ("not_implemented", r"not implemented"),
        ("no_backward", r"does not support (backward|grad)"),
    ),
    numpy_prefixes=("oneflow.Tensor.", "oneflow."),
    where="oneflow.where",
    env_report="`python -m oneflow --doctor`",
    # its virtual machine's threads spin beside the worker's; a forked child runs it in the
    # calling thread (Note [forked worker] in worker/main.py)
    forked_worker=True,
    namespaces=("oneflow.", "oneflow.nn.functional.", "oneflow.linalg.", "oneflow.special."),
    # OneFlow mirrors PyTorch's API: its specs are torch's, renamed, each confirmed by running it
    mirror=("torch", (("torch.", "oneflow."),)),
)

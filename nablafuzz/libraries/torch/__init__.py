"""PyTorch: what nablafuzz knows about it (the adapter is adapter.py, run in its worker)."""
from __future__ import annotations

from ..descriptor import Library, Renderer
from ..scripts import COMPOSED, TENSOR
from .script import TEXT, layer_lines

LIBRARY = Library(
    "torch", "nablafuzz.libraries.torch.adapter:make_adapter",
    Renderer(("import torch", "import torch.autograd.forward_ad as fwAD"), (("torch", "torch"),),
             TENSOR + TEXT + COMPOSED, compiler="torch.compile", permute="{x}.permute(*{p})",
             triangle=("torch.tril({x})", "torch.triu({x})"), dtype="torch.{name}",
             entry="types.SimpleNamespace(jacrev=torch.func.jacrev, jacfwd=torch.func.jacfwd, "
                   "hessian=torch.func.hessian, vmap=torch.func.vmap, vjp=torch.func.vjp, stack=torch.stack, sum=torch.sum, "
                   "graph=None, "
                   "to_numpy=to_numpy, native=lambda v, o: torch.as_tensor(v).to(o.dtype))",
             layer=layer_lines),
    unsupported=(
        ("derivative_not_implemented", r"derivative for .* is not implemented"),
        ("forward_ad_not_implemented", r"Trying to use forward AD with .* that does not support it"),
        ("custom_function_without_jvp", r"must implement the jvp function for custom autograd\.Function"),
        ("custom_function_in_torch_func", r"autograd\.Function with functorch transforms .* must override the setup_context"),
        ("nested_forward_ad", r"Nested forward mode AD is not supported"),
        ("no_batching_rule", r"does not yet have a batching rule"),
        ("batching_rule_not_implemented", r"Batching rule not implemented for"),
        # vmap's default randomness="error" refuses a random op by design (torch.func docs)
        ("vmap_randomness", r"called random operation while in randomness error mode"),
    ),
    numpy_prefixes=("torch.Tensor.", "torch."),
    where="torch.where",
    # its other kernels: mkldnn off (the adapter reads NABLAFUZZ_MKLDNN); its workers run it on, as users do
    kernels_env=(("NABLAFUZZ_MKLDNN", "0"),),
    env_report="`python -m torch.utils.collect_env`",
    entry_points=True,
    namespaces=("torch.", "torch.special.", "torch.linalg.", "torch.nn.functional.", "torch.fft."),
)

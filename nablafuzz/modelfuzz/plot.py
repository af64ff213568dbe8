"""The TensorFuzz-style figure: corpus size and objectives hit over mutations, guided vs random."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from .loop import Run


def plot_runs(path: Path, title: str, runs: Dict[str, Run]) -> bool:
    """Write the PNG; False (and nothing written) where matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for how, r in runs.items():
        xs = [0] + [c[0] for c in r.curve]
        top.plot(xs, [len(r.roots)] + [c[1] for c in r.curve], label=how)
        bottom.step(xs, [0] + [c[2] for c in r.curve], where="post", label=how)
        for h in r.hits:
            bottom.axvline(h.mutation, linestyle=":", color=top.lines[-1].get_color())
    top.set_ylabel("corpus size")
    bottom.set_ylabel("objectives hit")
    bottom.set_xlabel("mutations")
    top.set_title(title, fontsize=9)
    top.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True

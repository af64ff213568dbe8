"""A campaign's wall time and CPU seconds, the orchestrator's and its workers' apart.

    python bench/campaign_cpu.py campaign -l torch --api 'torch.s*' --trials 150 --workers 2 \
        --store /tmp/store-copy --campaign-dir /tmp/campaign

Runs `nablafuzz ARGS...` in this process, then prints one line to stderr: wall seconds, this
process's user and system CPU (the orchestrator) and its children's (the workers, as they
exit), from getrusage.  Two workers on two cores are bound by the sum.  The code run is the
checkout this script sits in: to compare two versions, copy it into a git worktree of the older
one and run both copies one after the other, each with its own `--spec-dir` and a fresh copy of
one store.
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nablafuzz.cli import main  # noqa: E402


def run(argv) -> int:
    began = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"RUSAGE wall {time.perf_counter() - began:.1f} self user {me.ru_utime:.1f} sys {me.ru_stime:.1f} "
          f"children user {kids.ru_utime:.1f} sys {kids.ru_stime:.1f}", file=sys.stderr)
    return code or 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

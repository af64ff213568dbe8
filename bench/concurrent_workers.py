"""How much one library worker slows another on the same machine: the same warm trial loop run
in-process by 1..N copies at once, with no pipe and no orchestrator.

    python bench/concurrent_workers.py --library oneflow [--apis 40] [--trials 10] [--copies 1 2]
                                       [--env ONEFLOW_VM_ENABLE_SCHEDULE_YIELD=1] [--lock] [--unforked]

Writes `--trials` trials of each of the library's first `--apis` specs (as bench/throughput.py
picks them) to a file, then for each entry of `--copies` starts that many processes in the
library's interpreter that each answer every trial once (to warm up) and again (timed), as the
worker answers a `run` request.  APIs whose trials kill the process, or leave it waiting, are
found first and left out.  Each copy runs its trials as the worker does: in a child forked after
the import where the library's record says so (Note [forked worker]; `--unforked` runs them in
the process that imported it).  `--env` sets variables in the copies; `--lock` makes them take
turns (a file lock around each trial).  Printed per setting: each copy's ms per trial, and the
trials per second of all of them together.  Machines are noisy: compare settings within one run.
"""
from __future__ import annotations

import argparse
import fcntl
import io
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]


def write_trials(library: str, apis: int, trials: int, path: Path) -> int:
    """The trials' requests, one framed message each; returns how many."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from nablafuzz.core.config import Config
    from nablafuzz.core.tensors import write_message
    from nablafuzz.libraries import scenarios_for
    from nablafuzz.runtime.runner import trial_request
    from nablafuzz.specs.generate import generate
    from throughput import campaign_specs
    config, n = Config(libraries=(library,)), 0
    with open(path, "wb") as f:
        for spec in campaign_specs(library)[:apis]:
            scenarios = scenarios_for(config, library, spec.capabilities)
            for i in range(trials):
                write_message(f, trial_request(generate(spec, 7, i), spec, scenarios))
                n += 1
    return n


def copy_main(library: str, path: str, skip: str, lock: str, result: str, forked: str) -> None:
    """One copy (in the library's interpreter): every trial once, then again, timed."""
    from nablafuzz.core.tensors import read_message
    from nablafuzz.worker.main import Worker
    requests = []
    with open(path, "rb") as f:
        while (r := read_message(f)) is not None:
            if r["api"] not in skip.split(","):
                requests.append(r)
    worker = Worker(library, io.BytesIO())
    if forked:  # as the worker serves (Note [forked worker]): in a child forked after the import
        pid = os.fork()
        if pid:
            os._exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) & 0xFF)
    held = open(lock, "w") if lock else None

    def one(r) -> None:
        worker.out = io.BytesIO()
        if os.environ.get("BENCH_SHOW"):
            print(r["api"], flush=True)
        if held:
            fcntl.flock(held, fcntl.LOCK_EX)
        try:
            worker.handle(r)
        finally:
            if held:
                fcntl.flock(held, fcntl.LOCK_UN)
    for r in requests:
        one(r)
    began = time.perf_counter()
    for r in requests:
        one(r)
    Path(result).write_text(f"{len(requests)} {time.perf_counter() - began}")
    if forked:
        sys.stdout.flush()
        os._exit(0)


def _copy(python: str, env: dict, args: List[str]) -> subprocess.Popen:
    return subprocess.Popen([python, __file__, "--copy", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def crashing(python: str, env: dict, library: str, path: Path, forked: str) -> List[str]:
    """APIs whose trials kill the process, or leave it waiting (a forked child's missing thread
    pool, Note [stuck child]), found by running alone until one runs through."""
    skip: List[str] = []
    while True:
        p = _copy(python, dict(env, BENCH_SHOW="1"), [library, str(path), ",".join(skip), "", os.devnull, forked])
        assert p.stdout is not None
        fd, out = p.stdout.fileno(), b""
        while select.select([fd], [], [], 20.0)[0]:  # read unbuffered: the last name shown is the last read
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            out += chunk
        else:  # no trial finished in 20 s: stuck
            os.killpg(p.pid, signal.SIGKILL)
        shown = out.decode().split()
        if p.wait() == 0:
            return skip
        if not shown or shown[-1] in skip:
            raise SystemExit(f"the trial loop failed without naming an API (exit {p.returncode})")
        skip.append(shown[-1])


def main() -> int:
    if sys.argv[1:2] == ["--copy"]:
        copy_main(*sys.argv[2:8])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", default="oneflow")
    parser.add_argument("--apis", type=int, default=40)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--lock", action="store_true")
    parser.add_argument("--unforked", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from nablafuzz.libraries import record
    from nablafuzz.runtime.process import WorkerProcess
    from nablafuzz.runtime.registry import resolve_runtime
    runtime = resolve_runtime(args.library, [str(ROOT)])
    env = WorkerProcess(runtime, Path(os.devnull))._env()
    env.update(kv.split("=", 1) for kv in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trials.bin"
        count = write_trials(args.library, args.apis, args.trials, path)
        forked = "1" if record(args.library).forked_worker and not args.unforked else ""
        skip = crashing(runtime.python, env, args.library, path, forked)
        print(f"{args.library}: {count} trials of {args.apis} APIs; left out (they kill the process or leave it waiting): "
              f"{', '.join(skip) or 'none'}; env {' '.join(args.env) or '(default)'}{'; copies take turns' if args.lock else ''}"
              f"{'; unforked' if args.unforked else ''}")
        lock = str(Path(tmp) / "lock") if args.lock else ""
        for n in args.copies:
            results = [Path(tmp) / f"r{n}-{k}" for k in range(n)]
            procs = [_copy(runtime.python, env, [args.library, str(path), ",".join(skip), lock, str(r), forked]) for r in results]
            for p in procs:
                p.communicate()
            got = [tuple(float(v) for v in r.read_text().split()) for r in results]
            per = [s / t * 1e3 for t, s in got]
            total = sum(t for t, _ in got) / max(s for _, s in got)
            print(f"  {n} cop{'y' if n == 1 else 'ies'} at once: {', '.join(f'{p:.1f}' for p in per)} ms per trial each; "
                  f"{total:.1f} trials/s together", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

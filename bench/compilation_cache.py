"""JAX's persistent compilation cache (Note [persistent compilation cache]): one short JAX
campaign three times, one after the other on an otherwise idle machine:

  * none:  the cache off (JAX_COMPILATION_CACHE_DIR set to an empty string);
  * cold:  the cache on, in a fresh directory (the first night);
  * warm:  the cache on, holding what the cold run compiled (the same trials again);
  * next:  the cache on, holding what the runs before it compiled, and the campaign seed + 1
           (the next night: new values, and the same first generation of each signature pool,
           Note [signature pools]; a campaign of more than 50 trials per API draws new
           signatures after them).

    python bench/compilation_cache.py [--api 'jax.numpy.[a-c]*'] [--trials 30] [--out DIR]
        [--runs none,cold,warm,next] [--prefill N] [--bounded]

--prefill N puts N entries of an earlier night (programs no trial asks for, 12 KiB each, as
JAX's are on average) in the cache before the first run, as a cache a few nights old holds;
--bounded gives JAX the cache's bound (JAX_COMPILATION_CACHE_MAX_SIZE), as the workers ran
before Note [persistent compilation cache] bounded it by pruning instead: JAX then locks and
reads every entry's access time at each write.

Each run writes to its own copy of `bug_reports/` and campaign directory under --out, so the
store is left alone.  Prints each run's trials/s and outcome counts (the same trials run in
each, so the counts must agree) and the cache's size.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.runtime.registry import CACHE_BYTES  # noqa: E402


def _run(name: str, out: Path, args: argparse.Namespace, cache: str) -> dict:
    home = out / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copytree(ROOT / "bug_reports", home / "store")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache)
    if args.bounded:
        env["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(CACHE_BYTES)
    cmd = [sys.executable, "-m", "nablafuzz", "campaign", "-l", "jax", "--api", args.api, "--trials", str(args.trials),
           "--workers", "2", "--no-validity-model", "--name", f"cache-{name}", "--campaign-dir", str(home),
           "--store", str(home / "store"), "--seed", "1" if name == "next" else "0"]
    print("$", " ".join(cmd[1:]), f"  # JAX_COMPILATION_CACHE_DIR={cache!r}"
          + (f" JAX_COMPILATION_CACHE_MAX_SIZE={CACHE_BYTES}" if args.bounded else ""), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((home / f"cache-{name}" / "summary.json").read_text())


def _prefill(cache: Path, n: int) -> None:
    """`n` entries of an earlier night: a program file and its access-time file each, as JAX
    writes them with a bound set (`-cache`, `-atime`), older than any this bench writes."""
    cache.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    old = time.time() - 86400
    for i in range(n):
        key = f"jit_prefill_{i:06d}-{rng.getrandbits(128):032x}"
        (cache / f"{key}-cache").write_bytes(rng.randbytes(12 * 1024))
        (cache / f"{key}-atime").write_bytes(int(old * 1e9).to_bytes(8, "little"))
        os.utime(cache / f"{key}-cache", (old, old))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="jax.numpy.[a-c]*")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/nablafuzz-cache-bench"))
    parser.add_argument("--runs", default="none,cold,warm", help="which runs, in order: none, cold, warm, next")
    parser.add_argument("--prefill", type=int, default=0)
    parser.add_argument("--bounded", action="store_true")
    args = parser.parse_args()
    names = args.runs.split(",")
    for name in names:
        if name not in ("none", "cold", "warm", "next"):
            parser.error(f"--runs: unknown run {name!r} (fix: choose from none, cold, warm, next)")
    cache = args.out / "jax-cache"
    shutil.rmtree(cache, ignore_errors=True)
    _prefill(cache, args.prefill)
    runs, sizes = {}, {}
    for name in names:
        runs[name] = _run(name, args.out, args, "" if name == "none" else str(cache))
        files = [p for p in cache.rglob("*") if p.is_file()]
        sizes[name] = (len(files), sum(p.stat().st_size for p in files))
    base = next(iter(runs.values()))["trials_per_s_this_run"]
    for name, s in runs.items():
        print(f"{name}: {s['trials']} trials ({s['valid_trials']} valid, {s['distinct_fingerprints']} distinct "
              f"fingerprints) at {s['trials_per_s_this_run']:.1f} trials/s, {s['trials_per_s_this_run'] / base:.2f}x "
              f"{next(iter(runs))}; cache after it: {sizes[name][0]} files, {sizes[name][1] / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    main()

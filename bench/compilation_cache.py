"""JAX's persistent compilation cache (Note [persistent compilation cache]): one short JAX
campaign three times, one after the other on an otherwise idle machine:

  * none:  the cache off (JAX_COMPILATION_CACHE_DIR set to an empty string);
  * cold:  the cache on, in a fresh directory (the first night);
  * warm:  the cache on, holding what the cold run compiled (the next night).

    python bench/compilation_cache.py [--api 'jax.numpy.[a-c]*'] [--trials 30] [--out DIR]

Each run writes to its own copy of `bug_reports/` and campaign directory under --out, so the
store is left alone.  Prints each run's trials/s and outcome counts (the same trials run in
each, so the counts must agree) and the cache's size.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(name: str, out: Path, args: argparse.Namespace, cache: str) -> dict:
    home = out / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copytree(ROOT / "bug_reports", home / "store")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache)
    cmd = [sys.executable, "-m", "nablafuzz", "campaign", "-l", "jax", "--api", args.api, "--trials", str(args.trials),
           "--workers", "2", "--no-validity-model", "--name", f"cache-{name}", "--campaign-dir", str(home),
           "--store", str(home / "store")]
    print("$", " ".join(cmd[1:]), f"  # JAX_COMPILATION_CACHE_DIR={cache!r}", flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((home / f"cache-{name}" / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="jax.numpy.[a-c]*")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/nablafuzz-cache-bench"))
    args = parser.parse_args()
    cache = args.out / "jax-cache"
    shutil.rmtree(cache, ignore_errors=True)
    runs = {"none": _run("none", args.out, args, ""), "cold": _run("cold", args.out, args, str(cache))}
    files = [p for p in cache.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    runs["warm"] = _run("warm", args.out, args, str(cache))
    base = runs["none"]["trials_per_s_this_run"]
    for name, s in runs.items():
        print(f"{name}: {s['trials']} trials ({s['valid_trials']} valid, {s['distinct_fingerprints']} distinct "
              f"fingerprints) at {s['trials_per_s_this_run']:.1f} trials/s, {s['trials_per_s_this_run'] / base:.2f}x none")
    print(f"cache after the cold run: {len(files)} files, {size / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    main()

"""A campaign command killed mid-run, as kill -9 or a power loss would (the resume tests)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List


def kill_mid_run(cmd: List[str], cwd: Path, log: Path, lines: int, wait_s: float = 60.0) -> int:
    """Starts `cmd` in its own process group, SIGKILLs the whole group (workers, a Ray cluster)
    once its observation `log` has `lines` lines (or after `wait_s`); the lines logged then."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < lines):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(log.read_text().splitlines())

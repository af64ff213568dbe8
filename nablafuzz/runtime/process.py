"""Orchestrator side of a worker: start, talk, time out, restart.

A `WorkerProcess` owns one worker subprocess of one runtime.  A native crash or a hang costs
the trial in flight, never the campaign: the dead worker's last streamed result names the
scenario that was running, and the next request starts a fresh worker.

Every request carries a sequence number that each answer echoes; a frame without our magic,
longer than MAX_FRAME, undecodable, or answering another request is a protocol error: the
worker is killed (`Death("protocol")`), so a stray or forged frame costs one trial and the next
request starts a fresh worker.  A worker that will not start is retried with backoff
(RESTART_DELAYS) before the runtime is given up.  Its log is cut to its tail once it passes
LOG_CAP bytes.
"""
from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..core.errors import WorkerError
from ..core.model import Death
from ..core.tensors import HEAD, ProtocolError, decode_message, encode_message, frame_length

PACKAGE = Path(__file__).resolve().parents[1]
RESTART_DELAYS = (1.0, 3.0, 9.0)  # seconds before each further try to start a worker
STANDBYS = 2  # workers kept started ahead of need once one has died (Note [standby worker])
STUCK = "waited for a thread a forked worker does not have (Note [stuck child] in worker/main.py)"
LOG_CAP = 8 << 20  # a worker log longer than this keeps its last LOG_KEEP bytes
LOG_KEEP = 1 << 20


def worker_path() -> str:
    """A directory that holds only the nablafuzz package (a link to it), for the worker's
    PYTHONPATH.  Never the package's own parent: an installed nablafuzz sits in the
    orchestrator's site-packages, whose numpy 2 would shadow the OneFlow venv's numpy 1.26."""
    digest = hashlib.sha1(str(PACKAGE).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"nablafuzz-worker-path-{os.getuid()}-{digest}"
    link = folder / "nablafuzz"
    folder.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        try:
            link.symlink_to(PACKAGE, target_is_directory=True)
        except FileExistsError:  # another worker made it first
            pass
    return str(folder)


class RuntimeUnavailable(WorkerError):
    """A worker that would not start after every retry: its runtime is given up."""

    def __init__(self, library: str, message: str):
        super().__init__(message)
        self.library = library


@dataclass(frozen=True)
class Runtime:
    """A library and the interpreter that runs its worker.

    `library` is the adapter the worker loads; `release` is set for another release of it
    (`jax@0.10.1`: library "jax", release "0.10.1"), so that messages and a given-up runtime
    (RuntimeUnavailable.library) name which of two runtimes of one library it was."""

    library: str
    python: str
    env: Tuple[Tuple[str, str], ...] = ()
    memory_limit_mb: Optional[int] = None
    python_path: Tuple[str, ...] = ()
    release: Optional[str] = None

    @property
    def name(self) -> str:
        """The registry name: `jax`, or `jax@0.10.1` for a release."""
        return f"{self.library}@{self.release}" if self.release else self.library


@dataclass
class Exchange:
    """Messages received for one request, and the death that cut it short, if any."""

    messages: List[Dict[str, Any]] = field(default_factory=list)
    death: Optional[Death] = None


def _ended(code: Any) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if not isinstance(code, int):
        raise ProtocolError(f"an exit code that is not a number: {code!r}")
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class WorkerProcess:
    def __init__(self, runtime: Runtime, log_path: Path):
        self.runtime = runtime
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.versions: Dict[str, str] = {}
        self.restarts = 0
        self._buf = b""
        self._seq = 0
        self.standbys: List[subprocess.Popen] = []  # Note [standby worker], oldest first
        self.forks = False  # the worker forks a fresh child for each restart (Note [forked worker], worker/main.py)

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        paths = [worker_path(), *self.runtime.python_path]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env["PYTHONPATH"]] if env.get("PYTHONPATH") else paths)
        env.update(dict(self.runtime.env))
        env["PYTHONUNBUFFERED"] = "1"
        if self.runtime.memory_limit_mb:
            env["NABLAFUZZ_MEMORY_LIMIT_MB"] = str(self.runtime.memory_limit_mb)
        return env

    def _spawn(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        cmd = [self.runtime.python, "-m", "nablafuzz.worker.main", self.runtime.library]
        try:
            return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                    env=self._env(), start_new_session=True)
        except OSError as exc:
            raise WorkerError(f"cannot start the {self.runtime.name} worker with {self.runtime.python}: {exc}; "
                              "run `nablafuzz install` or check the runtime registry") from None
        finally:
            log.close()

    # Note [standby worker]
    # Starting a worker imports its library (OneFlow: about 2 s of a 2-core machine).  Once a
    # worker has died or been restarted, the next one is started ahead of need: a standby that
    # imports its library while the current worker runs trials, and takes over at the next
    # restart (a crash class hit again and again costs a handshake, not an import).  A standby
    # has run nothing, so it is as fresh as a worker started then.  STANDBYS of them: a new crash
    # costs two workers in a row (the crash, and its confirmation in a fresh worker, Note
    # [confirmation] in campaign/loop.py), then a third for the next trial, faster than one
    # standby imports its library.  One after the first restart, STANDBYS from the second
    # (a campaign that restarts once, to confirm one finding, imports one worker it may not use,
    # not two); every standby taken is replaced.  A worker that forks its children (Note [forked
    # worker] in worker/main.py) restarts with a fork and a crash costs it a fork: only its own
    # death (a timeout's kill) counts here.
    def start(self, timeout: float = 120.0) -> Dict[str, str]:
        while self.standbys and self.standbys[0].poll() is not None:
            self.standbys.pop(0)
        self.proc = self.standbys.pop(0) if self.standbys else self._spawn()
        self._buf = b""
        ex = self.request({"op": "hello"}, timeout, until="hello")
        if ex.death or not ex.messages:
            detail = ex.death.detail if ex.death else "no answer"
            raise WorkerError(f"the {self.runtime.name} worker did not start ({detail}); "
                              f"its log {self.log_path} ends with:\n{ex.death.log if ex.death else ''}")
        self.versions = ex.messages[-1]["versions"]
        self.forks = ex.messages[-1].get("forked") is True
        return self.versions

    def ensure(self) -> None:
        """A live worker: started (again) if there is none, retried with backoff; WorkerError
        once every try failed."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None:
            self.restarts += 1
            self.proc = None
        for delay in RESTART_DELAYS + (None,):
            try:
                self.start()
                while len(self.standbys) < min(self.restarts, STANDBYS):
                    self.standbys.append(self._spawn())
                return
            except WorkerError as exc:
                self.kill()
                self.proc = None
                if delay is None:
                    raise RuntimeUnavailable(self.runtime.name, f"{exc} (tried {len(RESTART_DELAYS) + 1} times)") \
                        from None
                time.sleep(delay)

    def restart(self) -> None:
        """A fresh worker now (state a trial left behind is gone): a worker that forks its
        children replaces the one serving with a fresh child (Note [forked worker])."""
        if self.forks and self._send_exit(close=False):
            return
        self._exit()
        self.restarts += 1
        self.ensure()

    def request(self, message: Dict[str, Any], timeout: float, until: str) -> Exchange:
        """Send one request; collect its answers until one whose op is `until` (or an error)."""
        assert self.proc is not None and self.proc.stdin is not None
        self._seq += 1
        ex = Exchange()
        try:
            self.proc.stdin.write(encode_message(dict(message, id=self._seq)))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            ex.death = self._death("crashed")
            return ex
        deadline = time.monotonic() + timeout
        try:
            while True:
                msg = self._read(deadline)
                if isinstance(msg, Death):
                    ex.death = msg
                    return ex
                if self.forks and msg.get("op") == "died":  # the serving child was killed; a fresh one follows
                    ex.death = Death("stuck", STUCK, self.log_tail()) if msg.get("stuck") is True \
                        else Death("crashed", _ended(msg.get("code")), self.log_tail())
                    return ex
                if msg.get("id") != self._seq:
                    raise ProtocolError(f"an answer to request {msg.get('id')!r} while request {self._seq} was "
                                        f"in flight (op {msg.get('op')!r})")
                ex.messages.append(msg)
                if msg.get("op") in (until, "error"):
                    return ex
        except ProtocolError as exc:
            self.kill()
            ex.death = Death("protocol", f"protocol error: {exc}; worker killed", self.log_tail())
            self.proc = None
            return ex
        finally:
            self.cap_log()

    def _read(self, deadline: float) -> Any:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            if len(self._buf) >= HEAD:
                n = frame_length(self._buf[:HEAD])
                if len(self._buf) >= HEAD + n:
                    body, self._buf = self._buf[HEAD:HEAD + n], self._buf[HEAD + n:]
                    return decode_message(body)
            left = deadline - time.monotonic()
            if left <= 0:
                return self._death("timeout")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return self._death("crashed")
            self._buf += chunk

    def _death(self, kind: str) -> Death:
        assert self.proc is not None
        if kind == "timeout":
            self.kill()
            detail = "no answer before the per-trial timeout; worker killed"
        else:
            try:
                detail = _ended(self.proc.wait(timeout=10))
            except subprocess.TimeoutExpired:  # closed its output, then hung (e.g. while aborting)
                self.kill()
                detail = "closed its output and did not exit within 10 s; worker killed"
        self.proc = self.proc if self.proc.poll() is not None else None
        return Death(kind, detail, self.log_tail())

    def cap_log(self) -> None:
        """Keep the log under LOG_CAP: past it, only its last LOG_KEEP bytes stay.  The worker
        appends (O_APPEND), so its next write lands at the new end."""
        try:
            if self.log_path.stat().st_size <= LOG_CAP:
                return
            with open(self.log_path, "r+b") as f:
                f.seek(-LOG_KEEP, os.SEEK_END)
                tail = f.read()
                f.seek(0)
                f.truncate()
                f.write(b"[nablafuzz: earlier output dropped; the log keeps its last %d bytes]\n" % LOG_KEEP + tail)
        except OSError:
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)

    def close(self) -> None:
        """Stop the worker and its standbys."""
        self._exit()
        for standby in self.standbys:
            _kill_group(standby)
        self.standbys = []

    def _send_exit(self, close: bool) -> bool:
        """`exit` sent to a live worker (its input then closed if `close`); False if none took it."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(encode_message({"op": "exit"}))
            self.proc.stdin.flush()
            if close:
                self.proc.stdin.close()
            return True
        except OSError:
            return False

    def _exit(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                if self._send_exit(close=True):
                    self.proc.wait(timeout=5)
                else:
                    self.kill()
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and what it started (its own session), and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

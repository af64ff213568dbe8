"""The worker: runs inside a library's own interpreter and answers framed requests.

Started as `python -m nablafuzz.worker.main LIBRARY`.  stdout carries the binary protocol
only (anything a library prints to stdout is redirected to stderr, which goes to a log file).
Requests:  {"op": "hello"} -> versions;  {"op": "run", ...} -> one "result" message per
scenario, streamed as each finishes (so a crash names the scenario it happened in), then
{"op": "done"};  {"op": "probe", ...} -> {"op": "values"};  {"op": "specs"} -> derived specs;
{"op": "catalogue"} -> public callables to probe;  {"op": "model", ...} -> {"op": "model"}
(a model's seeds, or a batch of its inputs: worker/models.py);  {"op": "exit"}.
Worker-safe: Python 3.10, numpy 1.26.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import select
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Tuple

from ..core.model import ScenarioResult
from ..core.tensors import ProtocolError, read_message, write_message
from ..libraries import load_adapter, record
from ..libraries.descriptor import UNFORKED
from ..libraries.base import UnknownApi
from .programs import build_program, is_program
from .scenarios import probe, scenario_batches


def _result_message(r: ScenarioResult) -> Dict[str, Any]:
    return {
        "op": "result", "scenario": r.scenario, "outcome": r.outcome.value, "value": r.value,
        "scale": r.scale, "error_estimate": r.error_estimate, "outputs": list(r.outputs),
        "gradient": list(r.gradient), "seconds": r.seconds, "emulated": r.emulated,
        "error": None if r.error is None else {"type": r.error.type, "message": r.error.message},
    }


def _inputs(request: Dict[str, Any]) -> list:
    return [(i["value"], i["differentiable"], i["keyword"], i["name"]) for i in request["inputs"]]


def laid_out(adapter: Any, fn: Any, inputs: list, layout: Dict[str, List[int]]) -> Any:
    """`fn` called with the named inputs' axes permuted and its output permuted back (`""`):
    another library's layout (NHWC) inside the differentiated call, so the trial's values and
    directions stay in the canonical one (NCHW)."""
    positional = [name for _, _, keyword, name in inputs if not keyword]
    out = layout.get("")

    def call(*args: Any, **kwargs: Any) -> Any:
        args = tuple(adapter.permute(a, layout[n]) if n in layout else a for a, n in zip(args, positional))
        kwargs = {k: adapter.permute(v, layout[k]) if k in layout else v for k, v in kwargs.items()}
        y = fn(*args, **kwargs)
        return adapter.permute(y, out) if out else y
    return call


class Worker:
    def __init__(self, library: str, out: BinaryIO):
        self.adapter = load_adapter(library)
        self.out = out
        self.functions: Dict[str, Any] = {}
        self.request_id: Any = None
        self.models: Any = None  # a ModelHost, made on the first model request
        self.forked = False  # served from a forked child (Note [forked worker])

    def send(self, *messages: Dict[str, Any]) -> None:
        """Answers to the request in hand (each carries that request's id), in one write."""
        write_message(self.out, *[dict(m, id=self.request_id) for m in messages])

    def resolve(self, api: str, module: Any = None) -> Any:
        """The callable for `api`; a module spec's class is built (once) with its init arguments."""
        key = api if module is None else f"{api}/{json.dumps(module, sort_keys=True)}"
        if key not in self.functions:
            if is_program(api):  # Note [program names]: built from its steps, each resolved like any API
                fn = build_program(api, self.adapter.resolve, self.adapter.library)
            else:
                fn = self.adapter.resolve(api)
            self.functions[key] = fn if module is None else self.adapter.module_call(fn, module["init"], module["kwargs"])
        return self.functions[key]

    def handle(self, request: Dict[str, Any]) -> bool:
        op = request.get("op")
        self.request_id = request.get("id")
        if op == "exit":
            return False
        if op == "hello":
            versions = dict(self.adapter.versions(), python=platform.python_version())
            self.send({"op": "hello", "versions": versions, "pid": os.getpid(), "forked": self.forked})
        elif op == "specs":
            self.send(dict(self.adapter.derive_specs(), op="specs"))
        elif op == "catalogue":
            self.send(dict(self.adapter.catalogue(), op="catalogue"))
        elif op in ("run", "probe"):
            self.answer(op, request)
        elif op == "model":
            self.model(request)
        else:
            self.send({"op": "error", "type": "ProtocolError", "message": f"unknown op {op!r}"})
        return True

    def model(self, request: Dict[str, Any]) -> None:
        """A model request; the builder is named by a loaded model spec (specs/models.py)."""
        from .models import ModelHost
        try:
            self.models = self.models or ModelHost(self.adapter.library)
            self.send(self.models.answer(request))
        except Exception as exc:  # noqa: BLE001 - a builder that fails to import or run: the user's to fix
            self.send({"op": "error", "type": type(exc).__name__,
                       "message": f"model {request.get('build')!r}: {traceback.format_exc(limit=6)}"[-4000:]})

    def answer(self, op: str, request: Dict[str, Any]) -> None:
        request = dict(request, inputs=_inputs(request))
        self.adapter.reset()
        try:
            fn = self.resolve(request["api"], request.get("module"))
        except (UnknownApi, AttributeError) as exc:
            self.send({"op": "error", "type": type(exc).__name__, "message": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 - a user module that fails to import: a configuration error
            self.send({"op": "error", "type": type(exc).__name__,
                       "message": f"importing {request['api']!r} failed:\n{traceback.format_exc(limit=8)}"[-4000:]})
            return
        if request.get("layout"):
            fn = laid_out(self.adapter, fn, request["inputs"], request["layout"])
        if request.get("projections"):
            fn = self.adapter.projected(fn, request["inputs"], request["projections"])
        if op == "probe":
            began = time.perf_counter()
            try:
                values = probe(self.adapter, fn, request)
            except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
                self.send({"op": "error", "type": type(exc).__name__, "message": str(exc)[:500]})
                return
            self.send({"op": "values", "values": values, "seconds": time.perf_counter() - began})
            return
        try:  # Note [answers in batches]
            for batch in scenario_batches(self.adapter, fn, request):
                done = [{"op": "done", "compiles": self.adapter.compiles()}] if batch.last else []
                self.send(*[_result_message(r) for r in batch.results], *done)
        except Exception as exc:  # noqa: BLE001 - nablafuzz's own failure: an engine error, never a library crash
            self.send({"op": "error", "type": type(exc).__name__,
                       "message": f"scenario runner failed: {str(exc)[:500]}"})


def _limit_memory() -> None:
    limit = os.environ.get("NABLAFUZZ_MEMORY_LIMIT_MB")
    if limit:
        n = int(limit) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (n, n))


# Note [forked worker]
# OneFlow runs its kernels on virtual-machine threads that spin for a while after each
# instruction, beside the thread that issued it: a OneFlow worker keeps more than one core busy,
# and two workers on two cores slow each other down 2.5-3x (bench/concurrent_workers.py).  In a
# process forked after OneFlow was imported, OneFlow runs the virtual machine in the calling
# thread instead (its pthread_atfork handling), with the same kernels.  So the worker of such a
# library (Library.forked_worker) imports it, then serves from children it forks one at a time,
# and runs nothing itself:
# - a child asked to go (`exit`, the orchestrator's restart) is replaced by a fresh one, forked in
#   milliseconds where a new worker would import the library again (OneFlow: 1.1 s);
# - a child a signal killed (a crash), or one stuck (Note [stuck child]), is reported on the pipe
#   ({"op": "died"}, which runtime/process.py reads as the death of the request in flight) and
#   replaced too;
# - a child that ends otherwise (a status of its own, the end of input) ends the parent the same
#   way, as an unforked worker would have ended.
# A child reads its input unbuffered, so a request sent after its `exit` stays in the pipe for
# the next child.  Parent and children share the worker's session, which the orchestrator's kill
# takes down together.  A child ends with os._exit: OneFlow's shutdown in a forked child waits
# for the virtual-machine threads it does not have (an orderly exit hangs until the kill).
def serve_from_children(out: BinaryIO) -> None:
    """Returns in each forked child; the parent forks the next one whenever a child is asked to
    go, is killed or is stuck, and otherwise ends as the child ended."""
    parent = os.getppid()
    while True:
        pid = os.fork()
        if pid == 0:
            return
        code, stuck = _outcome(pid, parent)
        if code < 0:
            try:
                write_message(out, {"op": "died", "code": code, "stuck": stuck})
            except OSError:  # the orchestrator has gone
                os._exit(1)
        elif code != 0 or _input_closed():
            os._exit(code)


STUCK_S = 1.0  # a child waiting on a futex this long without using CPU is stuck (Note [stuck child])
WATCH_S = 0.25


# Note [stuck child]
# Threads do not survive a fork.  OneFlow 0.9 knows this of its virtual machine, not of the
# thread pool that some CPU kernels split their loops over (argmax, top-k): in a forked child
# such a kernel waits forever for pool threads that are not there.  A child has one thread, so a
# wait on a futex can only end by its timeout: the parent watches the serving child, and one
# that sits in a futex wait for STUCK_S without using CPU is killed and reported stuck (while
# idle, a child waits in a read of its input, not on a futex).  runtime/runner.py then runs that
# request, and that API from then on, in an unforked worker.  The watch reads the kernel's name
# for a wait (/proc/PID/wchan); where the kernel does not give it, the worker serves unforked.
def _outcome(pid: int, parent: int) -> Tuple[int, bool]:
    """(the child's exit code, whether it was killed for being stuck); the worker ends, its
    child killed, once the orchestrator `parent` has gone (Note [orphaned worker])."""
    try:
        ended = os.pidfd_open(pid)
    except (AttributeError, OSError):  # Linux before 5.3: no watch
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), False
    try:
        since, cpu = None, None
        while not select.select([ended], [], [], WATCH_S)[0]:
            if os.getppid() != parent:
                os.kill(pid, signal.SIGKILL)
                os._exit(1)
            now, used, waiting = time.monotonic(), _cpu_ticks(pid), _on_futex(Path(f"/proc/{pid}"))
            if not waiting or used != cpu or since is None:
                since, cpu = (now if waiting else None), used
            elif now - since >= STUCK_S:
                os.kill(pid, signal.SIGKILL)
                return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), True
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), False
    finally:
        os.close(ended)


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return -1


def _waits_named() -> bool:
    """Whether this kernel names the wait a thread sleeps in (/proc/PID/wchan), which the watch
    over a child needs (Note [stuck child]): the imported library's idle threads wait on futexes."""
    return any(_on_futex(task) for task in Path("/proc/self/task").iterdir())


def _on_futex(proc: Path) -> bool:
    """Whether the process or thread at `proc` (/proc/PID or /proc/PID/task/TID) waits on a futex."""
    try:
        return "futex" in (proc / "wchan").read_text()
    except OSError:
        return False


def _input_closed() -> bool:
    """Whether the orchestrator has closed the worker's input (a child's `exit` was the last)."""
    poll = select.poll()
    poll.register(0, select.POLLIN)
    return any(events & select.POLLHUP for _, events in poll.poll(0))


# Note [orphaned worker]
# Workers run in sessions of their own (runtime/process.py), and nothing closes them when the
# orchestrator dies without unwinding: kill -9, or a SIGTERM, which Python does not unwind by
# default.  An idle worker then reads the end of its input and ends, but one inside a hang
# would spin on: one left by a killed TensorFlow replay of a digamma hang kept a core busy for
# 48 minutes, and slowed a benchmark by a third.  So a worker watches its parent and ends once
# it has been re-parented: an unforked worker from a thread that looks each ORPHAN_WATCH_S (a
# hang inside a library call leaves the interpreter to it, as TensorFlow's kernels do), a
# forked worker's parent in its watch over the serving child, which it kills first.
ORPHAN_WATCH_S = 1.0


def _watch_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_WATCH_S)
        os._exit(1)
    threading.Thread(target=watch, name="nablafuzz-parent-watch", daemon=True).start()


def main() -> int:
    library = sys.argv[1]
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by a library goes to the log, not the protocol
    sys.stdout = sys.stderr
    _limit_memory()
    worker = Worker(library, out)
    if not record(library).forked_worker or os.environ.get(UNFORKED) or not _waits_named():
        _watch_parent()
        return serve(worker)
    worker.forked = True
    serve_from_children(out)
    code = 1
    try:
        code = serve(worker)
    except BaseException:  # noqa: BLE001 - the child must not unwind into the interpreter's shutdown
        traceback.print_exc()
    finally:
        os._exit(code)  # Note [forked worker]: a forked child's shutdown would wait on threads it lacks


def serve(worker: Worker) -> int:
    """Answer requests until `exit`, the end of input, or a frame that is not ours.  Input is
    read unbuffered: no byte past the `exit` frame is taken (Note [forked worker])."""
    stdin = sys.stdin.buffer.raw
    while True:
        try:
            request = read_message(stdin)
        except ProtocolError as exc:  # not our orchestrator's frame: stop; it restarts us
            print(f"nablafuzz worker: {exc}", file=sys.stderr)
            return 3
        if request is None or not worker.handle(request):
            return 0


if __name__ == "__main__":
    sys.exit(main())

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
import signal
import sys
import time
import traceback
from typing import Any, BinaryIO, Dict, List

from ..core.model import ScenarioResult
from ..core.tensors import ProtocolError, read_message, write_message
from ..libraries import load_adapter, record
from ..libraries.base import UnknownApi
from .programs import build_program, is_program
from .scenarios import probe, run_scenarios


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

    def send(self, message: Dict[str, Any]) -> None:
        """One answer to the request in hand (it carries that request's id)."""
        write_message(self.out, dict(message, id=self.request_id))

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
            self.send({"op": "hello", "versions": versions, "pid": os.getpid()})
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
        try:
            for result in run_scenarios(self.adapter, fn, request):
                self.send(_result_message(result))
        except Exception as exc:  # noqa: BLE001 - nablafuzz's own failure: an engine error, never a library crash
            self.send({"op": "error", "type": type(exc).__name__,
                                     "message": f"scenario runner failed: {str(exc)[:500]}"})
            return
        self.send({"op": "done", "compiles": self.adapter.compiles()})


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
# thread instead (its pthread_atfork handling), with the same kernels.  So for such a library
# (Library.forked_worker) the worker imports the library, then forks: the child serves every
# request, and the parent, which has run nothing, closes its ends of the pipes, waits, and ends
# as the child ended (the same exit status or signal), so a crash reads to the orchestrator as
# it did unforked.  Both are in the worker's own session, which a kill takes down together.
# The child ends with os._exit: OneFlow's shutdown in a forked child waits for the virtual-machine
# threads it does not have (an orderly exit would hang until the orchestrator's kill).
def serve_from_child(out: BinaryIO) -> None:
    """Returns in a forked child; the parent waits for the child and ends as it did."""
    pid = os.fork()
    if pid == 0:
        return
    out.close()
    os.close(0)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code < 0:  # the child was killed: so is the parent, by the same signal (no core file)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)


def main() -> int:
    library = sys.argv[1]
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by a library goes to the log, not the protocol
    sys.stdout = sys.stderr
    _limit_memory()
    worker = Worker(library, out)
    if not record(library).forked_worker:
        return serve(worker)
    serve_from_child(out)
    code = 1
    try:
        code = serve(worker)
    except BaseException:  # noqa: BLE001 - the child must not unwind into the interpreter's shutdown
        traceback.print_exc()
    finally:
        os._exit(code)  # Note [forked worker]: a forked child's shutdown would wait on threads it lacks


def serve(worker: Worker) -> int:
    """Answer requests until `exit`, the end of input, or a frame that is not ours."""
    stdin = sys.stdin.buffer
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

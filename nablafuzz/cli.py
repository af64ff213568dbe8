"""Command line: `nablafuzz install | campaign | modelfuzz | numerics | replay | triage | vet | specs`.

Imports stay light: no deep-learning library is ever imported here (workers do that), so
`nablafuzz --help`, `triage` and `replay` of numpy_ref reports work with none installed.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .core.errors import NablaError, ReportError, SpecError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """Usage errors read like every other error: `nablafuzz: error: ...`, exit status 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"nablafuzz: error: {message} (see `{self.prog} --help`)\n")


def _csv(text: str) -> List[str]:
    return [t for t in (x.strip() for x in text.split(",")) if t]


def _csv_of(example: str):
    """A comma-separated list of at least one item (`-l ,` is a mistake, not "all")."""
    def parse(text: str) -> List[str]:
        items = _csv(text)
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r} names nothing; fix: list at least one, e.g. {example}, "
                                             "or leave the option out for the default")
        return items
    return parse


def _campaign_parser(sub) -> None:
    p = sub.add_parser("campaign", help="fuzz APIs of one or more libraries; findings go to the report store",
                       description="Run a campaign. Re-running the same command resumes an interrupted one.")
    p.add_argument("--profile", default="default", help="named settings: default, smoke, nightly")
    p.add_argument("-l", "--libraries", type=_csv_of("-l numpy_ref,torch"), help="comma-separated library ids "
                   "(default: numpy_ref and every installed library with an adapter)")
    p.add_argument("--api", dest="apis", action="append", help="API name glob, repeatable (default: all)")
    p.add_argument("--specs", dest="spec_files", action="append", help="extra spec file (your own functions)")
    p.add_argument("--spec-dir", help="directory of library spec files (default: api_specs)")
    p.add_argument("--store", dest="store_dir", help="report store directory (default: bug_reports)")
    p.add_argument("--campaign-dir", help="where campaign logs live (default: .nablafuzz/campaigns)")
    p.add_argument("--trials", dest="trials_per_api", type=int, help="trials per API")
    p.add_argument("--budget", dest="budget_s", type=float, help="total seconds")
    p.add_argument("--api-budget", dest="api_budget_s", type=float, help="seconds per API")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="parallel workers (default: 2)")
    p.add_argument("--versions", type=_csv_of("--versions jax@0.10.1,jax"),
                   help="release-vs-release: run each trial in two runtimes of one library, the older first "
                        "(jax@0.10.1,jax; build one with `nablafuzz install --only jax@0.10.1`) and report what "
                        "differs: a mode that broke or started working, a value or derivative that changed")
    p.add_argument("--executor", choices=("threads", "ray"),
                   help="where trials run: worker threads on this machine (default), or Ray actors, one per worker, "
                        "on this machine or a cluster (pip install 'nablafuzz[ray]'); the results are the same")
    p.add_argument("--address", help="--executor ray: the Ray cluster to join (auto, or HOST:PORT of its head); "
                                      "default: start a private one on this machine")
    p.add_argument("--max-size", dest="max_tensor_size", type=int, help="elements per tensor")
    p.add_argument("--timeout", dest="trial_timeout_s", type=float, help="seconds per trial before the worker is killed")
    p.add_argument("--memory-limit", dest="memory_limit_mb", type=int, help="worker address-space limit in MiB")
    p.add_argument("--scenarios", type=_csv_of("--scenarios rev,fwd,fd"),
                   help="comma-separated scenario ids (default: all)")
    p.add_argument("--name", help="campaign name (default: derived from the settings)")
    p.add_argument("--regime-share", dest="regime_share", type=float,
                   help="share of trials drawn from a value regime: edges, special points, tiny, large, ties, "
                        "zeros (default 0.25)")
    p.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                   help="run the compiled scenario `jit` (default: on for jax, whose jit is cheap; off for torch, "
                        "whose torch.compile takes 20-40 s per API)")
    p.add_argument("--validity-model", dest="validity_model", action=argparse.BooleanOptionalAction, default=None,
                   help="learn per API which inputs are valid (scikit-learn: pip install 'nablafuzz[learn]') and run "
                        "the likeliest valid of 4 or more candidate trials, a random one 5%% of the time")
    p.add_argument("--staged", action=argparse.BooleanOptionalAction, default=None,
                   help="compile each scenario whole and draw each API's shapes from a small pool that rotates, so "
                        "most trials reuse a compiled program; findings are re-established eagerly (default: on for "
                        "jax and tensorflow)")
    p.add_argument("--entry-points", dest="entry_points", action="store_true", default=None,
                   help="also the transforms users call, compared with the plain modes: jacrev, jacfwd, vmap of "
                        "the VJP, hessian (torch.func, jax; on in the nightly profile)")
    p.add_argument("--third-order", dest="third_order", action="store_true", default=None,
                   help="also third derivatives by composition (rev.rev.rev, fwd.rev.rev, rev.fwd.rev, fwd.fwd.fwd "
                        "against finite differences of rev.rev), for specs with second order (on in nightly)")
    p.add_argument("--kernels", action="store_true", default=None,
                   help="also run each trial's call and VJP in a second worker with the library's other kernels "
                        "(TensorFlow with oneDNN on, as users run it; torch with mkldnn off) and compare (on in nightly)")
    p.add_argument("--reference", action="store_true", default=None,
                   help="judge elementwise APIs against their 50-digit mpmath reference (api_specs/references.yaml) "
                        "instead of finite differences, tails included (on in nightly)")
    p.add_argument("--no-minimise", dest="minimise", action="store_false", default=None)
    p.add_argument("--max-programs", dest="max_programs", type=int,
                   help="--programs: programs per library (default 100)")
    p.add_argument("--programs", action="store_true", default=None,
                   help="also fuzz programs of 2-4 ops of each library (chains, where(x > 0, f, g), x*x*f(x)) "
                        "built from the APIs --api selects; a finding one op explains alone is reported against it")
    p.add_argument("--triage", metavar="FILE", help="also write the triage report to FILE")
    p.add_argument("--cross", action="store_true", default=None,
                   help="cross-library oracle: each trial of an equivalence class runs in every member library")
    p.add_argument("--equivalence", dest="equivalence_file",
                   help="--cross: the equivalence map (default: <spec-dir>/equivalence.yaml)")


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name in the model spec file (e.g. digits_unsafe)")
    p.add_argument("--models", dest="model_files", action="append", type=Path,
                   help="model spec file (default: models/models.yaml), repeatable")


def _modelfuzz_parser(sub) -> None:
    p = sub.add_parser("modelfuzz", help="coverage-guided fuzzing of a model's inputs (TensorFuzz) for non-finite "
                       "losses and gradients, AD disagreements and float16 disagreements; findings go to the store",
                       description="Fuzz one model of a model spec file. With --random, the same budget of unguided "
                       "mutations runs too and the summary compares both.")
    _model_arguments(p)
    p.add_argument("-l", "--libraries", type=_csv_of("-l torch,jax"),
                   help="comma-separated libraries (default: every library the model names)")
    p.add_argument("--objective", dest="objectives", type=_csv_of("--objective nonfinite,grad-nonfinite"),
                   default=["nonfinite"], help="comma-separated: nonfinite, grad-nonfinite, rev-fwd-fd, compiled, "
                   "fp16, bf16, cross (default nonfinite)")
    p.add_argument("--coverage", default="sumabs", help="sumabs (sum of |logits|), logits, or layer:NAME (default sumabs)")
    p.add_argument("--mutations", type=int, default=300_000, help="mutations per run (default 300000)")
    p.add_argument("--batch", type=int, default=100, help="mutants per parent (default 100)")
    p.add_argument("--sigma", type=float, help="standard deviation of the Gaussian mutation (default: the model "
                   "spec's `sigma`, else 0.2)")
    p.add_argument("--linf", type=float, help="keep mutants within this L-infinity distance of their seed input")
    p.add_argument("--threshold", type=float, help="coverage distance that makes an input new (default: scaled "
                   "from the first batch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-inputs", dest="seed_inputs", type=int, default=10, help="seed inputs drawn from the "
                   "model's (default 10)")
    p.add_argument("--seconds", type=float, help="wall-clock limit per run")
    p.add_argument("--random", action="store_true", help="also run the same budget without coverage guidance")
    p.add_argument("--store", dest="store_dir", default="bug_reports", help="report store (default bug_reports)")
    p.add_argument("--out", type=Path, default=Path(".nablafuzz/modelfuzz"),
                   help="where each run's summary.json and plot.png go (default .nablafuzz/modelfuzz)")


def _interval(text: str):
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH; fix: e.g. -1,1") from None
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"{text!r}: LOW must be below HIGH")
    return lo, hi


def _numerics_parser(sub) -> None:
    p = sub.add_parser("numerics", help="interval analysis of a model's forward and backward graphs (RANUM): "
                       "every operation that can produce NaN/inf, with a clamp that provably removes it",
                       description="Trace a model's loss (and with --backward its gradient) in the library, "
                       "propagate value intervals, and list the vulnerable operations.")
    _model_arguments(p)
    p.add_argument("-l", "--library", default="jax", help="the library whose tracer builds the graph: jax or torch")
    p.add_argument("--input-range", type=_interval, help="LOW,HIGH of every input element (default: the spec's)")
    p.add_argument("--weights", type=_interval, help="LOW,HIGH of every parameter (default: each parameter's "
                   "own values)")
    p.add_argument("--backward", action="store_true", help="also the gradient's graph (defects of the backward pass)")
    p.add_argument("--confirm", action="store_true", help="search, per flag and seed, for an input (then parameters) "
                   "that makes the loss or gradient non-finite there, against uniform sampling")
    p.add_argument("--fix", action="store_true", help="show each flag's suggested clamp, proved safe by the "
                   "analysis (with --confirm: whether it removes the failure at each confirming input, and how much it "
                   "changes the outputs at a seed input)")
    p.add_argument("--seeds", type=int, default=10, help="--confirm: searches per flag (default 10)")
    p.add_argument("--steps", type=int, default=200, help="--confirm: gradient steps per search (default 200)")
    p.add_argument("--uniform", type=int, default=2000, help="--confirm: uniform samples per seed (default 2000)")
    p.add_argument("--store", dest="store_dir", help="--confirm: write each confirmed defect as a report to this store "
                   "(verdict numerical_defect; replayable)")
    p.add_argument("--out", type=Path, help="also write the result as JSON to this file")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nablafuzz", description="Differential fuzzing of automatic "
                     "differentiation in PyTorch, JAX, TensorFlow and OneFlow.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="create the library runtimes (idempotent)")
    p.add_argument("--only", type=_csv_of("--only torch,jax"),
                   help="comma-separated libraries; LIB@VERSION (e.g. jax@0.6.0) builds that release next to the "
                        "default runtime, for `campaign --versions`")
    p.add_argument("--force", action="store_true")
    _campaign_parser(sub)
    _modelfuzz_parser(sub)
    _numerics_parser(sub)
    p = sub.add_parser("replay", help="re-run bug reports; exit 0 reproduced, 1 not reproduced, 3 changed, 2 error")
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("--specs", dest="spec_files", action="append", default=[])
    p.add_argument("--spec-dir", default="api_specs")
    p.add_argument("--equivalence", help="cross-library reports: the equivalence map (default: <spec-dir>/equivalence.yaml)")
    p.add_argument("--models", dest="model_files", action="append", type=Path, default=[],
                   help="model reports: model spec file (default: models/models.yaml)")
    p = sub.add_parser("triage", help="render the report store as markdown")
    p.add_argument("--store", default="bug_reports")
    p.add_argument("--out", type=Path, help="write the index to this file (and one page per root cause in "
                   "triage/ beside it) instead of printing the index")
    p.add_argument("--issue", metavar="ROOT_CAUSE", help="print one root cause (its id, or an unambiguous prefix) "
                   "as a ready-to-paste upstream issue")
    p.add_argument("--spec-dir", default="api_specs", help="repro scripts call only APIs the specs here declare")
    p.add_argument("--specs", dest="spec_files", action="append", default=[],
                   help="spec file of your own functions (their reports get repro scripts)")
    p = sub.add_parser("vet", help="record a human verdict in a report: bug, convention or false_positive "
                       "(a convention or false positive is never reported again)")
    p.add_argument("report", type=Path, help="the report file (bug_reports/<library>/<api>/<key>.json)")
    p.add_argument("--as", dest="verdict", required=True, choices=["bug", "convention", "false_positive"])
    p.add_argument("--note", required=True, help="one line: why (the upstream issue or documentation)")
    p = sub.add_parser("specs", help="derive, list or check API specs")
    p.add_argument("action", choices=["derive", "derive-cross", "regimes", "batching", "list", "check"])
    p.add_argument("library", nargs="?")
    p.add_argument("--spec-dir", default="api_specs")
    p.add_argument("--out", type=Path, help="derive: output file (default api_specs/<library>/derived.yaml)")
    p.add_argument("--apis", type=_csv_of("--apis 'jax.nn.*'"),
                   help="derive: probe only APIs matching these globs (e.g. 'jax.nn.*')")
    p.add_argument("-v", "--verbose", action="store_true", help="derive: print each probed API as it is done")
    p.add_argument("--specs", dest="spec_files", action="append", default=[],
                   help="regimes, batching: also probe the APIs of this spec file (your own functions)")
    return parser


def installed_libraries(spec_dir: str = "api_specs") -> List[str]:
    """Libraries with an adapter, an installed runtime and derived specs: what a campaign
    without --libraries covers."""
    from .runtime.install import InstallError, load_registry
    try:
        registry = load_registry()
    except InstallError:
        registry = {}
    from .libraries import LIBRARIES
    return ["numpy_ref"] + [lib for lib in LIBRARIES if lib != "numpy_ref"
                            and lib in registry and any((Path(spec_dir) / lib).glob("*.yaml"))]


def cmd_campaign(args: argparse.Namespace) -> int:
    from .campaign import run_campaign
    from .campaign.progress import ProgressView
    from .core.config import make_config
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "profile", "triage")}
    if args.spec_dir is not None:
        _existing_dir(Path(args.spec_dir), "--spec-dir")
    if settings.get("versions") and not settings["libraries"]:  # the library of the two releases
        settings["libraries"] = sorted({v.partition("@")[0] for v in settings["versions"]})
    settings["libraries"] = settings["libraries"] or installed_libraries(settings.get("spec_dir") or "api_specs")
    config = make_config(args.profile, **settings)
    with ProgressView(config) as view:
        summary = run_campaign(config, view.update)
    for line in summary.lines():
        print(line)
    if args.triage:
        from .reports.triage import render_triage
        render_triage(Path(config.store_dir), Path(args.triage), Path(config.spec_dir),
                      [Path(f) for f in config.spec_files])
        print(f"triage report: {args.triage}")
    return 0 if summary.complete else EXIT_INTERRUPTED


def model_specs(files: Optional[Sequence[Path]]):
    """The models of the given spec files, or of the shipped models/models.yaml."""
    from .specs.models import MODELS_FILE, load_model_specs
    if not files:
        if not MODELS_FILE.exists():
            raise SpecError(str(MODELS_FILE), "", "--models", "does not exist", "run from a nablafuzz checkout "
                            "(it has models/), or pass --models FILE naming a model spec file")
        files = [MODELS_FILE]
    return load_model_specs(files)


def cmd_modelfuzz(args: argparse.Namespace) -> int:
    from .core.objectives import OBJECTIVES, coverage_ok
    from .modelfuzz.loop import Settings
    from .modelfuzz.run import lines, run_model
    models = model_specs(args.model_files)
    if args.model not in models:
        raise SpecError(", ".join(sorted({m.source for m in models.values()})), args.model, "--model",
                        "no such model", f"choose one of {', '.join(sorted(models))}")
    spec = models[args.model]
    bad = [o for o in args.objectives if o not in OBJECTIVES]
    if bad:
        raise NablaError(f"--objective {bad[0]!r} is unknown; fix: choose from {', '.join(OBJECTIVES)}")
    if not coverage_ok(args.coverage):
        raise NablaError(f"--coverage {args.coverage!r} is unknown; fix: sumabs, logits or layer:NAME")
    for name, value, least in (("--mutations", args.mutations, 1), ("--batch", args.batch, 1),
                               ("--seed-inputs", args.seed_inputs, 1)):
        if value < least:
            raise NablaError(f"{name} {value} must be at least {least}")
    libraries = args.libraries or list(spec.libraries)
    if "cross" in args.objectives and len(libraries) < 2:
        raise NablaError("--objective cross compares libraries: name two or more with -l (e.g. -l jax,torch)")
    if args.sigma is not None and not args.sigma > 0:
        raise NablaError(f"--sigma {args.sigma} must be positive")
    sigma = spec.sigma if args.sigma is None else args.sigma
    settings = Settings(tuple(args.objectives), args.coverage, args.mutations, args.batch, sigma, args.linf,
                        args.threshold, args.seed, args.seed_inputs, False, args.seconds)
    outcomes = run_model(spec, libraries, settings, Path(args.store_dir), args.out, args.random,
                         Path(".nablafuzz/logs"))
    for line in lines(outcomes):
        print(line)
    print(f"summaries and plots: {args.out}/")
    return 0


def cmd_numerics(args: argparse.Namespace) -> int:
    from .numerics.run import Search, analyse_model, lines, record_reports, write_result
    models = model_specs(args.model_files)
    if args.model not in models:
        raise SpecError(", ".join(sorted({m.source for m in models.values()})), args.model, "--model",
                        "no such model", f"choose one of {', '.join(sorted(models))}")
    search = Search(args.seeds, args.steps, args.uniform) if args.confirm else None
    result = analyse_model(models[args.model], args.library, args.input_range, args.weights, args.backward,
                           Path(".nablafuzz/logs") / f"numerics-{args.model}-{args.library}.log", search)
    for line in lines(result, args.fix):
        print(line)
    if args.store_dir and search is not None:
        for line in record_reports(Path(args.store_dir), models[args.model], result, result.versions):
            print(line)
    if args.out:
        write_result(args.out, result)
        print(f"wrote {args.out}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .campaign.cross import CrossReplayer
    from .campaign.releases import ReleaseReplayer
    from .reports.replay import load_for_replay, replay_report
    from .reports.store import read_report
    from .runtime.registry import resolve_runtime
    from .runtime.runner import Runner
    from .specs.spec import load_specs
    worst, runners, specs, releases = 0, {}, {}, None
    paths = [str(Path.cwd())] + [str(Path(f).parent) for f in args.spec_files]
    cross = CrossReplayer(Path(args.spec_dir), args.spec_files, args.equivalence, paths)
    try:
        for path in args.reports:
            report = read_report(path)
            if report.fingerprint.api.startswith("model:"):
                from .modelfuzz.replay import replay_model_report
                result = replay_model_report(report, model_specs(args.model_files))
                print(f"{path}: {result.message()}  ({', '.join(result.versions)})")
                worst = max(worst, result.outcome.value)
                continue
            if report.fingerprint.releases:  # release-vs-release: both runtimes it names
                library = report.fingerprint.library
                if library not in specs:
                    specs[library] = load_specs(Path(args.spec_dir), [library], [Path(f) for f in args.spec_files])
                releases = releases or ReleaseReplayer(paths)
                rep, spec = load_for_replay(path, specs[library])
                result = releases.replay(rep, spec)
                print(f"{path}: {result.message()}  ({', '.join(result.versions)})")
                worst = max(worst, result.outcome.value)
                continue
            if report.fingerprint.oracle:
                result = cross.replay(report)
                print(f"{path}: {result.message()}  ({', '.join(result.versions)})")
                worst = max(worst, result.outcome.value)
                continue
            library = report.fingerprint.library
            if library not in specs:  # one spec load and one worker per library, for many reports
                specs[library] = load_specs(Path(args.spec_dir), [library], [Path(f) for f in args.spec_files])
                runners[library] = Runner(resolve_runtime(library, paths), Path(".nablafuzz/replay.log"), 60.0)
            rep, spec = load_for_replay(path, specs[library])
            result = replay_report(rep, spec, runners[library])
            print(f"{path}: {result.message()}  ({', '.join(result.versions)})")
            worst = max(worst, result.outcome.value)
    finally:
        cross.close()
        if releases is not None:
            releases.close()
        for runner in runners.values():
            runner.close()
    return worst


SPEC_DIR_FIX = "run from a nablafuzz checkout (it has api_specs/), or pass --spec-dir DIR naming the spec directory"


def _existing_dir(path: Path, option: str, fix: str = SPEC_DIR_FIX) -> None:
    """A directory the user named (or the default) must exist: a typo must not read as "empty"."""
    if not path.is_dir():
        raise SpecError(str(path), "", option, "is not a directory" if path.exists() else "does not exist", fix)


def cmd_triage(args: argparse.Namespace) -> int:
    from .reports.triage import render_triage
    store = Path(args.store)
    if not store.is_dir():
        problem = "is not a directory" if store.exists() else "does not exist"
        raise ReportError(f"report store {store} {problem}; fix: pass --store naming the store a campaign "
                          "wrote (default: bug_reports)")
    if args.issue:
        from .reports.triage import render_issue
        try:
            sys.stdout.write(render_issue(store, args.issue, Path(args.spec_dir), [Path(f) for f in args.spec_files]))
        except KeyError as exc:
            raise ReportError(f"triage --issue: {exc.args[0]} in {store}; fix: pass an id from the index's "
                              "'root cause' column") from None
        return 0
    text = render_triage(store, args.out, Path(args.spec_dir), [Path(f) for f in args.spec_files])
    if args.out is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {args.out}")
    return 0


def cmd_vet(args: argparse.Namespace) -> int:
    from .reports.vetting import vet
    report = vet(args.report, args.verdict, args.note)
    print(f"{args.report}: vetted {report.vetted.verdict} ({report.vetted.note})")
    return 0


def cmd_specs(args: argparse.Namespace) -> int:
    from .derive.specsource import derive, list_specs
    from .specs.spec import HINTS_FILE
    if args.action == "derive":
        if not args.library:
            raise NablaError("specs derive needs a library, e.g. `nablafuzz specs derive numpy_ref`")
        out = args.out or Path(args.spec_dir) / args.library / "derived.yaml"
        n = derive(args.library, out, only=args.apis, verbose=args.verbose,
                   hints_path=Path(args.spec_dir) / HINTS_FILE)
        print(f"wrote {n} specs to {out}")
        return 0
    if args.action in ("regimes", "batching"):  # probes whose results merge into one file
        _existing_dir(Path(args.spec_dir), "--spec-dir")
        probe, said = ((derive_regimes, "wrote the edges of {n} APIs to {file}") if args.action == "regimes" else
                       (derive_batching, "{n} APIs map over a batch; wrote {file}"))
        n = probe(Path(args.spec_dir), args.library, args.apis or ("*",), args.verbose, [Path(f) for f in args.spec_files])
        print(said.format(n=n, file=Path(args.spec_dir) / f"{args.action}.yaml"))
        return 0
    if args.action == "derive-cross":
        from .derive.crossderive import derive_classes
        _existing_dir(Path(args.spec_dir), "--spec-dir")
        out = args.out or Path(args.spec_dir) / "equivalence.yaml"
        n = derive_classes(Path(args.spec_dir), out, verbose=args.verbose, only=args.apis or ())
        print(f"wrote {n} equivalence classes to {out}")
        return 0
    _existing_dir(Path(args.spec_dir), "--spec-dir")
    for line in list_specs(Path(args.spec_dir), args.library, check_only=args.action == "check"):
        print(line)
    return 0


class _Probe:
    """The selected specs and one Runner per library, for the `specs regimes` and `specs
    batching` probes (a probe sends a few direct calls per API to the library's worker)."""

    def __init__(self, spec_dir: Path, library: Optional[str], apis: Sequence[str], spec_files: Sequence[Path],
                 name: str):
        from .specs.spec import load_specs
        libraries = [library] if library else installed_libraries(str(spec_dir))
        self.specs = load_specs(spec_dir, libraries, spec_files).select(libraries, list(apis))
        self.paths = [str(Path.cwd())] + [str(Path(f).parent) for f in spec_files]
        self.name, self.runners = name, {}

    def run_for(self, lib: str):
        from .runtime.registry import resolve_runtime
        from .runtime.runner import Runner
        if lib not in self.runners:
            log = Path(".nablafuzz/logs") / f"{self.name}-{lib}.log"
            self.runners[lib] = Runner(resolve_runtime(lib, self.paths), log, 30.0)
        return self.runners[lib].run

    def __enter__(self) -> "_Probe":
        return self

    def __exit__(self, *exc) -> None:
        for r in self.runners.values():
            r.close()


def derive_regimes(spec_dir: Path, library: Optional[str], apis: Sequence[str], verbose: bool,
                   spec_files: Sequence[Path] = ()) -> int:
    """`specs regimes [LIBRARY]`: probe the edges of the selected APIs and merge them into
    `<spec-dir>/regimes.yaml` (the other APIs' edges are kept)."""
    from .specs.generate import generate
    from .specs.regimes import REGIMES_FILE, load_edges, probe_edges, write_edges
    with _Probe(spec_dir, library, apis, spec_files, "regimes") as probe:
        found = probe_edges(probe.specs, probe.run_for, lambda s, d: generate(s, 0, 0, dtype=d),
                            print if verbose else (lambda _: None))
    path = spec_dir / REGIMES_FILE
    probed = {s.id for s in probe.specs}
    edges = {k: v for k, v in load_edges(path).items() if k not in probed}
    edges.update(found)
    write_edges(path, edges, "nablafuzz specs regimes")
    return len(found)


def derive_batching(spec_dir: Path, library: Optional[str], apis: Sequence[str], verbose: bool,
                    spec_files: Sequence[Path] = ()) -> int:
    """`specs batching [LIBRARY]`: probe which selected APIs map over a batch and merge them
    into `<spec-dir>/batching.yaml` (the other APIs' entries are kept)."""
    from .specs.batching import BATCHING_FILE, load_batched, probe_batching, write_batched
    from .specs.generate import first_nonempty
    with _Probe(spec_dir, library, apis, spec_files, "batching") as probe:
        found = probe_batching(probe.specs, probe.run_for, lambda s: first_nonempty(s, "float64"),
                               print if verbose else (lambda _: None))
    path = spec_dir / BATCHING_FILE
    probed = {s.id for s in probe.specs}
    ids = [k for k in load_batched(path) if k not in probed] + [k for k, ok in found.items() if ok]
    write_batched(path, ids, "nablafuzz specs batching")
    return sum(found.values())


def cmd_install(args: argparse.Namespace) -> int:
    from .runtime.install import main as install_main
    argv = (["--only", ",".join(args.only)] if args.only else []) + (["--force"] if args.force else [])
    return install_main(argv)


COMMANDS = {"campaign": cmd_campaign, "modelfuzz": cmd_modelfuzz, "numerics": cmd_numerics, "replay": cmd_replay, "triage": cmd_triage, "vet": cmd_vet, "specs": cmd_specs,
            "install": cmd_install}


# errno -> what to do about it, for a file the command could not write (or read)
_ELSEWHERE = "choose another place (--store, --campaign-dir, --out, --triage)"
_RESUME = "then re-run the same command (a campaign resumes where it stopped)"
_FILE_IN_THE_WAY = f"a regular file stands where a directory is needed: move it, or {_ELSEWHERE}"
OS_FIXES = {
    errno.EACCES: f"give yourself write access to it, or {_ELSEWHERE}",
    errno.EPERM: f"give yourself write access to it, or {_ELSEWHERE}",
    errno.EROFS: f"the file system is read-only: {_ELSEWHERE}",
    errno.ENOSPC: f"free some disk space, {_RESUME}",
    errno.EDQUOT: f"free some of your disk quota, {_RESUME}",
    errno.ENOTDIR: _FILE_IN_THE_WAY,
    errno.EEXIST: _FILE_IN_THE_WAY,
    errno.EISDIR: "a directory stands where a file is needed: name a file (e.g. --out triage.md)",
    errno.ENOENT: "check that the path exists",
}


def os_error_message(exc: OSError) -> str:
    """`cannot write <file>: <reason>; fix: ...` for an OSError that reached the command line."""
    # a rename (the last step of an atomic write) names its target second: that is the user's file
    name = next((f for f in (exc.filename2, exc.filename) if f is not None), "a file")
    reason = exc.strerror or str(exc)
    verb = "access" if exc.errno == errno.ENOENT else "write"
    fix = OS_FIXES.get(exc.errno, "check the path and its permissions, then re-run the same command")
    return f"cannot {verb} {name}: {reason}; fix: {fix}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except NablaError as exc:
        print(f"nablafuzz: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `nablafuzz triage | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a read-only store, a full disk, a file where a directory should be
        print(f"nablafuzz: error: {os_error_message(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("nablafuzz: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED

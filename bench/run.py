"""tessel against NumPy and jax.jit on the same inputs, in one process, side by side.

    python -m bench [--only NAME[,NAME]] [--repeat N] [--quick] [--json out.json]
                    [--frameworks numpy,jax,tessel] [--tessel-backend cpu|interpreter]
    python -m bench --threads          # tessel alone, child processes with TESSEL_NUM_THREADS=1, =2

For every workload of `bench/workloads.py` each framework's result is checked against
NumPy's (dtype-aware tolerance, a ✗ and the max error when off), then each framework is
timed: one warm-up call (for the jits: trace + compile + first run), then N timed
samples in interleaved rounds (numpy, jax, tessel, numpy, ...) with a pause before each
turn, so load changes on a shared machine hit all alike and one library's idle spinning
threads (OpenBLAS, thread pools) do not steal a core from the next. A sample of a fast
workload is a loop of calls sized to take a few milliseconds. The table shows medians
± half the interquartile range, tessel/jax and tessel/numpy time ratios (< 1: tessel is
faster) and GFLOP/s where the workload counts flops.

tessel runs twice per workload, in the same process on the same compiled program: with
all the pool's threads (the "tessel" column; TESSEL_NUM_THREADS or the CPUs) and limited
to one (the "tessel 1T" column, `runtime_support.max_threads(1)`: every loop runs on the
calling thread). Their ratio is the speed-up column, with the cores the threaded turns
kept busy (process CPU time / wall time).

A workload tessel cannot compile yet is reported ("tessel: not supported yet (...)"),
never fatal. These are benchmarks, not tests: timings move with the load average, which
the header prints.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

if __package__ in (None, ""):                   # run as `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.workloads import WORKLOADS, Workload
else:
    from .workloads import WORKLOADS, Workload

REPO = Path(__file__).resolve().parents[1]
FRAMEWORK_NAMES = ("numpy", "jax", "tessel", "tessel1")
JAX_MISSING = "jax not installed: pip install -e '.[bench]'"
ROUNDS = 3
SETTLE_SECONDS = 0.3            # > OpenBLAS's idle-thread spin (2^28 cycles by default)
MIN_SAMPLE_SECONDS = 0.005      # a sample of a faster workload loops over several calls
MAX_CALLS_PER_SAMPLE = 100_000
COMPILE_SAMPLES = 3             # fresh jits timed per framework for a "compile" workload
TOLERANCE = {"float16": 1e-2, "bfloat16": 5e-2, "float32": 1e-4, "float64": 1e-10}


# ----------------------------------------------------------------------------- frameworks

@dataclass(frozen=True)
class Framework:
    """How one framework runs a workload function: inputs -> jit -> call -> wait."""
    name: str
    column: str
    missing: Callable[[], str | None]   # why it cannot run here, or None
    inputs: Callable                    # NumPy arguments -> the framework's arguments
    jit: Callable                       # (fn, options) -> callable
    finish: Callable                    # a call's result -> the result, computed
    workload_fn: str = ""               # whose function of the workload it runs (default: name)
    threads: int | None = None          # tessel: at most this many pool threads per loop

    def turn(self):
        """The context its calls run in (a thread limit for tessel's 1-thread column)."""
        if self.threads is None:
            return contextlib.nullcontext()
        from tessel.backends.cpu import runtime_support
        return runtime_support.max_threads(self.threads)


def _jax_missing() -> str | None:
    try:
        import jax
    except ImportError:
        return JAX_MISSING
    jax.config.update("jax_enable_compilation_cache", False)   # cold compiles stay cold
    return None


def _jax_inputs(args):
    import jax
    return jax.device_put(args)


def _jax_jit(fn, options):
    import jax
    return jax.jit(fn)


def _jax_finish(result):
    import jax
    return jax.block_until_ready(result)


def _tessel_jit(fn, options):
    import tessel
    return tessel.jit(fn, backend=options.tessel_backend)


def _identity(x):
    return x


FRAMEWORKS = {
    "numpy": Framework("numpy", "numpy", lambda: None, _identity, lambda fn, options: fn, _identity),
    "jax": Framework("jax", "jax.jit", _jax_missing, _jax_inputs, _jax_jit, _jax_finish),
    "tessel": Framework("tessel", "tessel", lambda: None, _identity, _tessel_jit, _identity),
    # the same compiled program as "tessel", every loop on the calling thread
    "tessel1": Framework("tessel1", "tessel 1T", lambda: None, _identity, _tessel_jit, _identity,
                         workload_fn="tessel", threads=1),
}


# ----------------------------------------------------------------------------- outcomes

@dataclass
class Outcome:
    """One framework on one workload."""
    status: str = "ok"          # ok | missing | unsupported | failed | n/a
    note: str = ""              # why not ok
    samples: list[float] = field(default_factory=list)   # seconds per call
    calls_per_sample: int = 1
    cores_busy: float | None = None     # process CPU time / wall time while timed
    max_error: float | None = None      # max |got - numpy| / max |numpy|
    agrees: bool | None = None
    tolerance: float | None = None

    @property
    def timed(self) -> bool:
        return self.status == "ok" and bool(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Half the interquartile range, relative to the median."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return (q3 - q1) / 2 / self.median


def short_error(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    if len(text) > limit and "; " in text[:limit]:
        text = text[:text.index("; ")]           # the first clause names the problem
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(e).__name__}: {text}"


def _failure(framework: str, e: BaseException, compiled: bool) -> Outcome:
    if framework == "tessel" and not compiled:
        return Outcome("unsupported", f"not supported yet ({short_error(e)})")
    return Outcome("failed", f"failed ({short_error(e)})")


# ----------------------------------------------------------------------------- checking

def leaves(tree) -> list[np.ndarray]:
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in leaves(tree[key])]
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in leaves(item)]
    return [np.asarray(tree)]


def check(outcome: Outcome, got, want) -> None:
    """Record on `outcome` whether `got` agrees with NumPy's `want`, and the max error."""
    outcome.agrees, outcome.max_error = True, 0.0
    for g, w in zip(leaves(got), leaves(want), strict=True):
        tol = TOLERANCE.get(w.dtype.name, 0.0)
        outcome.tolerance = max(outcome.tolerance or 0.0, tol)
        if g.shape != w.shape or g.dtype != w.dtype:
            outcome.agrees, outcome.max_error = False, math.inf
            outcome.note = f"gives {g.dtype}{list(g.shape)}, numpy {w.dtype}{list(w.shape)}"
            return
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        finite = np.isfinite(w64)
        scale = float(np.max(np.abs(w64[finite]), initial=0.0)) or 1.0
        same = (g64 == w64) | (np.isnan(g64) & np.isnan(w64))      # incl. equal infinities
        with np.errstate(invalid="ignore"):
            diff = np.where(same, 0.0, np.abs(g64 - w64))
        diff = np.nan_to_num(diff, nan=math.inf, posinf=math.inf)
        outcome.max_error = max(outcome.max_error, float(np.max(diff, initial=0.0)) / scale)
        if not np.allclose(g64, w64, rtol=tol, atol=tol * scale, equal_nan=True):
            outcome.agrees = False
    if not outcome.agrees:
        outcome.note = (f"✗ max error {outcome.max_error:.2e} relative to max |numpy| "
                        f"(tolerance {outcome.tolerance:.0e})")


# ----------------------------------------------------------------------------- timing

def time_calls(call: Callable, calls: int) -> tuple[float, float]:
    """(wall seconds per call, process CPU seconds per call) over `calls` back-to-back calls."""
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls, (time.process_time() - cpu) / calls


def calls_per_sample(call: Callable) -> int:
    seconds, _ = time_calls(call, 1)
    return max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(MIN_SAMPLE_SECONDS / max(seconds, 1e-9))))


def in_rounds(calls: dict[str, Callable], outcomes: dict[str, Outcome], repeat: int,
              settle: float) -> None:
    """`repeat` samples per framework, the frameworks taking turns round by round."""
    rounds = min(ROUNDS, repeat)
    per_round = [repeat // rounds + (r < repeat % rounds) for r in range(rounds)]
    cpu = {name: 0.0 for name in calls}
    for n in per_round:
        for name, call in calls.items():
            outcome = outcomes[name]
            if outcome.status != "ok":
                continue
            time.sleep(settle)
            try:
                with FRAMEWORKS[name].turn():
                    call()                       # warm again: caches, pool, pages
                    for _ in range(n):
                        wall, used = time_calls(call, outcome.calls_per_sample)
                        outcome.samples.append(wall)
                        cpu[name] += used
            except Exception as e:               # noqa: BLE001 - reported, never fatal
                outcomes[name] = Outcome("failed", f"failed while timed ({short_error(e)})")
    for name, outcome in outcomes.items():
        if outcome.timed and name in cpu:
            outcome.cores_busy = cpu[name] / sum(outcome.samples)


def first_call(framework: Framework, fn, args, options) -> tuple[Callable, object]:
    """(a no-argument call of the jitted function, its first result); raises what fails."""
    jitted = None
    try:
        inputs = framework.inputs(args)
        jitted = framework.jit(fn, options)
        call = functools.partial(_call, framework.finish, jitted, inputs)
        return call, call()
    except Exception as e:
        # tessel's jit caches a program once compiled: an error after that is a run error
        compiled = jitted is not None and getattr(jitted, "cache_size", lambda: 1)() > 0
        raise _FirstCallError(compiled) from e


def _call(finish, jitted, inputs):
    return finish(jitted(*inputs))


class _FirstCallError(Exception):
    def __init__(self, compiled: bool):
        super().__init__("first call failed")
        self.compiled = compiled


def run_workload(w: Workload, frameworks: list[str], options) -> dict[str, Outcome]:
    """Check and time `w` under each framework; NumPy's result is the reference."""
    args = w.make_inputs(np.random.default_rng(0), **w.sizes(options.quick))
    want = w.function("numpy", options.quick)(*args)
    outcomes, calls = {}, {}
    for name in frameworks:
        framework = FRAMEWORKS[name]
        source = framework.workload_fn or name
        fn = w.function(source, options.quick)
        missing = framework.missing()
        if missing or fn is None:
            outcomes[name] = Outcome("missing" if missing else "n/a", missing or "")
            continue
        if w.kind == "compile":
            outcomes[name] = cold_compiles(framework, fn, args, want, options) \
                if name not in ("numpy", "tessel1") else Outcome("n/a")
            continue
        try:
            if source != name and source in calls:      # the program compiled already
                calls[name] = calls[source]
                with framework.turn():
                    got = calls[name]()
            elif source != name and source in outcomes:  # it did not compile
                outcomes[name] = Outcome(outcomes[source].status, outcomes[source].note)
                continue
            else:
                with framework.turn():
                    calls[name], got = first_call(framework, fn, args, options)
        except _FirstCallError as e:
            outcomes[name] = _failure(name, e.__cause__, e.compiled)
            continue
        except Exception as e:                   # noqa: BLE001 - reported, never fatal
            outcomes[name] = _failure(name, e, compiled=True)
            continue
        outcomes[name] = Outcome()
        if name != "numpy":                      # numpy is the reference
            check(outcomes[name], got, want)
        outcomes[name].calls_per_sample = calls_per_sample(calls[name])
    in_rounds(calls, outcomes, options.repeat, 0.0 if options.quick else SETTLE_SECONDS)
    return outcomes


def cold_compiles(framework: Framework, fn, args, want, options) -> Outcome:
    """Seconds from a fresh jit object of a fresh function to its first result.

    The process is warmed first (backend start-up, LLVM/XLA initialization) with another
    function, so each sample is one program's trace + optimize + compile + first run.
    Persistent compile caches are off for both (jax's at start-up, tessel's here), so
    a second bench run measures compiles, not cache loads."""
    warm = Outcome()
    with _env(TESSEL_CACHE_DIR="off"):
        return _cold_compiles(framework, fn, args, want, options, warm)


@contextlib.contextmanager
def _env(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cold_compiles(framework: Framework, fn, args, want, options, warm: Outcome) -> Outcome:
    try:
        first_call(framework, lambda x: x + 1.0, (np.ones(4, np.float32),), options)
        inputs = framework.inputs(args)
        for _ in range(min(COMPILE_SAMPLES, options.repeat)):
            fresh = functools.partial(fn)        # a new function object: no jit cache hit
            start = time.perf_counter()
            got = framework.finish(framework.jit(fresh, options)(*inputs))
            warm.samples.append(time.perf_counter() - start)
    except Exception as e:                       # noqa: BLE001 - reported, never fatal
        return _failure(framework.name, e, compiled=False)
    check(warm, got, want)
    return warm


# ----------------------------------------------------------------------------- report

def seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def cell(outcome: Outcome | None) -> str:
    if outcome is None:
        return "—"
    if not outcome.timed:
        return {"missing": "jax not installed", "n/a": "—", "unsupported": "not supported",
                "failed": "failed"}.get(outcome.status, outcome.status)
    mark = "" if outcome.agrees is None else (" ✓" if outcome.agrees else " ✗")
    return f"{seconds(outcome.median)} ±{outcome.spread:.0%}{mark}"


def ratio(a: Outcome | None, b: Outcome | None) -> str:
    if a is None or b is None or not (a.timed and b.timed):
        return "—"
    return f"{a.median / b.median:.2f}"


def gflops(w: Workload, outcomes: dict[str, Outcome], frameworks, quick: bool) -> str:
    if w.flops is None:
        return ""
    flops = w.flops(**w.sizes(quick))
    return " / ".join(f"{flops / outcomes[n].median / 1e9:.3g}" if n in outcomes and outcomes[n].timed
                      else "—" for n in frameworks)


def header(frameworks, options) -> list[str]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = [f"numpy {np.__version__} ({_blas()})"]
    if "jax" not in frameworks:
        pass
    elif FRAMEWORKS["jax"].missing() is None:
        import jax
        import jaxlib
        versions.append(f"jax {jax.__version__} (jaxlib {jaxlib.__version__})")
    else:
        versions.append(JAX_MISSING)
    versions.append(f"tessel {_tessel_version()} backend={options.tessel_backend}")
    return [f"tessel bench: {os.cpu_count()} CPUs ({_cpu_name()}), Python {platform.python_version()}",
            f"load average at start: {load} (1/5/15 min)",
            ", ".join(versions),
            f"TESSEL_NUM_THREADS={os.environ.get('TESSEL_NUM_THREADS', 'unset')}"
            + (f" (tessel pool: {tessel_threads(options)} threads)" if tessel_threads(options) else "") + "; "
            f"times: median of {options.repeat} samples after warm-up, in {min(ROUNDS, options.repeat)} "
            f"interleaved rounds, ± half the IQR; ratios < 1: tessel faster"
            + ("; --quick sizes" if options.quick else "")]


def tessel_threads(options) -> int | None:
    """Threads tessel's CPU pool has (TESSEL_NUM_THREADS, else the usable CPUs)."""
    if options.tessel_backend != "cpu":
        return None
    from tessel.backends.cpu import runtime_support
    return runtime_support.num_threads()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _blas() -> str:
    try:
        return np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
    except (AttributeError, KeyError, TypeError):
        return "BLAS unknown"


def _tessel_version() -> str:
    import tessel
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, text=True,
                             capture_output=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{tessel.__version__}" + (f" @ {rev}" if rev else "")


def table(rows: list[list[str]], head: list[str]) -> list[str]:
    widths = [max(len(r[k]) for r in [head] + rows) for k in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(wd) if k == 0 else c.rjust(wd)      # noqa: E731
                              for k, (c, wd) in enumerate(zip(r, widths))).rstrip()
    return [fmt(head), "-" * len(fmt(head))] + [fmt(r) for r in rows]


def speedup(one: Outcome | None, many: Outcome | None) -> str:
    """tessel's 1-thread time over its threaded time, and the cores the threaded turns used."""
    if one is None or many is None or not (one.timed and many.timed):
        return "—"
    busy = f", {many.cores_busy:.2f} busy" if many.cores_busy is not None else ""
    return f"{one.median / many.median:.2f}x{busy}"


def report(results: list[tuple[Workload, dict[str, Outcome]]], frameworks, options) -> list[str]:
    threads = tessel_threads(options)
    tessel_column = f"tessel ({options.tessel_backend}" + (f", {threads}T)" if threads else ")")
    columns = {"numpy": "numpy", "jax": "jax.jit", "tessel1": "tessel 1T", "tessel": tessel_column}
    shown = sorted(frameworks, key=("numpy", "jax", "tessel1", "tessel").index)
    head = ["workload"] + [columns[n] for n in shown]
    if "tessel1" in frameworks and "tessel" in frameworks:
        head.append(f"{threads}T/1T speed-up")
    if "tessel" in frameworks:
        head += [f"tessel/{n}" for n in ("jax", "numpy") if n in frameworks]
    flop_columns = [n for n in shown if n != "tessel1"]
    head.append("GFLOP/s " + "/".join(flop_columns))
    rows, notes = [], []
    for w, outcomes in results:
        row = [w.title(options.quick)] + [cell(outcomes.get(n)) for n in shown]
        if "tessel1" in frameworks and "tessel" in frameworks:
            row.append(speedup(outcomes.get("tessel1"), outcomes.get("tessel")))
        if "tessel" in frameworks:
            row += [ratio(outcomes["tessel"], outcomes[n]) for n in ("jax", "numpy") if n in frameworks]
        row.append(gflops(w, outcomes, flop_columns, options.quick))
        rows.append(row)
        for n in frameworks:
            o = outcomes.get(n)
            if o is not None and o.note and o.status not in ("missing", "n/a") \
                    and not (n == "tessel1" and o.note == outcomes.get("tessel", Outcome()).note):
                notes.append(f"  {w.name}: {n}: {o.note}")
    for n in frameworks:
        missing = {o.note for _, outcomes in results for o in [outcomes.get(n)]
                   if o is not None and o.status == "missing"}
        notes += [f"  {columns[n]} column: {note}" for note in sorted(missing)]
    lines = table(rows, head)
    if notes:
        lines += ["", "notes:"] + notes
    return lines


def as_json(results, options) -> dict:
    return {"quick": options.quick, "repeat": options.repeat,
            "tessel_backend": options.tessel_backend,
            "load_average": os.getloadavg(), "cpus": os.cpu_count(),
            "tessel_num_threads": os.environ.get("TESSEL_NUM_THREADS"),
            "workloads": [{"name": w.name, "label": w.title(options.quick), "kind": w.kind,
                           "flops": w.flops(**w.sizes(options.quick)) if w.flops else None,
                           "frameworks": {n: _outcome_json(o) for n, o in outcomes.items()}}
                          for w, outcomes in results]}


def _outcome_json(o: Outcome) -> dict:
    d = {"status": o.status, "note": o.note, "agrees": o.agrees, "max_error": o.max_error,
         "samples_s": o.samples, "calls_per_sample": o.calls_per_sample,
         "cores_busy": o.cores_busy}
    if o.timed:
        d.update(median_s=o.median, spread=o.spread)
    return d


# ----------------------------------------------------------------------------- threads mode

def threads_mode(selected: list[Workload], options) -> int:
    """Time tessel alone in two child processes, TESSEL_NUM_THREADS=1 and =2."""
    runs = [w for w in selected if w.kind == "run" and w.tessel_fn is not None]
    by_threads = {}
    print(f"tessel ({options.tessel_backend}) with TESSEL_NUM_THREADS=1 and =2, each in a "
          f"child process; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for threads in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "threads.json"
            cmd = [sys.executable, "-m", "bench", "--frameworks", "tessel", "--json", str(out),
                   "--only", ",".join(w.name for w in runs), "--repeat", str(options.repeat),
                   "--tessel-backend", options.tessel_backend] + (["--quick"] if options.quick else [])
            env = {**os.environ, "TESSEL_NUM_THREADS": str(threads)}
            child = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            if child.returncode != 0 or not out.exists():
                print(child.stdout + child.stderr, file=sys.stderr)
                print(f"the {threads}-thread child failed (exit {child.returncode})", file=sys.stderr)
                return 1
            by_threads[threads] = {r["name"]: r["frameworks"]["tessel"]
                                   for r in json.loads(out.read_text())["workloads"]}
    rows = []
    for w in runs:
        one, two = by_threads[1][w.name], by_threads[2][w.name]
        speedup = f"{one['median_s'] / two['median_s']:.2f}x" if "median_s" in one and "median_s" in two else "—"
        busy = f"{two['cores_busy']:.2f}" if two.get("cores_busy") is not None else "—"
        rows.append([w.title(options.quick), _thread_cell(one), _thread_cell(two), speedup, busy])
    for line in table(rows, ["workload", "1 thread", "2 threads", "2T/1T speed-up",
                             "cores busy (2T)"]):
        print(line)
    print("cores busy: process CPU time / wall time over the timed 2-thread calls.")
    if options.json:
        Path(options.json).write_text(json.dumps({"threads": by_threads}, indent=1))
    return 0


def _thread_cell(d: dict) -> str:
    if "median_s" not in d:
        return {"unsupported": "not supported", "failed": "failed"}.get(d["status"], d["status"])
    return f"{seconds(d['median_s'])} ±{d['spread']:.0%}"


# ----------------------------------------------------------------------------- main

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    names = [w.name for w in WORKLOADS]
    parser.add_argument("--only", metavar="NAME[,NAME]", type=lambda s: [n for n in s.split(",") if n],
                        help=f"comma-separated workloads: {', '.join(names)}")
    parser.add_argument("--repeat", metavar="N", type=int, default=9, help="timed samples per framework (9)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--frameworks", metavar="NAME[,NAME]", default=",".join(FRAMEWORK_NAMES),
                        type=lambda s: [n for n in s.split(",") if n],
                        help="comma-separated subset of numpy,jax,tessel,tessel1 (all; tessel1 "
                             "is tessel on one thread, skipped when the pool has one)")
    parser.add_argument("--tessel-backend", default="cpu", choices=["cpu", "interpreter"],
                        help="tessel.jit backend (cpu)")
    parser.add_argument("--threads", action="store_true",
                        help="time tessel with TESSEL_NUM_THREADS=1 and =2 (child processes) "
                             "and print the speed-up")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}; choose from {', '.join(names)}")
    bad = sorted(set(args.frameworks) - set(FRAMEWORK_NAMES))
    if bad:
        parser.error(f"unknown framework {', '.join(bad)}; choose from {', '.join(FRAMEWORK_NAMES)}")
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


def main(argv=None) -> int:
    options = parse_args(argv)
    os.environ["TESSEL_CACHE_DIR"] = "off"     # cold compiles stay cold (tessel's persistent cache), as jax's
    selected = [w for w in WORKLOADS if options.only is None or w.name in options.only]
    if options.threads:
        return threads_mode(selected, options)
    frameworks = [n for n in FRAMEWORK_NAMES if n in options.frameworks]
    if "tessel1" in frameworks and (tessel_threads(options) or 1) <= 1:
        frameworks.remove("tessel1")        # one thread is all tessel has: one column
    for line in header(frameworks, options):
        print(line, flush=True)
    results = []
    for w in selected:
        print(f"  running {w.name} ...", end="\r", file=sys.stderr, flush=True)
        results.append((w, run_workload(w, frameworks, options)))
    print(" " * 40, end="\r", file=sys.stderr)
    print()
    for line in report(results, frameworks, options):
        print(line)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if options.json:
        Path(options.json).write_text(json.dumps(as_json(results, options), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The `tessel` command line (also `python -m tessel`).

    tessel dump FILE.py:FN --arg f32[256,784] ... [--stage traced|optimized|all]
                [--format text|dot|svg] [-o DIR]
    tessel compile FILE.py:FN --arg ... -o model.tsl [--backend cpu|systolic]
                   [--target TRIPLE --cpu NAME] (cpu) [--config k=v ...] (systolic)
    tessel run model.tsl --input a.npy ... [--output DIR]
    tessel inspect model.tsl [--no-hlo] [--asm]
    tessel sim PROGRAM.s|model.tsl --input a.npy ... [--config k=v ...] [--trace out.json]
               [--plot out.png] [--output DIR]
    tessel version

Errors go to stderr with exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys

# Planned subcommands (ARCHITECTURE.md §9), shown in `tessel --help` until they exist.
PLANNED_COMMANDS: dict[str, str] = {}

_ARG_SPEC = re.compile(r"^\s*([A-Za-z0-9_]+)\s*\[\s*([0-9,\s]*)\]\s*$")


class CliError(Exception):
    """A user-facing error: printed on stderr, exit code 1."""


def tessel_version() -> str:
    """The installed distribution's version, else the package's `__version__`."""
    from importlib import metadata

    try:
        return metadata.version("tessel")
    except metadata.PackageNotFoundError:
        import tessel

        return getattr(tessel, "__version__", "unknown")


# ----------------------------------------------------------------------------- helpers

def parse_arg_spec(text: str):
    """'f32[256,784]' -> ShapeDtype((256, 784), f32); 'f32[]' is a scalar."""
    from .frontend.api import ShapeDtype
    match = _ARG_SPEC.match(text)
    if not match:
        raise CliError(f"--arg {text!r}: expected DTYPE[DIMS], e.g. f32[256,784] or s32[] for a scalar")
    dims = [d for d in match.group(2).replace(" ", "").split(",") if d]
    try:
        return ShapeDtype(tuple(int(d) for d in dims), match.group(1))
    except (TypeError, ValueError) as e:
        raise CliError(f"--arg {text!r}: {e}") from e


def load_function(target: str):
    """'path/to/file.py:fn' -> the function object."""
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise CliError(f"{target!r}: expected FILE.py:FUNCTION")
    if not os.path.isfile(path):
        raise CliError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(f"tessel_cli_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file: report, do not crash
        raise CliError(f"{path}: importing it failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise CliError(f"{path} has no function {name!r}")
    return fn


def _lower(args: argparse.Namespace):
    import tessel
    fn = load_function(args.function)
    specs = [parse_arg_spec(a) for a in args.arg]
    try:
        return tessel.jit(fn, backend=args.backend).lower(*specs)
    except Exception as e:  # noqa: BLE001 - tracing the user's code
        raise CliError(f"tracing {args.function} failed: {type(e).__name__}: {e}") from e


def _render(module, fmt: str) -> str:
    from .compiler import graph
    if fmt == "text":
        return str(module)
    dot = graph.to_dot(module)
    if fmt == "dot":
        return dot
    program = shutil.which("dot")
    if program is None:
        raise CliError("--format svg needs Graphviz's `dot` program on PATH; use --format dot")
    return subprocess.run([program, "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout


# ----------------------------------------------------------------------------- commands

def _cmd_version(args: argparse.Namespace) -> int:
    print(f"tessel {tessel_version()}")
    return 0


def _cmd_dump(args: argparse.Namespace) -> int:
    lowered = _lower(args)
    stages = {"traced": lowered.module}
    if args.stage in ("optimized", "all"):
        from .compiler import pipeline
        stages["optimized"] = pipeline.optimize(lowered.module, args.backend)[0]
    if args.stage == "optimized":
        del stages["traced"]
    suffix = {"text": "hlo.txt", "dot": "dot", "svg": "svg"}[args.format]
    for stage, module in stages.items():
        text = _render(module, args.format)
        if args.output:
            os.makedirs(args.output, exist_ok=True)
            path = os.path.join(args.output, f"{lowered.name}.{stage}.{suffix}")
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path}")
        else:
            print(f"# {stage}\n{text}")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    import tessel
    from .runtime.systolic.config import ConfigError
    fn = load_function(args.function)
    specs = [parse_arg_spec(a) for a in args.arg]
    try:
        path = tessel.aot.export(fn, *specs, path=args.output, backend=args.backend,
                                 target=args.target, cpu=args.cpu, features=args.features,
                                 config=args.config or None)
    except tessel.aot.ArtifactError as e:
        raise CliError(str(e)) from e
    except ConfigError as e:
        raise CliError(f"--config: {e}") from e
    except Exception as e:  # noqa: BLE001 - tracing/compiling the user's code
        raise CliError(f"compiling {args.function} failed: {type(e).__name__}: {e}") from e
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return 0


def _open_artifact(path: str):
    """(manifest, member sizes, hlo) of a checked artifact (hashes and format; the
    target may be another machine's)."""
    from .aot import archive, manifest as mf
    from .aot.errors import ArtifactError
    try:
        with archive.Reader(path) as reader:
            if mf.MANIFEST not in reader.names():
                raise CliError(f"{path}: no {mf.MANIFEST}; not a tessel artifact")
            manifest = mf.loads(reader.read(mf.MANIFEST, limit=archive.MAX_MANIFEST_BYTES), path)
            contents = reader.verify(mf.field(manifest, "members", dict, path), exempt=mf.MANIFEST)
            signature = mf.signature_from_json(manifest, path)
    except ArtifactError as e:
        raise CliError(f"{type(e).__name__}: {e}") from e
    return manifest, signature, contents


def _cmd_inspect(args: argparse.Namespace) -> int:
    manifest, signature, contents = _open_artifact(args.artifact)
    print(f"artifact   {args.artifact}")
    print(f"function   {manifest.get('name')} (C prefix {manifest.get('symbol_prefix')})")
    print(f"format     {manifest['format']} v{manifest['format_version']}, "
          f"written by tessel {manifest.get('tessel_version')}")
    print(f"backend    {manifest.get('backend')}")
    if manifest.get("backend") == "systolic":
        _print_systolic(manifest)
    else:
        target, entry = manifest.get("target", {}), manifest.get("entry", {})
        print(f"target     {target.get('triple')}, CPU {target.get('cpu')}")
        print(f"needs      {', '.join(target.get('required_features', [])) or 'no CPU features'}")
        print(f"entry      {entry.get('run')}, scratch {entry.get('scratch_bytes')} bytes")
    if manifest.get("statics"):
        print("statics    " + ", ".join(f"{k}={v}" for k, v in manifest["statics"]))
    _print_signature(signature)
    print("members")
    for name, data in sorted(contents.items()):
        print(f"  {name:<40} {len(data):>10} bytes")
    files = manifest.get("files", {})
    if args.asm and files.get("assembly") in contents:
        print("program")
        print(contents[files["assembly"]].decode())
    if files.get("hlo") in contents and not args.no_hlo:
        print("optimized HLO")
        print(contents[files["hlo"]].decode())
    return 0


def _print_systolic(manifest: dict) -> None:
    program = manifest.get("program", {})
    config = program.get("config", {})
    print(f"machine    {config.get('rows')}x{config.get('cols')} array, {config.get('dtype')} multiplies, "
          f"clock {config.get('clock_hz', 0) / 1e6:g} MHz, UB {config.get('ub_bytes')} bytes, "
          f"accumulators {config.get('acc_bytes')} bytes")
    print("config     " + " ".join(f"{k}={v}" for k, v in sorted(config.items())))
    print(f"program    {program.get('instructions')} instructions, host image {program.get('host_bytes')} bytes")
    print("layout")
    for kind in ("inputs", "outputs", "constants"):
        for r in program.get(kind, []):
            print(f"  {kind[:-1]:<9}{r.get('name', '?'):<28} {r.get('fmt')}{r.get('shape')} at {r.get('address')}")


def _print_signature(signature) -> None:
    from .runtime import pytree
    print("inputs")
    for spec in signature.in_specs:
        print(f"  {spec.path:<28} {spec.aval.dtype.name}{list(spec.aval.dims)}")
    print("outputs")
    out_paths = pytree.leaf_paths(signature.out_tree, "output")
    for path, aval in zip(out_paths, signature.out_avals_flat):
        print(f"  {path or 'output':<28} {aval.dtype.name}{list(aval.dims)}")


def _cmd_run(args: argparse.Namespace) -> int:
    artifact = _load_artifact(args.artifact)
    outputs, names = _call_artifact(artifact, args.artifact, args.input)
    _print_outputs(outputs, names, args.output)
    return 0


def _load_artifact(path: str):
    from .aot import load
    from .aot.errors import ArtifactError
    try:
        return load(path)
    except ArtifactError as e:
        raise CliError(f"{type(e).__name__}: {e}") from e


def _read_inputs(paths) -> list:
    import numpy as np
    arrays = []
    for path in paths:
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise CliError(f"--input {path}: cannot read it as .npy: {e}") from e
    return arrays


def _call_artifact(artifact, where: str, input_paths) -> tuple[list, list[str]]:
    """Run a loaded artifact on .npy files (one per flat input); (outputs, their names)."""
    from .runtime import pytree
    specs = artifact.signature.in_specs
    if len(input_paths) != len(specs):
        wanted = ", ".join(f"{s.path} {s.aval.dtype.name}{list(s.aval.dims)}" for s in specs)
        raise CliError(f"{where} takes {len(specs)} inputs ({wanted}); given {len(input_paths)} --input")
    leaves = _read_inputs(input_paths)
    *positional, kwargs = pytree.unflatten(artifact.signature.in_tree, leaves)
    try:
        result = artifact(*positional, **kwargs)
    except TypeError as e:
        raise CliError(str(e)) from e
    outputs, out_tree = pytree.flatten(result)
    names = pytree.leaf_paths(out_tree, "output") or ["output"]
    return outputs, [name or "output" for name in names]


def _print_outputs(outputs, names, directory) -> None:
    """A summary line per output; output0.npy, output1.npy ... in `directory` if given."""
    import numpy as np
    for k, (name, value) in enumerate(zip(names, outputs)):
        print(f"{name}: {_summary(value)}")
        if directory:
            os.makedirs(directory, exist_ok=True)
            np.save(os.path.join(directory, f"output{k}.npy"), value, allow_pickle=False)
    if directory:
        print(f"wrote {len(outputs)} file(s) output0.npy ... to {directory}")


def _summary(value) -> str:
    """'float32[4, 2]  min ...  max ...  mean ...' for a printed result."""
    import numpy as np
    text = f"{value.dtype}{list(value.shape)}"
    if value.size and value.dtype.kind in "fiub":
        text += f"  min {value.min():.6g}  max {value.max():.6g}  mean {value.astype(np.float64).mean():.6g}"
    return text


def _load_program(path: str, overrides: list[str]):
    """(instructions, layout, config) of an assembly file; errors name file:line:col."""
    from .runtime.systolic import asm, hostio
    from .runtime.systolic.config import ConfigError, SystolicConfig
    from .runtime.systolic.isa import IsaError
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{path}: cannot read it as assembly text: {e}") from e
    try:
        layout = hostio.parse_layout(text)
        program = asm.assemble(text)
    except (asm.AsmError, IsaError, hostio.LayoutError) as e:
        raise CliError(f"{path}:{e}") from e
    try:
        config = SystolicConfig.from_overrides(list(layout.config))
    except ConfigError as e:
        raise CliError(f"{path}: `#! config`: {e}") from e
    try:
        config = SystolicConfig.from_overrides(overrides, base=config)
    except ConfigError as e:
        raise CliError(f"--config: {e}") from e
    return program, layout, config


def _cmd_sim(args: argparse.Namespace) -> int:
    from .aot.archive import ZIP_MAGIC
    try:
        with open(args.program, "rb") as f:
            is_artifact = f.read(4) == ZIP_MAGIC
    except OSError as e:
        raise CliError(f"{args.program}: cannot read it: {e}") from e
    result, labels = _sim_artifact(args) if is_artifact else (_sim_program(args), None)
    _write_timeline(result, labels, args)
    return 0


def _sim_program(args: argparse.Namespace):
    """An assembly program: its `#!` layout, the functional simulator, the timing model."""
    import numpy as np

    from .runtime.systolic import functional, hostio, report, timing
    from .runtime.systolic.validate import ValidationError
    program, layout, config = _load_program(args.program, args.config)
    arrays = _read_inputs(args.input)
    memory = np.zeros(config.host_bytes, np.uint8)
    try:
        hostio.write_inputs(memory, layout.inputs, arrays, config)
        functional.run(program, config, memory, races=True)
        outputs = hostio.read_outputs(memory, layout.outputs)
    except (hostio.LayoutError, ValidationError, functional.MachineError) as e:
        raise CliError(f"{args.program}: {e}") from e
    result = timing.simulate_timing(program, config)
    print(report.text_report(result))
    print()
    for name, value in outputs.items():
        print(f"{name}: {_summary(value)}")
    if args.output:
        if not outputs:
            raise CliError(f"--output: {args.program} declares no outputs (`#! output NAME FMT[DIMS] at ADDR`)")
        os.makedirs(args.output, exist_ok=True)
        for name, value in outputs.items():
            np.save(os.path.join(args.output, f"{name}.npy"), value, allow_pickle=False)
        print(f"wrote {', '.join(f'{n}.npy' for n in outputs)} to {args.output}")
    return result


def _sim_artifact(args: argparse.Namespace):
    """A systolic .tsl: validated on load, run on the functional simulator, timed under its
    config with timing-only --config overrides (aot/systolic.py, `timing_config`)."""
    from .aot.errors import ArtifactConfigError
    from .runtime.systolic import report
    manifest, _, _ = _open_artifact(args.program)
    backend = manifest.get("backend")
    if backend != "systolic":
        raise CliError(f"{args.program} is a {backend} artifact: `tessel sim` simulates systolic artifacts "
                       f"and assembly programs; run it with `tessel run {args.program} --input ...`")
    artifact = _load_artifact(args.program)
    try:
        result = artifact.report(args.config)
    except ArtifactConfigError as e:
        raise CliError(f"--config: {e}") from e
    outputs, names = _call_artifact(artifact, args.program, args.input)
    print(report.text_report(result))
    print()
    _print_outputs(outputs, names, args.output)
    return result, artifact.origins


def _write_timeline(result, labels, args: argparse.Namespace) -> None:
    """The trace (events labelled with the HLO instruction each implements, if known) and plot."""
    from .runtime.systolic import report
    if args.trace:
        report.write_chrome_trace(result, args.trace, labels)
        print(f"wrote {args.trace} (chrome://tracing, ui.perfetto.dev)")
    if args.plot:
        try:
            report.write_timeline_png(result, args.plot)
        except ImportError as e:
            raise CliError(str(e)) from e
        print(f"wrote {args.plot}")


# ----------------------------------------------------------------------------- parser

def _epilog() -> str | None:
    if not PLANNED_COMMANDS:
        return None
    lines = ["coming (not available in this release):"]
    lines += [f"  {name:<10}{text}" for name, text in PLANNED_COMMANDS.items()]
    return "\n".join(lines)


def _function_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", metavar="FILE.py:FN", help="the function to trace")
    parser.add_argument("--arg", action="append", default=[], metavar="DTYPE[DIMS]",
                        help="one per argument, in order: e.g. f32[256,784], s32[] (a scalar)")
    parser.add_argument("--backend", default="cpu", help="backend to optimize for (default cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessel",
        description="tessel: an XLA-style tensor compiler for NumPy-style Python code.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"tessel {tessel_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    version = commands.add_parser("version", help="print the tessel version")
    version.set_defaults(handler=_cmd_version)

    dump = commands.add_parser("dump", help="trace FILE.py:FN and print its HLO (text, DOT, SVG)")
    _function_options(dump)
    dump.add_argument("--stage", choices=("traced", "optimized", "all"), default="traced")
    dump.add_argument("--format", choices=("text", "dot", "svg"), default="text")
    dump.add_argument("-o", "--output", metavar="DIR", help="write files here instead of printing")
    dump.set_defaults(handler=_cmd_dump)

    compile_ = commands.add_parser("compile", help="compile FILE.py:FN ahead of time into a .tsl artifact")
    _function_options(compile_)
    compile_.add_argument("-o", "--output", required=True, metavar="MODEL.tsl")
    compile_.add_argument("--target", metavar="TRIPLE", help="LLVM target triple (default: this host)")
    compile_.add_argument("--cpu", metavar="NAME", help="LLVM CPU name, e.g. x86-64, x86-64-v3, generic")
    compile_.add_argument("--features", metavar="+A,+B", help="CPU features, for CPUs tessel has no table for")
    compile_.add_argument("--config", nargs="+", action="extend", default=[], metavar="K=V",
                          help="--backend systolic: the machine to compile for, e.g. rows=32 cols=32 "
                               "(overrides of TESSEL_SYSTOLIC_CONFIG or the defaults)")
    compile_.set_defaults(handler=_cmd_compile)

    run = commands.add_parser("run", help="run a .tsl artifact on .npy inputs")
    run.add_argument("artifact", metavar="MODEL.tsl")
    run.add_argument("--input", action="append", default=[], metavar="A.npy",
                     help="one per input, in the order `tessel inspect` lists them")
    run.add_argument("--output", metavar="DIR", help="write output0.npy, output1.npy, ... here")
    run.set_defaults(handler=_cmd_run)

    inspect = commands.add_parser("inspect", help="show a .tsl artifact's manifest, signature, sizes and HLO")
    inspect.add_argument("artifact", metavar="MODEL.tsl")
    inspect.add_argument("--no-hlo", action="store_true", help="leave out the optimized HLO")
    inspect.add_argument("--asm", action="store_true", help="systolic: print the program as assembly")
    inspect.set_defaults(handler=_cmd_inspect)

    sim = commands.add_parser(
        "sim", help="simulate a systolic artifact or assembly program; report its cycles",
        description="Run a systolic .tsl artifact, or assemble and validate PROGRAM.s, on the "
                    "functional simulator and the timing model, then print the timing report. "
                    "An assembly program's `#!` lines declare its inputs, outputs and "
                    "configuration (docs/systolic-isa.md); an artifact carries them. On an "
                    "artifact, --config may change only timing fields (clock_hz, "
                    "host_bytes_per_cycle, host_latency_cycles): the program was compiled for "
                    "its array, buffers and dtype (docs/aot.md).")
    sim.add_argument("program", metavar="PROGRAM.s|MODEL.tsl")
    sim.add_argument("--input", action="append", default=[], metavar="A.npy",
                     help="one per `#! input` line, or per artifact input, in their order")
    sim.add_argument("--config", nargs="+", action="extend", default=[], metavar="K=V",
                     help="machine configuration overrides, e.g. rows=256 ub_bytes=32MiB dtype=int8 "
                          "(artifacts: timing fields only, e.g. clock_hz=1.2GHz)")
    sim.add_argument("--trace", metavar="OUT.json", help="write a Chrome/Perfetto trace of the timeline")
    sim.add_argument("--plot", metavar="OUT.png", help="write a PNG timeline (needs matplotlib)")
    sim.add_argument("--output", metavar="DIR",
                     help="write each `#! output` region as NAME.npy (artifacts: output0.npy ...) here")
    sim.set_defaults(handler=_cmd_sim)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (errors go to stderr, non-zero)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits for --help, --version and usage errors
        return _exit_code(exit_)
    try:
        return args.handler(args)
    except CliError as e:
        print(f"tessel {args.command}: error: {e}", file=sys.stderr)
        return 1


def _exit_code(exit_: SystemExit) -> int:
    if exit_.code is None or isinstance(exit_.code, int):
        return exit_.code or 0
    print(exit_.code, file=sys.stderr)
    return 1

"""The `tessel` command line (also `python -m tessel`).

Only `version` exists in this release. The subcommands of ARCHITECTURE.md §9 are
listed in the help as coming; they are not registered, so calling one is an
"invalid choice" error rather than a command that pretends to work.
"""

from __future__ import annotations

import argparse
import sys

# Planned subcommands (ARCHITECTURE.md §9), shown in `tessel --help` until they exist.
PLANNED_COMMANDS = {
    "dump": "trace FILE.py:FN for given argument shapes and print its HLO (text, DOT, SVG)",
    "compile": "compile FILE.py:FN ahead of time into a .tsl artifact",
    "run": "run a .tsl artifact on .npy inputs",
    "inspect": "show a .tsl artifact's manifest, signature and code",
    "sim": "run a systolic program on the simulated machine; trace and plot it",
}


def tessel_version() -> str:
    """The installed distribution's version, else the package's `__version__`."""
    from importlib import metadata

    try:
        return metadata.version("tessel")
    except metadata.PackageNotFoundError:
        import tessel

        return getattr(tessel, "__version__", "unknown")


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"tessel {tessel_version()}")
    return 0


def _epilog() -> str:
    lines = ["coming (not available in this release):"]
    lines += [f"  {name:<10}{text}" for name, text in PLANNED_COMMANDS.items()]
    return "\n".join(lines)


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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (errors go to stderr, non-zero)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits for --help, --version and usage errors
        return _exit_code(exit_)
    return args.handler(args)


def _exit_code(exit_: SystemExit) -> int:
    if exit_.code is None or isinstance(exit_.code, int):
        return exit_.code or 0
    print(exit_.code, file=sys.stderr)
    return 1

"""Rerun one fuzzed HLO program from a failure report (docs/reliability.md, "Fuzzing").

    python tests/fuzz/reproduce.py program.hlo --seed 1234 [--backend cpu --backend systolic]

The program text is what the failure printed (or the campaign log holds); the seed
rebuilds its arguments (hlo_programs.arguments). Every check of the campaign runs
(verifier, text round trip, both pipelines on the interpreter, each backend) and the
first mismatch is printed; the exit status is 1 when one is found. Outputs are all
compared with the inexact tolerance of the least precise float dtype in the program
unless --exact is given, since the text alone does not say which outputs went through
rounding ops (the campaign knows, and is stricter).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import hlo_programs  # noqa: E402
from tessel.compiler.parser import parse_module  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="HLO text of the program")
    parser.add_argument("--seed", type=int, required=True, help="the argument seed the report names")
    parser.add_argument("--backend", action="append", choices=("cpu", "systolic"),
                        help="backends to compare with the interpreter (default: cpu)")
    parser.add_argument("--exact", action="store_true", help="compare every output bit for bit")
    options = parser.parse_args(argv)
    with open(options.file) as f:
        module = parse_module(f.read())
    program = hlo_programs.Program(module, hlo_programs.arguments(module, options.seed), [], seed=options.seed)
    root = module.entry.root
    loosest = max(hlo_programs.rtol_of(i.shape) for i in module.entry.instructions)
    program.inexact = [0.0 if options.exact else loosest] * (len(root.operands) if root.opcode == "tuple" else 1)
    chosen = options.backend or ["cpu"]
    try:
        checks.check_verifies(program)
        checks.check_round_trip(program)
        reference = checks.check_pipelines(program, ("interpreter",) + tuple(chosen))
        for backend in chosen:
            checks.check_backend(program, backend, reference)
    except AssertionError as e:
        print(str(e).splitlines()[0])
        return 1
    print(f"no mismatch: verifier, round trip, pipelines and {', '.join(chosen)} agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())

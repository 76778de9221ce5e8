"""TESSEL_PROFILE_KERNELS=1: cycle counters around every kernel of the entry (a debug aid)."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
from tessel.backends.cpu import codegen
from tessel.backends.cpu.executable import CpuExecutable


def _module():
    def f(x, w):
        h = np.maximum(x @ w, 0.0)
        return h - h.max(axis=1, keepdims=True)
    x = np.ones((32, 16), np.float32)
    return tessel.jit(f).lower(x, np.ones((16, 8), np.float32)).compile().module, [x, np.ones((16, 8), np.float32)]


def test_kernels_are_counted_when_asked(monkeypatch):
    module, args = _module()
    monkeypatch.setenv(codegen.PROFILE_FLAG, "1")
    executable = CpuExecutable(module)
    monkeypatch.delenv(codegen.PROFILE_FLAG)
    plain = codegen.compile_program(module)
    program = executable.program
    assert len(program.profiled_kernels) == len(program.kernel_cycles) >= 2
    assert all(name.split(":")[0] in codegen.KERNELS for name in program.profiled_kernels)
    assert not program.kernel_cycles.any()
    for _ in range(3):
        executable.run(args)
    assert (program.kernel_cycles > 0).all()
    table = codegen.kernel_profile(program, seconds=1e-3)
    assert table.splitlines()[0].split() == ["share", "ms", "kernel"]
    assert len(table.splitlines()) == 1 + len(program.profiled_kernels)
    assert "readcyclecounter" in program.ir and "readcyclecounter" not in plain.ir


def test_profile_of_an_unprofiled_program_says_why():
    module, _ = _module()
    with pytest.raises(ValueError, match="TESSEL_PROFILE_KERNELS"):
        codegen.kernel_profile(codegen.compile_program(module))


def test_bench_kernel_profile_script_names_the_kernels():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))     # `bench` is a top-level folder
    from bench import kernel_profile, workloads
    mlp = {w.name: w for w in workloads.WORKLOADS}["mlp"]
    report = kernel_profile.profile(mlp, quick=True, calls=2)
    lines = report.splitlines()
    assert "ms per call" in lines[0] and lines[1].split() == ["share", "ms", "kernel"]
    assert sum(line.count("output:") for line in lines[2:]) == 3       # the MLP is three GEMMs

"""MXU utilization of compiled GEMMs in the timing model: weight loads hidden behind
compute (double-buffered weight tiles, lhs DMA ahead of the MATMULs)."""
from __future__ import annotations

import pytest

from tessel.backends.systolic.codegen import compile_program
from tessel.backends.systolic.executable import time_program, using_config
from tessel.compiler import pipeline
from tessel.compiler.parser import parse_module
from tessel.runtime.systolic.config import SystolicConfig


def gemm_program(m, k, n, config):
    module = parse_module(f"HloModule g\nENTRY main {{\n  a = f32[{m},{k}] parameter(0)\n"
                          f"  b = f32[{k},{n}] parameter(1)\n  d = f32[{m},{n}] dot_general(a, b), "
                          f"lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}\n  ROOT t = (f32[{m},{n}]) tuple(d)\n}}\n")
    with using_config(config):
        optimized, _ = pipeline.optimize(module, "systolic")
        return compile_program(optimized, config)


@pytest.mark.parametrize("m,k,n,array", [(1024, 1024, 1024, 128), (512, 512, 512, 64), (512, 256, 256, 32)])
def test_large_gemm_keeps_the_array_at_least_90_percent_busy(m, k, n, array):
    config = SystolicConfig(rows=array, cols=array)
    program = gemm_program(m, k, n, config)
    report = time_program(program)
    assert report.macs == m * k * n
    assert report.mxu_utilization >= 0.90, report.mxu_utilization
    # weight loads are hidden: the array almost never waits for a tile to arrive
    assert report.stalls["matrix"].get("weights", 0) <= 0.01 * report.total_cycles
    # and each tile is loaded while the previous MATMUL runs: shifts overlap matmuls
    matmuls = report.events_of("matrix")
    overlapped = sum(any(m.start < s.start < m.end for m in matmuls) for s in report.shifts)
    assert overlapped >= 0.9 * len(report.shifts)


def test_a_single_chunk_gemm_is_split_so_its_load_overlaps():
    program = gemm_program(1024, 1024, 1024, SystolicConfig())
    rows = {ins.rows for ins in program.instructions if ins.name == "MATMUL"}
    assert rows == {512}

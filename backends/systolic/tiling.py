"""Tiling a GEMM onto an R x C weight-stationary array: pure functions, no instructions.

A dot_general with batch dims is `batch` independent GEMMs  out[M, N] = lhs[M, K] rhs[K, N]
(`gemm_of`: M, K, N are the products of the lhs free, contracting and rhs free dims).

On the array a weight tile holds rhs[k0:k0+R, n0:n0+C]; a MATMUL streams T rows of
lhs[m, k0:k0+R] through it and adds (or writes) T rows of out[m, n0:n0+C] in the
accumulators. So:

    for each m chunk (T <= half the accumulator rows; the other half drains meanwhile)
      for each n tile                         (N / C of them)
        for each k tile                       (K / R of them; partial sums stay in the accumulators)
          LOAD_W  rhs[k tile, n tile]         into the shadow buffer while the previous MATMUL runs
          MATMUL  T rows, overwrite on the first k tile, accumulate on the others
        ACTIVATE  the accumulator chunk -> the unified buffer (overlaps the next n tile)

A k tile never crosses a lanes-wide block of a unified-buffer row (`k_pieces`). The m
chunk is also limited by the unified buffer: the lhs chunk and one output tile, double
buffered so the next chunk's DMA overlaps this chunk's compute, must fit the
budget the memory planner gives the layer (`plan_gemm`). When even one row of a layer
does not fit, the planner says so (`TilingError`) instead of producing a plan that
would overrun the buffer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...compiler.dot_dims import DotDims
from ...compiler.ir import Instruction


class TilingError(ValueError):
    """A layer cannot be tiled into the machine's buffers."""


def _prod(values) -> int:
    return math.prod(values) if values else 1


@dataclass(frozen=True)
class Gemm:
    """`batch` GEMMs of [M, K] x [K, N]."""
    batch: int
    m: int
    k: int
    n: int

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


def gemm_of(dot: Instruction) -> Gemm:
    """The GEMM a dot_general computes, whatever the order of its dims."""
    dims = DotDims.of(dot)
    lhs, rhs = (o.shape.dims for o in dot.operands)
    return Gemm(batch=_prod([lhs[d] for d in dims.lhs_batch]),
                m=_prod([lhs[d] for d in dims.free(0)]),
                k=_prod([lhs[d] for d in dims.lhs_contract]),
                n=_prod([rhs[d] for d in dims.free(1)]))


@dataclass(frozen=True)
class Tile:
    """One step of the weight-stationary loop nest: weight tile (k, n) against rows m."""
    m0: int
    rows: int          # T: rows streamed through the array
    k0: int
    depth: int         # k <= R: rows of the weight tile
    n0: int
    width: int         # n <= C: columns of the weight tile
    accumulate: bool   # False on the first k tile: overwrite the accumulators
    last_k: bool       # the output chunk is complete after this step: activate it


def k_pieces(k: int, array_rows: int, lanes: int) -> list[tuple[int, int]]:
    """(k0, depth) of each weight tile along K: at most R deep, and never across a
    lanes-wide block of a unified-buffer row (a MATMUL feeds lanes [lane, lane + k) of
    one row; blocks hold K's columns lanes at a time)."""
    pieces = []
    for block in range(0, k, lanes):
        end = min(block + lanes, k)
        pieces += [(k0, min(array_rows, end - k0)) for k0 in range(block, end, array_rows)]
    return pieces


@dataclass(frozen=True)
class GemmPlan:
    gemm: Gemm
    array_rows: int    # R
    array_cols: int    # C
    m_chunk: int       # rows per MATMUL (T), at most half the accumulator rows
    lanes: int = 0     # unified-buffer row width (0: C)

    @property
    def k_list(self) -> list[tuple[int, int]]:
        return k_pieces(self.gemm.k, self.array_rows, self.lanes or self.array_cols)

    @property
    def k_tiles(self) -> int:
        return len(self.k_list)

    @property
    def n_tiles(self) -> int:
        return math.ceil(self.gemm.n / self.array_cols)

    @property
    def m_chunks(self) -> int:
        return math.ceil(self.gemm.m / self.m_chunk)

    @property
    def weight_loads(self) -> int:
        """Weight tiles pushed per GEMM: every (k, n) tile once per m chunk."""
        return self.m_chunks * self.k_tiles * self.n_tiles

    def chunks(self):
        """(m0, rows) of every m chunk."""
        for m0 in range(0, self.gemm.m, self.m_chunk):
            yield m0, min(self.m_chunk, self.gemm.m - m0)

    def tiles(self, m0: int, rows: int):
        """The steps of one m chunk, in issue order (module docstring)."""
        C, g, ks = self.array_cols, self.gemm, self.k_list
        for n0 in range(0, g.n, C):
            for i, (k0, depth) in enumerate(ks):
                yield Tile(m0, rows, k0, depth, n0, min(C, g.n - n0),
                           accumulate=i > 0, last_k=i == len(ks) - 1)

    def all_tiles(self):
        for m0, rows in self.chunks():
            yield from self.tiles(m0, rows)


def ub_rows_per_gemm_row(gemm: Gemm, lanes: int) -> int:
    """Unified-buffer rows one lhs row (lanes-wide column blocks) and its output tile take."""
    return math.ceil(gemm.k / lanes) + 1


def plan_gemm(gemm: Gemm, array_rows: int, array_cols: int, acc_rows: int,
              ub_budget_rows: int, lanes: int | None = None) -> GemmPlan:
    """The largest m chunk that fits half the accumulators and, double buffered, the
    unified-buffer budget (module docstring)."""
    lanes = lanes or array_cols
    if acc_rows < 2:
        raise TilingError(f"the accumulators need at least 2 rows to double buffer, have {acc_rows}")
    per_row = 2 * ub_rows_per_gemm_row(gemm, lanes)
    fit = ub_budget_rows // per_row if per_row else gemm.m
    if fit < 1:
        raise TilingError(f"a {gemm.m}x{gemm.k}x{gemm.n} GEMM needs {per_row} unified-buffer rows "
                          f"per lhs row (double buffered), the budget is {ub_budget_rows}")
    m_chunk = max(1, min(gemm.m, acc_rows // 2, fit))
    if m_chunk == gemm.m and gemm.m >= 4 * array_rows:
        # One chunk would expose its whole lhs load before the first MATMUL; two let the
        # second chunk's load hide behind the first chunk's compute.
        m_chunk = math.ceil(gemm.m / 2)
    return GemmPlan(gemm, array_rows, array_cols, m_chunk, lanes)


def ideal_matmul_cycles(plan: GemmPlan) -> int:
    """Cycles the array streams rows: T per weight tile (the utilization denominator is
    this times R x C over the MACs actually done)."""
    return plan.gemm.batch * sum(t.rows for t in plan.all_tiles())

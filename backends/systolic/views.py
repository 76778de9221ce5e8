"""Strided views of host memory, and the DMA row runs that move them.

Every array value of a compiled program lives in host memory, row-major, f32 (the
design of XLA on TPUs: values in HBM between kernels, the on-chip buffers are scratch).
Data-movement ops that only re-address memory -- broadcast_in_dim, slice, transpose,
bitcast reshape -- are not copied: their consumers read the operand through a `View`
(base byte address, dims, byte strides per dim; stride 0 repeats, as a broadcast does).

A consumer reads a view as a matrix: the leading dims flattened are its rows, the last
dim its lanes. The DMA unit moves rows with one constant host stride, so a chunk of rows
becomes a few `Run`s: leading dims that are contiguous in memory collapse into one, and
a run breaks where the innermost collapsed dim wraps around.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ELEMENT_BYTES = 4          # values are f32 in host memory (bf16 weights: esize 2)
DMA_MAX_ROWS = (1 << 12) - 1
HOST_FORMAT = {4: "f32", 2: "bf16"}


class ViewError(ValueError):
    """A re-addressing the DMA unit cannot express (the caller materializes or refuses)."""


@dataclass(frozen=True)
class View:
    base: int                   # host byte address of element (0, ..., 0)
    dims: tuple[int, ...]
    strides: tuple[int, ...]    # bytes; 0 for a broadcast dim
    esize: int = ELEMENT_BYTES  # bytes per element in host memory: 4 (f32) or 2 (bf16)

    @classmethod
    def row_major(cls, base: int, dims, esize: int = ELEMENT_BYTES) -> "View":
        dims = tuple(dims)
        strides, step = [], esize
        for d in reversed(dims):
            strides.append(step)
            step *= d
        return cls(base, dims, tuple(reversed(strides)), esize)

    @property
    def fmt(self) -> str:
        """The host element format DMA and LOAD_W read the view in."""
        return HOST_FORMAT[self.esize]

    def with_(self, base: int | None = None, dims=None, strides=None) -> "View":
        return View(self.base if base is None else base, self.dims if dims is None else tuple(dims),
                    self.strides if strides is None else tuple(strides), self.esize)

    # ------------------------------------------------------------ shape as a matrix

    @property
    def rows(self) -> int:
        return math.prod(self.dims[:-1])

    @property
    def cols(self) -> int:
        return self.dims[-1] if self.dims else 1

    @property
    def lane_stride(self) -> int:
        """Byte stride along the last dim (a size-1 last dim is contiguous)."""
        if not self.dims or self.dims[-1] == 1:
            return self.esize
        return self.strides[-1]

    @property
    def lanes_contiguous(self) -> bool:
        return self.lane_stride == self.esize

    @property
    def lane_broadcast(self) -> bool:
        """Each row is one value repeated along the last dim (a per-row scalar)."""
        return bool(self.dims) and self.dims[-1] > 1 and self.strides[-1] == 0

    @property
    def row_broadcast(self) -> bool:
        """Every row is the same row (a bias broadcast over the leading dims)."""
        return all(s == 0 or d == 1 for d, s in zip(self.dims[:-1], self.strides[:-1]))

    def is_row_major(self) -> bool:
        return self == View.row_major(self.base, self.dims, self.esize)

    # ------------------------------------------------------------ re-addressing

    def broadcast(self, out_dims, broadcast_dimensions) -> "View":
        strides = [0] * len(out_dims)
        for j, i in enumerate(broadcast_dimensions):
            if self.dims[j] == out_dims[i]:
                strides[i] = self.strides[j]
        return self.with_(dims=out_dims, strides=strides)

    def slice(self, start, limit, step) -> "View":
        base = self.base + sum(a * s for a, s in zip(start, self.strides))
        dims = tuple(max(0, -(-(hi - lo) // st)) for lo, hi, st in zip(start, limit, step))
        return self.with_(base, dims, [s * st for s, st in zip(self.strides, step)])

    def transpose(self, permutation) -> "View":
        return self.with_(dims=[self.dims[p] for p in permutation],
                          strides=[self.strides[p] for p in permutation])

    def reshape(self, new_dims) -> "View":
        """The same elements under new dims, if a view can say so (no copy)."""
        new_dims = tuple(new_dims)
        old = [(d, s) for d, s in zip(self.dims, self.strides) if d != 1]
        new = [d for d in new_dims if d != 1]
        strides, i, j = {}, 0, 0
        while i < len(old) and j < len(new):
            gi, gj = i, j                    # the smallest groups with equal products
            po, pn = old[i][0], new[j]
            i, j = i + 1, j + 1
            while po != pn:
                if po < pn:
                    po, i = po * old[i][0], i + 1
                else:
                    pn, j = pn * new[j], j + 1
            group = old[gi:i]
            for (d0, s0), (d1, s1) in zip(group, group[1:]):
                if s0 != s1 * d1:
                    raise ViewError(f"reshape {list(self.dims)} -> {list(new_dims)} of a strided view")
            step = group[-1][1]
            for k in range(j - 1, gj - 1, -1):
                strides[k] = step
                step *= new[k]
        out, k = [], 0
        for d in new_dims:
            if d == 1:
                out.append(0)
            else:
                out.append(strides[k])
                k += 1
        return self.with_(dims=new_dims, strides=out)

    # ------------------------------------------------------------ rows -> DMA runs

    def leading(self) -> list[tuple[int, int]]:
        """(size, stride) of the leading dims with contiguous neighbours collapsed."""
        dims = [(d, s) for d, s in zip(self.dims[:-1], self.strides[:-1]) if d != 1]
        collapsed: list[tuple[int, int]] = []
        for d, s in dims:
            if collapsed and collapsed[-1][1] == s * d:
                collapsed[-1] = (collapsed[-1][0] * d, s)
            else:
                collapsed.append((d, s))
        return collapsed or [(1, 0)]

    def row_address(self, r: int) -> int:
        addr = self.base
        for d, s in reversed(self.leading()):
            r, i = divmod(r, d)
            addr += i * s
        return addr

    def runs(self, r0: int, count: int) -> list["Run"]:
        """Rows [r0, r0 + count) as runs of rows with one host stride."""
        inner, stride = self.leading()[-1]
        out, r = [], r0
        while r < r0 + count:
            n = min(r0 + count - r, inner - r % inner, DMA_MAX_ROWS)
            out.append(Run(r - r0, self.row_address(r), n, stride))
            r += n
        return out


@dataclass(frozen=True)
class Run:
    offset: int     # first row, relative to the chunk
    host: int       # host byte address of its first element
    rows: int
    stride: int     # bytes between its rows


def lane_blocks(cols: int, lanes: int) -> list[tuple[int, int]]:
    """(first column, width) of each lanes-wide block of a row."""
    return [(c, min(lanes, cols - c)) for c in range(0, max(cols, 1), lanes)]

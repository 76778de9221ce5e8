"""The cost model behind placement="auto": seconds per instruction on each device, plus
the transfers between neighbours on different devices.

    CostModel().choose(module, targets, first_choice, explicit, placement) -> {instr: device}

Estimates (seconds; an op a device cannot run costs infinity there):

    cpu        flops / CPU["flops_per_second"] + transcendentals x CPU["transcendental_flops"]
               / the same + bytes accessed / CPU["bytes_per_second"] + CPU["op_seconds"]
               (work and bytes from compiler/cost.py; op_seconds is small because the CPU
               backend fuses neighbouring elementwise ops into one loop)
    systolic   cycles at the machine's clock (SystolicConfig): a dot_general streams M rows
               per weight tile, ceil(K/R) x ceil(N/C) tiles per batch (the closed form of
               backends/systolic/tiling.py's loop nest), weight shifts hidden behind
               MATMULs of >= R rows, plus a DMA per lhs row when the lhs must be read
               transposed; other compute ops take one vector-unit pass per
               `lanes` elements; both overlap their host DMA (bytes / host_bytes_per_cycle)
               and pay the host latency twice (load, then store: the DMA unit runs in
               order) and the array's fill and drain once. Views
               (broadcast, reshape, transpose, slice) cost nothing: the DMA addresses do them
    transfer   runtime/placed.py's HOST_LINK: latency + bytes / bandwidth, charged on every
               edge whose ends are on different devices

The program's arguments and results are host arrays every device reads and writes
(runtime/placed.py), so edges to parameters, constants and the root cost nothing.

The choice: each instruction starts on its cheapest device, then a sweep moves any
instruction whose own cost plus the transfers to its neighbours' current devices is lower
elsewhere, until nothing moves (at most MAX_SWEEPS sweeps). Neighbours therefore group on
one device instead of ping-ponging: a cheap elementwise op between two matmuls on the
systolic machine stays there, since two transfers cost more than it saves. A local
search: a group that is only cheaper together than each member alone can stay split.
"""
from __future__ import annotations

import math

from .cost import _Bodies, instruction_cost
from .ir import Instruction, Module

# The host CPU, as data: sustained rates of the CPU backend's kernels on one AVX-512 core
# pair, data mostly cache-resident (order of magnitude; bench/ measures the real ratios).
CPU = {"flops_per_second": 50e9, "bytes_per_second": 100e9, "transcendental_flops": 10,
       "op_seconds": 0.05e-6}
VIEW_OPS = ("broadcast_in_dim", "reshape", "transpose", "slice", "copy", "tuple", "get_tuple_element")
MAX_SWEEPS = 20
DEVICES = ("cpu", "systolic")


def cpu_seconds(instr: Instruction, bodies: _Bodies) -> float:
    cost = instruction_cost(instr, bodies)
    flops = cost.flops + CPU["transcendental_flops"] * cost.transcendentals
    return flops / CPU["flops_per_second"] + cost.bytes_accessed / CPU["bytes_per_second"] + CPU["op_seconds"]


def systolic_cycles(instr: Instruction, config, bodies: _Bodies) -> int:
    """The closed-form cycle estimate of one op as its own kernel (module docstring)."""
    if instr.opcode == "transpose" and instr.attrs["permutation"][-1] != instr.shape.rank - 1:
        # the last dim moves: no strided view reads it, each row is gathered by a DMA
        return (instr.shape.size // max(1, instr.shape.dims[-1])) * config.host_latency_cycles
    if instr.opcode in VIEW_OPS:
        return 0
    cost = instruction_cost(instr, bodies)
    dma = math.ceil(cost.bytes_accessed / config.host_bytes_per_cycle)
    if instr.opcode == "dot_general":
        from ..backends.systolic.tiling import gemm_of
        g = gemm_of(instr)
        tiles = math.ceil(g.k / config.rows) * math.ceil(g.n / config.cols)
        compute = g.batch * tiles * max(g.m, config.rows)
        fill = config.rows + config.cols
        if _lhs_transposed(instr):
            # rows of K are not contiguous: each lhs row is gathered by a DMA of its own
            compute += g.batch * g.m * config.host_latency_cycles
    elif instr.opcode == "convolution":
        compute = math.ceil(cost.flops / (2 * config.rows * config.cols))
        fill = config.rows + config.cols
    else:
        elements = max(1, sum(leaf.size for leaf in instr.shape.leaves()))
        compute = math.ceil(elements / config.lanes) * max(1, len(instr.operands))
        fill = 0
    # one host latency to load, one to store: the DMA unit runs in order, so a kernel's
    # stores hold back the next kernel's loads (docs/systolic-backend.md, Performance)
    return max(compute, dma) + fill + 2 * config.host_latency_cycles


def _lhs_transposed(dot: Instruction) -> bool:
    """Whether the machine must transpose the lhs to stream it (its contracting dims are
    not its minor dims: backends/systolic/dot_layout.py)."""
    from .dot_dims import DotDims
    d = DotDims.of(dot)
    return tuple(d.lhs_contract) != tuple(range(d.lhs_rank - len(d.lhs_contract), d.lhs_rank))


def link_seconds(num_bytes: int) -> float:
    from ..runtime.placed import transfer_seconds
    return transfer_seconds(num_bytes)


class CostModel:
    """Seconds per (instruction, device) and the neighbour-aware choice."""

    def __init__(self, systolic_config=None):
        self.config = systolic_config

    def _config(self):
        if self.config is None:
            from ..backends.systolic.executable import default_config
            self.config = default_config()
        return self.config

    def seconds(self, instr: Instruction, device: str, placement, bodies: _Bodies) -> float:
        if placement.rules(device).reason(instr) is not None:
            return math.inf
        if device == "systolic":
            config = self._config()
            return systolic_cycles(instr, config, bodies) / config.clock_hz
        return cpu_seconds(instr, bodies)

    def choose(self, module: Module, targets: list[Instruction], first: dict, explicit: set,
               placement) -> dict:
        devices = sorted(set(DEVICES) | {placement.default})
        bodies = _Bodies()
        own = {i: {d: self.seconds(i, d, placement, bodies) for d in devices} for i in targets}
        choice = {i: first[i] if i in explicit else min(devices, key=own[i].get) for i in targets}
        users = module.entry.users()
        for _ in range(MAX_SWEEPS):
            moved = False
            for instr in targets:
                if instr in explicit:
                    continue
                best = min(devices, key=lambda d: self.total(instr, d, own, choice, users))
                if self.total(instr, best, own, choice, users) < self.total(instr, choice[instr], own, choice, users):
                    choice[instr] = best
                    moved = True
            if not moved:
                break
        return choice

    @staticmethod
    def total(instr: Instruction, device: str, own: dict, choice: dict, users: dict) -> float:
        """`instr`'s own cost on `device` plus the transfers its edges would need."""
        seconds = own[instr][device]
        for operand in instr.operands:
            if operand in choice and choice[operand] != device:
                seconds += link_seconds(operand.shape.nbytes)
        for user in users.get(instr, ()):
            if user in choice and choice[user] != device:
                seconds += link_seconds(instr.shape.nbytes)
        return seconds

    def estimate(self, module: Module, choice: dict, placement) -> float:
        """The model's seconds for a whole placement (ops plus transfers)."""
        bodies = _Bodies()
        users = module.entry.users()
        seconds = sum(self.seconds(i, d, placement, bodies) for i, d in choice.items())
        seconds += sum(link_seconds(i.shape.nbytes) for i in choice
                       if any(u in choice and choice[u] != choice[i] for u in users.get(i, ())))
        return seconds


__all__ = ["CPU", "CostModel", "cpu_seconds", "systolic_cycles"]

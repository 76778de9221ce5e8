"""The systolic backend's runtime side: compile once, run on the functional simulator.

    runner = SystolicExecutable(module, config)   # optimized module -> validated program
    outputs = runner.run([x, w, b])               # flat f32 arrays in, arrays out
    runner.report()                               # the timing model's cycles, utilization ...
    runner.program.text()                         # the instruction stream as assembly

`runtime/backends.py` registers "systolic" with `compile(module) = SystolicExecutable(
module, default_config()).run`; the Executable finds the runner through that bound
method (`Executable.backend_runner`), which is how `compiled.systolic_report()` and
`compiled.program_text()` reach it.

The machine: `default_config()` is `SystolicConfig()` (128x128, bf16 multiplies),
overridden by TESSEL_SYSTOLIC_CONFIG="rows=256,cols=256,..." (SystolicConfig field
overrides, as the CLI takes them) or, in-process, by `with using_config(config): ...`
around tracing/compiling (the pipeline reads it too).

Compiled programs go through the persistent compile cache (program_cache.py; keyed by
the module and the whole config). Before it runs, every program is checked by runtime/systolic/validate.py (operands,
addresses, weight FIFO, tokens). The race check -- that the dependency tokens order
every pair of conflicting accesses -- is costly on long programs: it runs when
TESSEL_SYSTOLIC_CHECK_RACES=1 and in the backend's tests.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from ...compiler.ir import Module
from ...runtime import compile_cache, compile_log
from ...runtime.backends import Backend
from ...runtime.compile_cache import DiskCache
from ...runtime.systolic.config import SystolicConfig
from ...runtime.systolic.validate import RACES_ENV, validate
from . import program_cache
from .codegen import compile_program
from .program import SystolicProgram

CONFIG_ENV = "TESSEL_SYSTOLIC_CONFIG"


_override: list[SystolicConfig] = []


@contextlib.contextmanager
def using_config(config: SystolicConfig):
    """Compile for `config` inside the block (the pipeline's choices, e.g. how to run a
    convolution, and the backend's compile both read `default_config()`)."""
    _override.append(config)
    try:
        yield config
    finally:
        _override.pop()


def default_config() -> SystolicConfig:
    if _override:
        return _override[-1]
    text = os.environ.get(CONFIG_ENV, "").strip()
    if not text:
        return SystolicConfig()
    return SystolicConfig.from_overrides([part for part in text.split(",") if part.strip()])


class SystolicExecutable:
    """One module compiled for one machine configuration."""

    def __init__(self, module: Module, config: SystolicConfig | None = None, check_races: bool | None = None,
                 cache: DiskCache | None = None):
        self.module = module
        self.config = config or default_config()
        self.program: SystolicProgram = _compile(module, self.config, cache)
        if check_races is None:
            check_races = os.environ.get(RACES_ENV, "") == "1"
        validate(self.program.instructions, self.config, host_bytes=self.program.host_bytes,
                 races=check_races)
        self._report = None

    def run(self, arrays) -> list[np.ndarray]:
        shapes = self.program.argument_shapes
        if len(arrays) != len(shapes):
            raise TypeError(f"{self.module.name}: expected {len(shapes)} arguments, given {len(arrays)}")
        for k, (a, dims) in enumerate(zip(arrays, shapes)):
            if tuple(np.shape(a)) != tuple(dims):
                raise TypeError(f"{self.module.name}: argument {k} must be float32{list(dims)}, "
                                f"given {np.asarray(a).dtype}{list(np.shape(a))}")
        memory = self.program.memory_with(arrays)
        simulate(self.program, memory)
        return self.program.outputs_from(memory)

    def report(self):
        """The timing model's account of one run (cycles do not depend on the data)."""
        if self._report is None:
            self._report = time_program(self.program)
        return self._report


def simulate(program: SystolicProgram, memory: np.ndarray) -> None:
    """Run the program on the functional simulator, in place on the host image."""
    from ...runtime.systolic import functional
    functional.run(program.instructions, program.config, memory, check=False)   # validated at compile time


def time_program(program: SystolicProgram):
    from ...runtime.systolic import timing
    return timing.simulate_timing(program.instructions, program.config)


def compile_module(module: Module, config: SystolicConfig | None = None) -> SystolicExecutable:
    return SystolicExecutable(module, config)


def _compile(module: Module, config: SystolicConfig, cache: DiskCache | None) -> SystolicProgram:
    """The program for `module` on `config`: from the persistent compile cache when it
    holds it (program_cache.py), else compiled (and stored there)."""
    if cache is None:
        return compile_program(module, config)
    entry_key = program_cache.key(module, config)
    program = program_cache.load(cache, entry_key)
    compile_log.log(f"{module.name}: disk cache {'hit' if program else 'miss'} {entry_key[:12]} in {cache.root}")
    if program is None:
        program = compile_program(module, config)
        program_cache.store(cache, entry_key, program)
        compile_log.log(f"{module.name}: stored in the disk cache")
    return program


def compile(module: Module):
    """The backend's compile: module -> run(list of arrays) -> list of arrays (through the
    persistent compile cache unless it is disabled, runtime/compile_cache.py)."""
    return SystolicExecutable(module, cache=compile_cache.default()).run


def backend() -> Backend:
    return Backend("systolic", compile, "instruction streams for the simulated TPU-like systolic machine")

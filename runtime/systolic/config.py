"""The systolic machine's configuration: every hardware fact the ISA, the simulators and
the timing model read, in one frozen dataclass.

Defaults follow the TPU papers where they say something (Jouppi et al., ISCA 2017 for
TPU v1's 24 MiB unified buffer and 4 MiB of accumulators and its 4-tile weight FIFO;
940 MHz is TPU v3's clock) and are round numbers elsewhere. Sizes are bytes; the machine
addresses the unified buffer (UB) and the accumulators in *rows* of `lanes` 32-bit words
(docs/systolic-isa.md, "Memory and addressing").

    SystolicConfig()                                   # 128x128, bf16 multiplies
    SystolicConfig(rows=16, cols=16, dtype="f32")
    SystolicConfig().with_(rows=256, cols=256)
    SystolicConfig.from_overrides(["rows=256", "ub_bytes=32MiB", "dtype=int8"])

An invalid configuration raises `ConfigError` naming the field, the value and what is
allowed.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

MIB = 1 << 20

# The multiply dtypes: what the matrix unit rounds its operands to, and what it
# accumulates in. Activations and the vector unit always work in f32 (see the ISA doc).
DTYPES = {
    "bf16": {"accumulate": "f32", "operand_bytes": 2},
    "f32": {"accumulate": "f32", "operand_bytes": 4},
    "int8": {"accumulate": "int32", "operand_bytes": 1},
}
# bf16 rounding: round to nearest, ties to even; or keep the high 16 bits of the f32.
ROUNDINGS = ("nearest_even", "truncate")
# Dataflows. The ISA and the functional simulator are weight-stationary ("ws"); "os"
# (output-stationary) and "is" (input-stationary) only select the SCALE-Sim
# compatibility timing model, which costs the same GEMM under the other dataflows.
DATAFLOWS = ("ws", "os", "is")

# Fields only the timing model reads: a compiled program's tiles, addresses and numerics
# stay valid when they change, so a loaded artifact may be timed under other values
# (`tessel sim model.tsl --config clock_hz=1.2GHz`). Every other field shapes the program
# (array and buffer sizes, FIFO depth, host memory) or its numbers (dtype, rounding).
TIMING_FIELDS = ("clock_hz", "host_bytes_per_cycle", "host_latency_cycles")

WORD_BYTES = 4           # one UB or accumulator lane holds one 32-bit word (f32 or int32)
MAX_ARRAY_DIM = 2048     # the ISA's lane-count fields are 12 bits
UB_ROW_ADDRESS_BITS = 20     # keep in step with isa.py's `ub`/`acc` fields
HOST_ADDRESS_BITS = 32       # host byte addresses


class ConfigError(ValueError):
    """A configuration the machine cannot have."""


def _field_error(name: str, value, allowed: str) -> ConfigError:
    return ConfigError(f"SystolicConfig.{name} = {value!r} is not allowed: expected {allowed}")


@dataclass(frozen=True)
class SystolicConfig:
    rows: int = 128                      # R: array rows = the K extent of a weight tile
    cols: int = 128                      # C: array columns = the N extent; vector lanes
    clock_hz: float = 940e6
    ub_bytes: int = 24 * MIB             # unified buffer (TPU v1: 24 MiB)
    acc_bytes: int = 4 * MIB             # accumulator memory (TPU v1: 4 MiB)
    weight_fifo_depth: int = 4           # weight tiles waiting to be shifted in (TPU v1: 4)
    host_bytes_per_cycle: float = 256.0  # host (HBM/DRAM) bandwidth
    host_latency_cycles: int = 500       # first byte of a DMA or host weight load
    host_bytes: int = 1 << 30            # host memory the programs address (bytes)
    dtype: str = "bf16"                  # multiply dtype: bf16 | f32 | int8
    bf16_rounding: str = "nearest_even"  # nearest_even | truncate
    dataflow: str = "ws"                 # ws | os | is (os/is: SCALE-Sim timing only)

    def __post_init__(self):
        for name, check in _CHECKS:
            check(name, getattr(self, name))
        self._check_sizes()

    def _check_sizes(self):
        for name in ("ub_bytes", "acc_bytes"):
            size = getattr(self, name)
            if size < self.row_bytes:
                raise _field_error(name, size, f"at least one row of {self.lanes} lanes x "
                                   f"{WORD_BYTES} bytes = {self.row_bytes} bytes")
            if size // self.row_bytes > 1 << UB_ROW_ADDRESS_BITS:
                raise _field_error(name, size, f"at most {1 << UB_ROW_ADDRESS_BITS} rows "
                                   f"({UB_ROW_ADDRESS_BITS}-bit row addresses) of "
                                   f"{self.row_bytes} bytes")

    # --- derived facts ------------------------------------------------------------
    @property
    def lanes(self) -> int:
        """Width of a UB / accumulator row and of the vector unit: C, or R if R > C (an
        input row must feed all R array rows)."""
        return max(self.rows, self.cols)

    @property
    def vector_lanes(self) -> int:
        return self.lanes

    @property
    def row_bytes(self) -> int:
        return self.lanes * WORD_BYTES

    @property
    def ub_rows(self) -> int:
        return self.ub_bytes // self.row_bytes

    @property
    def acc_rows(self) -> int:
        return self.acc_bytes // self.row_bytes

    @property
    def accumulate_dtype(self) -> str:
        return DTYPES[self.dtype]["accumulate"]

    @property
    def operand_bytes(self) -> int:
        """Bytes of one multiplier operand (a weight tile holds rows*cols of these)."""
        return DTYPES[self.dtype]["operand_bytes"]

    # --- building variants --------------------------------------------------------
    def with_(self, **changes) -> "SystolicConfig":
        """A copy with some fields changed (validated like the constructor)."""
        unknown = sorted(set(changes) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError(f"SystolicConfig has no field {', '.join(map(repr, unknown))}; "
                              f"fields: {', '.join(FIELD_NAMES)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_overrides(cls, overrides: Iterable[str] | Mapping[str, object] = (),
                       base: "SystolicConfig | None" = None, **kv) -> "SystolicConfig":
        """`base` (default: the defaults) with `k=v` overrides: CLI strings such as
        "rows=256", "ub_bytes=32MiB", "dtype=int8", a mapping, or keyword arguments.
        Strings are parsed by the field's type."""
        base = base if base is not None else cls()
        if isinstance(overrides, (str, bytes)) or not isinstance(overrides, (Iterable, Mapping)):
            raise ConfigError(f"config overrides must be a list of 'key=value' strings or a "
                              f"mapping, given {type(overrides).__name__} {overrides!r:.40}")
        items = dict(overrides) if isinstance(overrides, Mapping) else \
            dict(_split_override(s) for s in overrides)
        items.update(kv)
        return base.with_(**{k: parse_field(k, v) for k, v in items.items()})


# --- validation rules, one per field ----------------------------------------------

def _int_in(lo: int, hi: int | None = None):
    def check(name, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _field_error(name, value, "an int")
        if value < lo or (hi is not None and value > hi):
            raise _field_error(name, value, f"an int in [{lo}, {hi}]" if hi is not None
                               else f"an int >= {lo}")
    return check


def _positive_number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise _field_error(name, value, "a finite number > 0")


def _one_of(choices):
    def check(name, value):
        if value not in choices:
            raise _field_error(name, value, "one of " + ", ".join(map(repr, choices)))
    return check


def _host_bytes(name, value):
    _int_in(WORD_BYTES, 1 << HOST_ADDRESS_BITS)(name, value)
    if value % WORD_BYTES:
        raise _field_error(name, value, f"a multiple of {WORD_BYTES}")


_CHECKS = (
    ("rows", _int_in(1, MAX_ARRAY_DIM)),
    ("cols", _int_in(1, MAX_ARRAY_DIM)),
    ("clock_hz", _positive_number),
    ("ub_bytes", _int_in(1)),
    ("acc_bytes", _int_in(1)),
    ("weight_fifo_depth", _int_in(1, 64)),
    ("host_bytes_per_cycle", _positive_number),
    ("host_latency_cycles", _int_in(0)),
    ("host_bytes", _host_bytes),
    ("dtype", _one_of(tuple(DTYPES))),
    ("bf16_rounding", _one_of(ROUNDINGS)),
    ("dataflow", _one_of(DATAFLOWS)),
)
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(SystolicConfig))
assert FIELD_NAMES == tuple(name for name, _ in _CHECKS)


# --- parsing CLI strings ------------------------------------------------------------

_SIZE_SUFFIX = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": MIB, "mib": MIB,
                "g": 1 << 30, "gib": 1 << 30}
_FLOAT_SUFFIX = {"": 1.0, "k": 1e3, "khz": 1e3, "m": 1e6, "mhz": 1e6, "g": 1e9, "ghz": 1e9,
                 "hz": 1.0}
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(SystolicConfig)}


def _split_override(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"config override {text!r}: expected key=value, e.g. rows=256")
    return key.strip(), value.strip()


def parse_field(name: str, value):
    """The value of field `name` from a CLI string (non-strings pass through)."""
    if name not in _FIELD_TYPES:
        raise ConfigError(f"SystolicConfig has no field {name!r}; fields: {', '.join(FIELD_NAMES)}")
    if not isinstance(value, str):
        return value
    kind = _FIELD_TYPES[name]
    if kind == "str":
        return value
    match = re.fullmatch(r"\s*([-+]?[0-9.]+(?:e[-+]?[0-9]+)?)\s*([a-z]*)\s*", value.lower())
    suffixes = _SIZE_SUFFIX if kind == "int" else _FLOAT_SUFFIX
    if match is None or match.group(2) not in suffixes:
        raise _field_error(name, value, "an int (optionally with KiB/MiB/GiB)" if kind == "int"
                           else "a number (optionally with k/M/G or kHz/MHz/GHz)")
    try:
        number = float(match.group(1)) * suffixes[match.group(2)]
    except ValueError:       # "1.2.3" matches the digit class but is no number
        raise _field_error(name, value, "a number") from None
    if not math.isfinite(number):
        raise _field_error(name, value, "a finite number")
    if kind == "int":
        if number != int(number):
            raise _field_error(name, value, "a whole number")
        return int(number)
    return number

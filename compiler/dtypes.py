"""Element types of the IR and their NumPy counterparts.

NumPy has no bfloat16. tessel stores bf16 values in float32 arrays whose values are
rounded to bf16 (round-to-nearest-even) after every operation; at the NumPy boundary
a bf16 array is a float32 array holding bf16-representable values. This keeps the
dependency list to NumPy alone; the systolic machine uses the same rounding helpers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str          # IR spelling: f32, s32, pred ...
    kind: str          # "pred", "signed", "unsigned", "float"
    bits: int
    storage: np.dtype  # NumPy dtype that holds values of this type

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_integer(self) -> bool:
        return self.kind in ("signed", "unsigned")

    @property
    def is_pred(self) -> bool:
        return self.kind == "pred"

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    def __repr__(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


def _dt(name, kind, bits, storage):
    return DType(name, kind, bits, np.dtype(storage))


pred = _dt("pred", "pred", 8, np.bool_)
s8 = _dt("s8", "signed", 8, np.int8)
s32 = _dt("s32", "signed", 32, np.int32)
s64 = _dt("s64", "signed", 64, np.int64)
u8 = _dt("u8", "unsigned", 8, np.uint8)
u32 = _dt("u32", "unsigned", 32, np.uint32)
f16 = _dt("f16", "float", 16, np.float16)
bf16 = _dt("bf16", "float", 16, np.float32)   # stored as bf16-rounded float32
f32 = _dt("f32", "float", 32, np.float32)
f64 = _dt("f64", "float", 64, np.float64)

ALL = (pred, s8, s32, s64, u8, u32, f16, bf16, f32, f64)
BY_NAME = {d.name: d for d in ALL}
FLOATS = tuple(d for d in ALL if d.is_float)
INTEGERS = tuple(d for d in ALL if d.is_integer)

_FROM_NUMPY = {
    np.dtype(np.bool_): pred, np.dtype(np.int8): s8, np.dtype(np.int32): s32,
    np.dtype(np.int64): s64, np.dtype(np.uint8): u8, np.dtype(np.uint32): u32,
    np.dtype(np.float16): f16, np.dtype(np.float32): f32, np.dtype(np.float64): f64,
}
_ALIASES = {
    "bool": pred, "int8": s8, "int32": s32, "int64": s64, "uint8": u8, "uint32": u32,
    "float16": f16, "bfloat16": bf16, "float32": f32, "float64": f64,
}


def from_any(value) -> DType:
    """Accept a DType, an IR name ('f32'), a NumPy name ('float32') or a NumPy dtype."""
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        if value in BY_NAME:
            return BY_NAME[value]
        if value in _ALIASES:
            return _ALIASES[value]
    try:
        npd = np.dtype(value)
    except TypeError:
        npd = None
    if npd is not None and npd in _FROM_NUMPY:
        return _FROM_NUMPY[npd]
    supported = ", ".join(d.name for d in ALL)
    raise TypeError(f"unsupported dtype {value!r}; tessel supports {supported} "
                    f"(and their NumPy spellings)")


def from_numpy(npdtype) -> DType:
    return from_any(np.dtype(npdtype))


def round_to_bf16(x: np.ndarray, mode: str = "nearest") -> np.ndarray:
    """Round float32 values to bfloat16 precision, returned as float32.

    mode "nearest": round-to-nearest-even on the 16 dropped bits (NaN stays NaN);
    mode "truncate": mask off the low 16 bits.
    """
    a = np.ascontiguousarray(x, dtype=np.float32)
    bits = a.view(np.uint32)
    if mode == "truncate":
        out = bits & np.uint32(0xFFFF0000)
    elif mode == "nearest":
        lsb = (bits >> np.uint32(16)) & np.uint32(1)
        rounded = (bits + np.uint32(0x7FFF) + lsb) & np.uint32(0xFFFF0000)
        out = np.where(np.isnan(a), bits | np.uint32(0x00400000), rounded).astype(np.uint32)
    else:
        raise ValueError(f"bf16 rounding mode must be 'nearest' or 'truncate', got {mode!r}")
    return out.view(np.float32).reshape(np.shape(x))   # (ascontiguousarray makes 0-d 1-d)


def narrow_bf16(values: np.ndarray) -> np.ndarray:
    """float32 values -> uint16 bf16 bit patterns (the form native bf16 buffers hold),
    rounded to nearest even (exact for values that are bf16 already)."""
    rounded = round_to_bf16(values)
    return np.asarray(np.right_shift(rounded.view(np.uint32), 16), dtype=np.uint16)  # 0-d stays an array


def widen_bf16(bits: np.ndarray) -> np.ndarray:
    """uint16 bf16 bit patterns -> the float32 array holding those values."""
    return np.asarray(np.left_shift(bits.astype(np.uint32), 16)).view(np.float32)


def canonicalize(array: np.ndarray, dtype: DType) -> np.ndarray:
    """Store `array` as values of `dtype` (its storage dtype, bf16 rounded)."""
    out = np.asarray(array).astype(dtype.storage, copy=False)
    if dtype is bf16:
        out = round_to_bf16(out)
    return out

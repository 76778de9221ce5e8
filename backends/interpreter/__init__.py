"""The NumPy reference interpreter: the executable definition of every op's semantics.

    evaluate(module, args) -> value       # value: ndarray, or a tuple of values
    evaluate_computation(comp, args, ctx) # any computation, arguments unchecked
    Context(collectives=..., channels=..., custom_calls=..., fast_paths=True)
    IMPL: dict[opcode, rule]              # one rule per op of compiler.ops.OPS

Values are NumPy arrays in each dtype's storage type (dtypes.DType.storage); every
result is stored with `store`, so bf16 results are rounded to bf16 after every op.

Semantics where StableHLO/XLA leave a choice, or where NumPy differs from them:
- Integer arithmetic wraps (two's complement). Integer divide truncates toward zero and
  remainder takes the dividend's sign (C, not NumPy's floor division). As in XLA:
  x / 0 = -1 (all bits set, so the maximum for unsigned types), x % 0 = x, and for the
  most negative signed value MIN / -1 = MIN, MIN % -1 = 0.
- Float remainder is C fmod. power of integers wraps; a negative exponent gives 1 for
  base 1, +-1 for base -1 and 0 otherwise.
- round is round-half-to-even (np.rint). sign: -1, -0.0, +0.0, 1, NaN for NaN.
  maximum / minimum / clamp propagate NaN.
- Transcendental functions (exp, log, log1p, expm1, sqrt, rsqrt, tanh, logistic, sin,
  cos, erf, atan2, float power) are computed in float64 and rounded once to the result
  type. erf is our own (special.py, within 2 ulp of math.erf); logistic is computed
  without overflow for large |x|.
- convert: float -> integer truncates toward zero, saturates out-of-range values to the
  type's min/max and maps NaN to 0 (implementation-defined in XLA); anything -> pred is
  x != 0; integer -> integer wraps; to a float type rounds to nearest even (f64 -> bf16
  in one rounding step).
- dynamic_slice / dynamic_update_slice / gather clamp start indices so the window fits.
  scatter skips an update window unless all of it is in bounds, and combines repeated
  indices one after another in row-major order of the updates.
- dot_general and convolution accumulate in the operand type (f32 in f32; ints wrap).
- reduce and reduce_window combine the elements in NumPy's order when the reducer is a
  recognized ufunc (pairwise summation for float sums), as a balanced tree of
  neighbouring pairs otherwise (XLA leaves the order unspecified); the init value is
  combined once, last (and fills padding and base-dilation holes of reduce_window).
  f16/bf16 add/multiply always take the tree path, so every partial result is rounded.
- sort is always stable. For a plain `compare(a, b, LT/GT)` comparator NaNs go last
  (ascending) / first (descending); other comparators are used as given.
- conditional: pred false -> branch 0, true -> branch 1; an s32 index out of range ->
  the last branch.
- rng_bit_generator: Philox-4x32-10, state (key0, key1, counter_lo, counter_hi); see
  philox.py.
- all_reduce asks `ctx.collectives` (one process: the identity). send stores its value
  in `ctx.channels[channel_id]` and returns (); recv takes the oldest one or raises
  InterpreterError. custom_call runs `ctx.custom_calls[name](instr, *args)` or raises
  NotImplementedError naming the target.
"""
from .evaluator import (Context, Frame, InterpreterError, SingleProcessCollectives,
                        check_arguments, evaluate, evaluate_computation, store)
from .table import IMPL
from . import compute, control, data, elementwise, gather_scatter, reductions  # noqa: F401 (they fill IMPL)

__all__ = ["IMPL", "Context", "Frame", "InterpreterError", "SingleProcessCollectives",
           "check_arguments", "evaluate", "evaluate_computation", "store"]

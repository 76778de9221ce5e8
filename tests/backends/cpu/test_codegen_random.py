"""CPU backend on random straight-line programs: elementwise chains, broadcasts,
transposes, slices, concatenations, pads, reshapes, reductions, dots, compare/select
and iota over a few shapes, optimized by the cpu pipeline (so fused, scheduled and
planned with in-place reuse) and compared with the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import scalar_computation
from tessel.compiler import dtypes
from tessel.compiler.ir import Builder, Module, Shape
from tessel.compiler.pipeline import optimize
from tessel.runtime import backends

R, C = 8, 24


def f32(*dims):
    return Shape(dtypes.f32, dims)


class Program:
    """Builds a random program; `pool[dims]` holds the values of each shape so far."""

    def __init__(self, rng):
        self.rng = rng
        self.module = Module("random")
        self.b = Builder(self.module, "main")
        self.add = scalar_computation(self.module, "add", dtypes.f32)
        self.max = scalar_computation(self.module, "maximum", dtypes.f32)
        self.pool = {(R, C): [], (C,): [], (R,): [], (C, R): []}
        for k, dims in enumerate([(R, C), (R, C), (C,), (C, R)]):
            self.pool[dims].append(self.b.parameter(f32(*dims), f"p{k}"))
        self.w = self.b.parameter(f32(C, C), "w")

    def pick(self, dims):
        values = self.pool[dims]
        return values[int(self.rng.integers(len(values)))]

    def emit(self, *args, **kwargs):
        value = self.b.emit(*args, **kwargs)
        self.pool[value.shape.dims].append(value)
        return value

    def step(self):
        b, rng = self.b, self.rng
        kind = rng.choice(["unary", "binary", "binary", "broadcast", "reduce", "transpose", "slice_concat",
                           "pad_slice", "reshape", "dot", "select", "iota"])
        x = self.pick((R, C))
        if kind == "unary":
            op = rng.choice(["tanh", "sin", "negate", "abs", "logistic", "exp"])
            self.emit(op, [b.emit("negate", [b.emit("abs", [x])]) if op == "exp" else x])
        elif kind == "binary":
            op = rng.choice(["add", "multiply", "maximum", "subtract", "minimum"])
            self.emit(op, [x, self.pick((R, C))])
        elif kind == "broadcast":
            row, col = self.pick((R,)) if self.pool[(R,)] else None, self.pick((C,))
            source, dims = (row, (0,)) if row is not None and rng.random() < 0.5 else (col, (1,))
            self.emit("broadcast_in_dim", [source], attrs={"broadcast_dimensions": dims}, shape=f32(R, C))
        elif kind == "reduce":
            axis = int(rng.integers(2))
            init = b.constant(np.float32(0.0 if axis else -np.inf))
            self.emit("reduce", [x, init], attrs={"dimensions": (axis,), "to_apply": self.add if axis else self.max})
        elif kind == "transpose":
            self.emit("transpose", [x], attrs={"permutation": (1, 0)})
            self.emit("transpose", [self.pick((C, R))], attrs={"permutation": (1, 0)})
        elif kind == "slice_concat":
            cut = int(rng.integers(1, C))
            left = b.emit("slice", [x], attrs={"start_indices": (0, 0), "limit_indices": (R, cut)})
            right = b.emit("slice", [self.pick((R, C))], attrs={"start_indices": (0, cut), "limit_indices": (R, C)})
            self.emit("concatenate", [right, left] if rng.random() < 0.5 else [left, right], attrs={"dimension": 1})
        elif kind == "pad_slice":
            padded = b.emit("pad", [x, b.constant(np.float32(0.5))], attrs={
                "edge_padding_low": (1, 3), "edge_padding_high": (2, 0), "interior_padding": (0, 0)})
            self.emit("slice", [padded], attrs={"start_indices": (0, 0), "limit_indices": (R, C)})
        elif kind == "reshape":
            folded = b.emit("reshape", [x], shape=f32(R * 3, C // 3))
            self.emit("reshape", [b.emit("reverse", [folded], attrs={"dimensions": (0,)})], shape=f32(R, C))
        elif kind == "dot":
            product = b.emit("dot_general", [x, self.w], attrs={"lhs_contracting_dims": (1,),
                                                                "rhs_contracting_dims": (0,)})
            self.emit("tanh", [product])
        elif kind == "select":
            p = b.emit("compare", [x, self.pick((R, C))], attrs={"direction": "GT"})
            self.emit("select", [p, x, self.pick((R, C))])
        else:
            iota = b.emit("iota", [], attrs={"iota_dimension": int(rng.integers(2))}, shape=f32(R, C))
            self.emit("multiply", [x, iota])

    def finish(self):
        results = [vs[-1] for vs in self.pool.values() if vs]
        self.b.build(self.b.emit("tuple", results), entry=True)
        return self.module


@pytest.mark.parametrize("seed", range(10))
def test_random_programs_match_the_interpreter(seed):
    rng = np.random.default_rng(seed)
    program = Program(rng)
    for _ in range(30):
        program.step()
    module, _ = optimize(program.finish(), "cpu")
    args = [rng.standard_normal(p.shape.dims).astype(np.float32) * 0.5 for p in module.entry.parameters]
    want = evaluate(module, args)
    got = backends.get("cpu").compile(module)(args)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * float(np.max(np.abs(w), initial=1)),
                                   err_msg=f"seed {seed}, output {k}")

"""The bad-input battery (issue 9): every public entry point, fed what users and hostile
files throw at it, answers with a clear exception (type, and a message saying what was
expected, what was given and where), or computes the right result where the input is
merely unusual (NaN, empty, strided, read-only ...). None of it crashes the process or
damages the compile cache.

`BATTERY` is a table of cases, each tagged with the entry point it exercises;
`test_every_public_entry_point_has_a_battery_case` enumerates the public API and fails
when an entry point has none, so a new public function needs bad-input coverage.
Cases that could take the process down (recursion, huge shapes, self-referential
arguments) run in ONE child process (`isolated=True`): the child must survive them all
and exit 0. The whole module runs with TESSEL_CACHE_DIR set to a temporary directory,
and the last test checks that directory afterwards.
"""
from __future__ import annotations

import inspect
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel import ShapeDtype, aot, cli
from tessel.backends.cpu import llvm_target
from tessel.compiler.parser import HloParseError, parse_module
from tessel.frontend.errors import ConcretizationError, TesselError, TraceError, UnsupportedNumpyFunction
from tessel.runtime import compile_cache
from tessel.runtime.systolic import asm
from tessel.runtime.systolic.config import ConfigError, SystolicConfig
from tessel.runtime.systolic.isa import IsaError

HERE = os.path.basename(__file__)


# ----------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Case:
    entry: str                  # the public entry point, e.g. "tessel.aot.load"
    name: str
    run: Callable | str         # a callable, or source code for the isolated child
    raises: type | str | None   # None: must run (and its own asserts pass)
    match: str | None = None    # regex the message must contain
    isolated: bool = False

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.name}"


BATTERY: list[Case] = []


def case(entry: str, name: str, raises=None, match: str | None = None):
    """Register the decorated function as a battery case."""
    def register(fn):
        BATTERY.append(Case(entry, name, fn, raises, match))
        return fn
    return register


def isolated(entry: str, name: str, code: str, raises: str | None, match: str | None = None):
    """A case run in the child process; `raises` is the exception's class name (or a base's)."""
    BATTERY.append(Case(entry, name, textwrap.dedent(code), raises, match, isolated=True))


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=0, equal_nan=True)


F32 = np.float32


# ----------------------------------------------------------------------------- tessel.jit

case("tessel.jit", "not a function", TypeError, r"jit expects a function, given int")(lambda: tessel.jit(3))
case("tessel.jit", "unknown backend", ValueError, r"unknown backend 'gpu'; available backends: .*cpu")(
    lambda: tessel.jit(lambda x: x, backend="gpu"))


@case("tessel.jit", "unhashable static argument", TypeError, r"static argument n must be hashable.*given list")
def _():
    tessel.jit(lambda x, n: x * n, static_argnums=1)(np.ones(2), [1])


# ----------------------------------------------------------------------------- calling a jitted function

def twice_plus_one(x):
    return x * 2 + 1


@case("Jitted.__call__", "a string argument", TypeError, r"argument x must be an array or a number, given str 'abc'")
def _():
    tessel.jit(twice_plus_one)("abc")


@case("Jitted.__call__", "an arbitrary object", TypeError, r"argument x must be an array or a number, given object")
def _():
    tessel.jit(twice_plus_one)(object())


for _dtype, _value, _shown in (("complex64", np.ones(2, np.complex64), "complex64"),
                               ("object", np.array([object()]), r"dtype\('O'\)"),
                               ("unicode", np.array(["a"]), "<U1"),
                               ("datetime64", np.array(["2020-01-01"], "datetime64[D]"), r"<M8\[D\]")):
    case("Jitted.__call__", f"unsupported dtype {_dtype}", TypeError,
         rf"argument x: unsupported dtype .*{_shown}.*tessel supports pred, s8")(
        lambda v=_value: tessel.jit(twice_plus_one)(v))


case("Jitted.__call__", "a Python int beyond 64 bits", TypeError,
     r"argument x: a Python int of 71 bits does not fit in 64 \(s64 or u64\)")(lambda: tessel.jit(twice_plus_one)(2 ** 70))
case("Jitted.__call__", "a Python int of 1,329 bits", TypeError, r"a Python int of 1329 bits")(
    lambda: tessel.jit(twice_plus_one)(-10 ** 400))


@case("Jitted.__call__", "pytree leaf of the wrong type", TypeError, r"argument p\['b'\] must be an array")
def _():
    tessel.jit(lambda p: p["a"] + p["b"])({"a": np.ones(2), "b": "x"})


@case("Jitted.__call__", "shapes that do not broadcast, named with the user's line", TraceError,
      rf"{HERE}:\d+: add: operands could not be broadcast together with shapes \(2,\) \(3,\)")
def _():
    tessel.jit(lambda x, y: x + y)(np.ones(2), np.ones(3))


@case("Jitted.__call__", "matmul of mismatched inner dims", TraceError, r"matmul: .*size 4 is different from 3")
def _():
    tessel.jit(lambda x, y: x @ y)(np.ones((2, 3)), np.ones((4, 5)))


@case("Jitted.__call__", "a missing argument", TypeError, r"missing 1 required positional argument: 'y'")
def _():
    tessel.jit(lambda x, y: x + y)(np.ones(2))


@case("Jitted.__call__", "Python if on a traced value", ConcretizationError,
      rf"{HERE}:\d+: Python if/while/bool\(\) on a traced value .*tessel.numpy.where")
def _():
    def f(x):
        if x.sum() > 0:
            return x
        return -x
    tessel.jit(f)(np.ones(2))


@case("Jitted.__call__", "an unsupported NumPy function is named, with the line", UnsupportedNumpyFunction,
      rf"{HERE}:\d+: numpy.fft.fft is not supported on traced arrays")
def _():
    tessel.jit(lambda x: np.fft.fft(x))(np.ones(4))


@case("Jitted.__call__", "an unsupported numpy.linalg function", UnsupportedNumpyFunction, r"numpy.linalg.svd")
def _():
    tessel.jit(lambda x: np.linalg.svd(x))(np.ones((3, 3)))


@case("Jitted.__call__", "max of an empty array", ValueError,
      r"zero-size array to reduction operation maximum which has no identity")
def _():
    tessel.jit(lambda x: x.max())(np.ones((0, 3), F32))


@case("Jitted.__call__", "an output that is not an array", TypeError, r"output 0 of the traced function is a str")
def _():
    tessel.jit(lambda x: "done")(np.ones(2))


@case("Jitted.__call__", "NaN and inf propagate (cpu and interpreter)")
def _():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38], F32)
    for backend in ("cpu", "interpreter"):
        got = tessel.jit(lambda v: (v * 2 + 1, tnp.exp(v), v / v, tnp.maximum(v, 0)), backend=backend)(x)
        with np.errstate(all="ignore"):
            want = (x * 2 + 1, np.exp(x), x / x, np.maximum(x, 0))
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
            close(g, w)


@case("Jitted.__call__", "empty arrays compute")
def _():
    for backend in ("cpu", "interpreter"):
        f = tessel.jit(lambda a, b: (a.sum(), a @ b, tnp.exp(a), a.sum(axis=0)), backend=backend)
        a, b = np.ones((0, 3), F32), np.ones((3, 2), F32)
        s, m, e, s0 = f(a, b)
        assert float(s) == 0.0 and m.shape == (0, 2) and e.shape == (0, 3)
        close(s0, np.zeros(3, F32))


def _odd_layouts():
    base = np.arange(24, dtype=F32).reshape(4, 6) - 7.5
    readonly = base.copy()
    readonly.flags.writeable = False
    raw = np.zeros(base.nbytes + 1, np.uint8)[1:].view(F32).reshape(4, 6)
    raw[...] = base
    return {"strided": base[:, ::2], "negative stride": base[::-1, ::-2], "transposed": base.T,
            "Fortran order": np.asfortranarray(base), "read-only": readonly, "misaligned": raw,
            "broadcast view (stride 0)": np.broadcast_to(base[0], (4, 6))}


@case("Jitted.__call__", "strided, negative-stride, Fortran, read-only, misaligned, stride-0 arrays compute")
def _():
    for backend in ("cpu", "interpreter"):
        f = tessel.jit(lambda x: (x * 2 + 1, tnp.sum(x, axis=0), x @ x.T), backend=backend)
        for label, x in _odd_layouts().items():
            got = f(x)
            x = np.asarray(x)
            for g, w in zip(got, (x * 2 + 1, np.sum(x, axis=0), x @ x.T)):
                close(g, w)
            if label == "read-only":
                assert not x.flags.writeable      # arguments are never written
        close(tessel.jit(lambda x: x * 2 + 1, backend=backend)(np.float32(3.5)), np.float32(8.0))
    on_machine = tessel.jit(lambda x: (x * 2 + 1, tnp.sum(x, axis=0)), backend="systolic")
    for label, x in _odd_layouts().items():          # f32 vector unit: exact here
        got = on_machine(x)
        np.testing.assert_array_equal(got[0], np.asarray(x) * 2 + 1)
        close(got[1], np.sum(np.asarray(x), axis=0))


@case("Jitted.__call__", "a long elementwise chain compiles (fusions are bounded)")
def _():
    def chain(x):
        for _ in range(300):       # one fusion of 300 would exhaust the stack of its emitter
            x = tnp.sin(x)
        return x
    x = np.linspace(-1, 1, 5)
    want = x
    for _ in range(300):
        want = np.sin(want)
    close(tessel.jit(chain)(x), want)


isolated("Jitted.__call__", "unbounded recursion in the traced function", """
    def f(x):
        return f(x + 1)
    tessel.jit(f)(np.ones(2))
""", "TraceError", r"<string>:\d+: tracing exceeded Python's recursion limit \(\d+\)")

isolated("Jitted.__call__", "lax.cond bodies nested too deeply", """
    def g(x, d):
        if d == 0:
            return x + 1
        return tessel.lax.cond(True, lambda y: g(y, d - 1), lambda y: y, x)
    tessel.jit(lambda x: g(x, 400))(np.ones(2))
""", "TraceError", r"recursion limit.*lax.cond/scan bodies inside each other")

isolated("Jitted.__call__", "an argument nested thousands deep", """
    t = np.ones(2)
    for _ in range(100000):
        t = [t]
    tessel.jit(lambda a: 1.0)(t)
""", "TypeError", r"pytree .* nested deeper than Python's recursion limit, or containing itself")

isolated("Jitted.__call__", "an argument that contains itself", """
    a = [np.ones(2)]
    a.append(a)
    tessel.jit(lambda a: 1.0)(a)
""", "TypeError", r"containing itself")

isolated("Jitted.__call__", "a program that allocates 4 TB", """
    tessel.jit(lambda: tnp.zeros((10 ** 12,), tnp.float32))()
""", "MemoryError", r"lambda needs 3725.29 GiB for its outputs and scratch; this machine has [\d.]+ GiB available")

isolated("Jitted.__call__", "a 4 TB intermediate on the interpreter", """
    tessel.jit(lambda x: (tnp.broadcast_to(x, (10 ** 6, 10 ** 6)) * 2).T.sum(), backend="interpreter")(np.float32(1))
""", "MemoryError", r"TiB")


def _with_available_memory(nbytes: int, run: Callable, guard_from: int | None = None):
    """Run `run` as if the machine had `nbytes` available (nothing large is allocated)."""
    from tessel.runtime import memory
    saved = memory.available_bytes, memory.GUARD_FROM
    memory.available_bytes = lambda: nbytes
    memory.GUARD_FROM = saved[1] if guard_from is None else guard_from
    try:
        return run()
    finally:
        memory.available_bytes, memory.GUARD_FROM = saved


@case("Jitted.__call__", "outputs beyond the available memory are refused before allocating", MemoryError,
      r"iota512 needs 0.50 GiB for its outputs and scratch; this machine has 0.06 GiB available")
def _():
    def iota512():
        return tnp.arange(2 ** 27, dtype=tnp.float32)       # 512 MiB
    f = tessel.jit(iota512)
    _with_available_memory(64 << 20, f)


# ----------------------------------------------------------------------------- lower / compile / Compiled

@case("tessel.ShapeDtype", "dims whose bytes overflow 64 bits", ValueError,
      r"ShapeDtype: f32\[1099511627776, 1099511627776\] would take 4.8\d+e\+24 bytes, more than .* \(2\^62\)")
def _():
    ShapeDtype((2 ** 40, 2 ** 40), "float32")


case("tessel.ShapeDtype", "negative dims", ValueError, r"dims must be >= 0, given \(2, -1\)")(
    lambda: ShapeDtype((2, -1), "f32"))
case("tessel.ShapeDtype", "unknown dtype", TypeError, r"unsupported dtype.*complex")(
    lambda: ShapeDtype((2,), "complex64"))


@case("Jitted.lower", "f32[10**12] lowers and compiles without allocating", None)
def _():
    big = ShapeDtype((10 ** 12,), "float32")
    for backend in ("cpu", "interpreter"):
        compiled = tessel.jit(twice_plus_one, backend=backend).lower(big).compile()
        assert compiled.out_avals.dims == (10 ** 12,)


@case("Jitted.lower", "a string where an array goes", TypeError, r"argument x must be an array or a number, given str")
def _():
    tessel.jit(twice_plus_one).lower("x")


@case("Lowered.compile", "an op the systolic machine lacks", NotImplementedError,
      r"systolic backend: sort .* cannot run on the machine: no lowering for this op. Supported ops:")
def _():
    tessel.jit(lambda x: tnp.sort(x), backend="systolic").lower(np.ones(4, F32)).compile()


@case("Lowered.compile", "f64 on the f32-only systolic machine", NotImplementedError, r"its result is f64.*f32 words")
def _():
    tessel.jit(twice_plus_one, backend="systolic").lower(np.ones(4)).compile()


@case("Compiled.__call__", "wrong shape and dtype, all reported", TypeError,
      r"2 argument\(s\) do not match the compiled signature:\n  x: expected f32\[2\], given f32\[3\]\n  y: expected "
      r"f32\[2\], given s32\[2\]")
def _():
    compiled = tessel.jit(lambda x, y: x + y).lower(np.ones(2, F32), np.ones(2, F32)).compile()
    compiled(np.ones(3, F32), np.ones(2, np.int32))


@case("Compiled.__call__", "a pytree of another structure", TypeError,
      r"arguments do not match the compiled signature:\n  args\[0\]: dict missing keys \['b'\]")
def _():
    compiled = tessel.jit(lambda p: p["a"] * p["b"]).lower({"a": np.ones(2), "b": np.ones(2)}).compile()
    compiled({"a": np.ones(2)})


@case("Compiled.__call__", "other static values than compiled for", TypeError, r"static arguments \{1: 3\} differ")
def _():
    compiled = tessel.jit(lambda x, n: x * n, static_argnums=1).lower(np.ones(2), 2).compile()
    compiled(np.ones(2), 3)


# ----------------------------------------------------------------------------- tessel.device

@case("tessel.device", "an unknown device", ValueError, r"unknown device 'gpu'; available devices: .*systolic")
def _():
    with tessel.device("gpu"):
        pass


@case("tessel.device", "not a name", ValueError, r"unknown device 3")
def _():
    with tessel.device(3):
        pass


@case("tessel.device", "an error inside the scope leaves no scope open")
def _():
    from tessel.frontend.device_scope import current_device
    with pytest.raises(ZeroDivisionError):
        with tessel.device("cpu"):
            1 / 0
    assert current_device() is None


# ----------------------------------------------------------------------------- autodiff

case("tessel.grad", "not a function", TypeError, r"tessel.grad expects a function, given int")(lambda: tessel.grad(3))
case("tessel.value_and_grad", "not a function", TypeError, r"expects a function, given str")(
    lambda: tessel.value_and_grad("f"))
case("tessel.vjp", "not a function", TypeError, r"tessel.vjp expects a function, given NoneType")(
    lambda: tessel.vjp(None, np.ones(2)))
case("tessel.grad", "a non-scalar output", TesselError, r"scalar float output; the output was f64\[3\]")(
    lambda: tessel.grad(lambda x: x * 2)(np.ones(3)))
case("tessel.grad", "integer inputs", TesselError, r"argument x has dtype s32.*no gradient")(
    lambda: tessel.grad(lambda x: (x * 2).sum())(np.ones(3, np.int32)))
case("tessel.grad", "argnums out of range", TesselError, r"argnums 3 out of range")(
    lambda: tessel.grad(lambda x: x.sum(), argnums=3)(np.ones(3)))
case("tessel.value_and_grad", "a string input", TraceError, r"unsupported dtype .*<U3")(
    lambda: tessel.value_and_grad(lambda x: x.sum())("abc"))


@case("tessel.vjp", "a cotangent of the wrong shape", TesselError, r"cotangent leaf 0: expected f64\[3\], given f64\[4\]")
def _():
    _, pullback = tessel.vjp(lambda x: x * 2, np.ones(3))
    pullback(np.ones(4))


@case("tessel.grad", "NaN inputs give NaN gradients, not errors")
def _():
    g = tessel.grad(lambda x: (x * x).sum())(np.array([np.nan, 2.0]))
    assert np.isnan(g[0]) and g[1] == 4.0


# ----------------------------------------------------------------------------- optim

case("tessel.optim.sgd", "a string learning rate", TypeError, r"optim.sgd: lr must be a finite real number, given str")(
    lambda: tessel.optim.sgd("0.1"))
case("tessel.optim.momentum", "a NaN beta", TypeError, r"optim.momentum: beta must be a finite real number, given float nan")(
    lambda: tessel.optim.momentum(0.1, beta=float("nan")))
case("tessel.optim.adam", "an array learning rate", TypeError, r"optim.adam: lr must be a finite real number, given ndarray")(
    lambda: tessel.optim.adam(np.ones(2)))


@case("tessel.optim.sgd", "grads of another structure", ValueError, r"sgd.update: grads must have the structure of params:.*missing keys \['a'\]")
def _():
    opt = tessel.optim.sgd(0.1)
    opt.update({"b": np.ones(2)}, opt.init({"a": np.ones(2)}), {"a": np.ones(2)})


@case("tessel.optim.adam", "a grad of another shape", ValueError,
      r"adam.update: each grad must have its param's shape: params\['a'\]: param shape \[2\], grad shape \[3\]")
def _():
    opt = tessel.optim.adam()
    opt.update({"a": np.ones(3)}, opt.init({"a": np.ones(2)}), {"a": np.ones(2)})


# ----------------------------------------------------------------------------- distributed (one process, no mpiexec)

dist = tessel.distributed
case("tessel.distributed.all_reduce", "unknown reduction, at the user's line", TraceError,
     rf"{HERE}:\d+: all_reduce op must be one of sum, mean, max, min, got 'prod'")(
    lambda: dist.all_reduce(np.ones(2), op="prod"))
case("tessel.distributed.all_reduce", "a string", TraceError, r"unsupported dtype")(lambda: dist.all_reduce("abc"))
case("tessel.distributed.broadcast", "a root outside the job", TraceError,
     rf"{HERE}:\d+: broadcast root must be a rank of this job \(0..0\), got 5")(
    lambda: dist.broadcast(np.ones(2), root=5))
case("tessel.distributed.all_gather", "a string", TraceError, r"unsupported dtype")(lambda: dist.all_gather("abc"))


@case("tessel.distributed.initialize", "one process without mpiexec: identity collectives, NaN kept")
def _():
    dist.initialize()
    dist.initialize()                          # safe twice
    assert (dist.process_count(), dist.process_index()) == (1, 0)
    x = np.array([1.0, np.nan], F32)
    close(dist.all_reduce(x, op="mean"), x)
    close(dist.all_gather(x), x[None])
    close(dist.broadcast(x), x)


BATTERY.append(Case("tessel.distributed.process_count", "covered with initialize", lambda: dist.process_count(), None))
BATTERY.append(Case("tessel.distributed.process_index", "covered with initialize", lambda: dist.process_index(), None))


@case("tessel.distributed.all_reduce", "inside jit, errors point at the user's line", TraceError, rf"{HERE}:\d+: all_reduce op")
def _():
    tessel.jit(lambda x: dist.all_reduce(x, op="median"))(np.ones(2))


# ----------------------------------------------------------------------------- tessel.numpy / nn / lax

case("tessel.numpy", "a function tessel lacks", AttributeError,
     r"tessel.numpy has no function or attribute 'fft' \(numpy.fft exists; tessel does not support it yet\)")(
    lambda: tnp.fft)
case("tessel.numpy", "a name NumPy lacks too", AttributeError, r"tessel.numpy has no function or attribute 'frobnicate';")(
    lambda: tnp.frobnicate)
case("tessel.numpy", "reshape to another size", ValueError, r"cannot reshape array of size 6 into shape \(4,2\)")(
    lambda: tnp.reshape(np.ones(6), (4, 2)))
case("tessel.numpy", "axis out of bounds", ValueError,
     r"axis 5 is out of bounds for array of dimension 2")(lambda: tnp.sum(np.ones((2, 3)), axis=5))
case("tessel.numpy", "negative dims", ValueError, r"negative dimensions are not allowed")(lambda: tnp.zeros((-1,)))
case("tessel.numpy", "dims beyond 2^62 bytes", ValueError, r"more than the .* \(2\^62\) an array may have")(
    lambda: tnp.zeros((2 ** 40, 2 ** 40)))
case("tessel.numpy", "an index out of bounds", IndexError, r"index 5 is out of bounds for axis 0 with size 3")(
    lambda: tnp.take(np.arange(3.0), np.array([5])))


def _public_functions(module) -> dict[str, Callable]:
    return {name: getattr(module, name) for name in module.__all__
            if callable(getattr(module, name)) and not inspect.isclass(getattr(module, name))}


NAMESPACES = {"tessel.numpy": tnp, "tessel.nn": tessel.nn, "tessel.lax": tessel.lax}
# Functions that take no arrays: strings are legitimately accepted or not looked at.
_TAKES_NO_ARRAY = {"tessel.numpy.all", "tessel.numpy.any", "tessel.numpy.logical_not"}
# What a function fed strings may raise: a clean user-facing error (not AttributeError,
# KeyError, AssertionError, RecursionError ... from deep inside tessel).
CLEAN = (TesselError, TypeError, ValueError, NotImplementedError, IndexError)


def _feed_strings(qualname: str, fn: Callable):
    def run():
        try:
            params = inspect.signature(fn).parameters.values()
            n = sum(1 for p in params if p.default is p.empty
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)) or 1
        except (TypeError, ValueError):
            n = 1
        for bad in ("abc", object()):
            try:
                fn(*[bad] * n)
            except CLEAN:
                continue
            if qualname not in _TAKES_NO_ARRAY:
                raise AssertionError(f"{qualname}({bad!r:.20}) raised nothing")
    return run


for _ns, _module in NAMESPACES.items():
    for _name, _fn in _public_functions(_module).items():
        BATTERY.append(Case(f"{_ns}.{_name}", "strings and objects instead of arrays",
                            _feed_strings(f"{_ns}.{_name}", _fn), None))


# ----------------------------------------------------------------------------- the HLO parser

def hlo(body: str) -> str:
    return f"HloModule m\nENTRY e {{\n{body}\n}}\n"


for _name, _text, _match in (
    ("empty text", "", r"line 1, column 1: unexpected end of input; expected 'HloModule'"),
    ("truncated", hlo(" p = f32[4] parameter(0)\n ROOT s = f32[4] negate(")[:-4], r"line 4, column \d+: unexpected end of input; expected '\('"),
    ("unknown op", hlo(" p = f32[4] parameter(0)\n ROOT s = f32[4] frobnicate(p)"), r"line 4, column 18: unknown op 'frobnicate'"),
    ("braces nested 100,000 deep", hlo(" c = f32[1] constant(" + "{" * 100000 + "1" + "}" * 100000 + ")"),
     r"line 3, column \d+: nested deeper than 64 levels"),
    ("tuple shape nested 100,000 deep", hlo(" p = " + "(" * 100000 + "f32[]" + ")" * 100000 + " parameter(0)"),
     r"line 3, column \d+:"),
    ("a 100,000-digit number", hlo(" ROOT c = f32[] constant(" + "9" * 100000 + ")"), r"line 3, column \d+: .*too long"),
    ("an integer beyond s32", hlo(" ROOT c = s32[] constant(99999999999999)"), r"out of range for s32"),
    ("a float exponent beyond f64", hlo(" ROOT c = f32[] constant(1e999999)"), r"out of range"),
    ("an attribute beyond 64 bits", hlo(" p = f32[4] parameter(0)\n ROOT s = f32[1] slice(p), slice={[0:" + "9" * 30 + "]}"),
     r"line 4, column \d+:"),
    ("a shape of 2^124 elements", hlo(" p = f32[4611686018427387904,4611686018427387904] parameter(0)"),
     r"line 3, column 6: f32\[4611686018427387904, 4611686018427387904\] would take .* bytes, more than"),
    ("a dimension beyond 2^62", hlo(" p = f32[99999999999999999999] parameter(0)"), r"dimension size .* is too large"),
    ("a literal shorter than its shape", hlo(" ROOT c = f32[100000000000] constant(0)"),
     r"expected a \{...\} list of 100000000000 elements here, found '0'"),
    ("a computation that calls itself", "HloModule m\nc1 {\n p = f32[] parameter(0)\n ROOT r = f32[] call(p), to_apply=c1\n}\n"
     "ENTRY e {\n p = f32[] parameter(0)\n ROOT r = f32[] call(p), to_apply=c1\n}\n", r"line \d+, column \d+:"),
    ("an undefined operand", hlo(" ROOT r = f32[] negate(q)"), r"line 3, column \d+: .*q"),
    ("a name defined twice", hlo(" p = f32[] parameter(0)\n p = f32[] negate(p)"), r"line 4, column \d+:"),
    ("binary garbage", "\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x03\x00>\x00", r"line 1, column 1:"),
    ("a declared type the op does not produce", hlo(" p = f32[4] parameter(0)\n ROOT s = f32[5] negate(p)"),
     r"negate produces f32\[4\], but the instruction declares f32\[5\]"),
):
    case("tessel.compiler.parser.parse_module", _name, HloParseError, _match)(lambda t=_text: parse_module(t))

case("tessel.compiler.parser.parse_module", "bytes instead of text", TypeError, r"takes HLO text \(str\), got bytes")(
    lambda: parse_module(b"HloModule m"))


@case("tessel.compiler.parser.parse_module", "a parsed 4 TB program compiles; running it is a clean MemoryError", MemoryError)
def _():
    from tessel.runtime import backends
    run = backends.get("cpu").compile(parse_module(hlo(" ROOT r = f32[1000000000000] iota(), iota_dimension=0")))
    run([])


# ----------------------------------------------------------------------------- the systolic assembler and config

for _name, _text, _match in (
    ("unknown opcode", "FROB x=1", r"1:1: unknown opcode 'FROB'"),
    ("unknown field", "DMA_LOAD hostx=0", r"1:10: .*hostx"),
    ("a field given twice", "DMA_LOAD host=0 host=1", r"1:17: .*host"),
    ("a 5,000-digit value", "DMA_LOAD host=" + "9" * 5000, r"1:15: host: 9{20}... \(5000 characters\) is out of range"),
    ("a 5,000-digit hex value", "DMA_LOAD host=0x" + "f" * 5000, r"1:15: host: 0xf{18}... \(5002 characters\) is out of range"),
    ("a float for an int field", "DMA_LOAD host=1.5", r"1:15: host: expected an unsigned int .* got '1.5'"),
    ("garbage on line 3", "HALT\n# ok\n\x00\x01\x02", r"3:1:"),
):
    case("tessel.runtime.systolic.asm.assemble", _name, (asm.AsmError, IsaError), _match)(lambda t=_text: asm.assemble(t))

case("tessel.runtime.systolic.asm.assemble", "bytes instead of text", TypeError,
     r"assemble takes assembly text \(str\), given bytes; a binary program is read by from_binary")(
    lambda: asm.assemble(b"HALT"))
case("tessel.runtime.systolic.asm.assemble", "None", TypeError, r"given NoneType")(lambda: asm.assemble(None))
case("tessel.runtime.systolic.asm.from_binary", "a partial word", IsaError, r"whole number of 16-byte words; got 3 bytes")(
    lambda: asm.from_binary(b"\x01\x02\x03"))
case("tessel.runtime.systolic.asm.from_binary", "an unknown opcode", IsaError, r"word 0: unknown opcode 0 .* known: 1=DMA_LOAD")(
    lambda: asm.from_binary(bytes(range(64))))
case("tessel.runtime.systolic.asm.from_binary", "text instead of bytes", TypeError,
     r"from_binary takes the program's bytes, given str; assembly text is read by assemble")(lambda: asm.from_binary("HALT"))
case("tessel.runtime.systolic.asm.to_binary", "bad text", asm.AsmError, r"1:1: unknown opcode")(lambda: asm.to_binary("NOPE"))
case("tessel.runtime.systolic.asm.disassemble_binary", "truncated words", IsaError, r"whole number of 16-byte words")(
    lambda: asm.disassemble_binary(asm.to_binary("HALT")[:-1]))

for _name, _kwargs, _match in (
    ("negative rows", {"rows": -1}, r"SystolicConfig.rows = -1 is not allowed: expected an int in \[1, 2048\]"),
    ("rows beyond the ISA", {"rows": 10 ** 9}, r"rows = 1000000000 is not allowed"),
    ("a string for rows", {"rows": "a"}, r"rows = 'a' is not allowed: expected an int"),
    ("a bool for rows", {"cols": True}, r"cols = True is not allowed: expected an int"),
    ("a NaN clock", {"clock_hz": float("nan")}, r"clock_hz = nan is not allowed: expected a finite number > 0"),
    ("an infinite bandwidth", {"host_bytes_per_cycle": float("inf")}, r"host_bytes_per_cycle = inf"),
    ("an unknown dtype", {"dtype": "f64"}, r"dtype = 'f64' is not allowed: expected one of 'bf16', 'f32', 'int8'"),
    ("2^60 bytes of host memory", {"host_bytes": 2 ** 60}, r"host_bytes = 1152921504606846976 is not allowed"),
):
    case("SystolicConfig", _name, ConfigError, _match)(lambda kw=_kwargs: SystolicConfig(**kw))

case("SystolicConfig", "an unknown field", TypeError, r"unexpected keyword argument 'foo'")(lambda: SystolicConfig(foo=1))
for _name, _over, _match in (
    ("no '='", ["rows"], r"config override 'rows': expected key=value"),
    ("an unknown key", ["zzz=1"], r"SystolicConfig has no field 'zzz'; fields: rows, cols"),
    ("a 5,000-digit size", ["ub_bytes=" + "9" * 5000], r"ub_bytes = '9{10}.*expected a finite number"),
    ("a malformed number", ["clock_hz=1.2.3"], r"clock_hz = '1.2.3' is not allowed: expected a number"),
    ("not a list", 5, r"config overrides must be a list of 'key=value' strings or a mapping, given int"),
    ("a bare string", "rows=4", r"given str"),
):
    case("SystolicConfig.from_overrides", _name, ConfigError, _match)(lambda o=_over: SystolicConfig.from_overrides(o))


# ----------------------------------------------------------------------------- AOT: save, export, load, call

@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> str:
    return aot.export(lambda x, y: tnp.exp(x) @ y + 1.0, ShapeDtype((3, 4), "float32"), ShapeDtype((4, 2), "float32"),
                      path=str(tmp_path_factory.mktemp("artifact") / "small.tsl"))


_ARTIFACT: dict[str, str] = {}        # filled by the battery test from the fixture


def members_of(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def write_zip(path, members: list[tuple[str, bytes]]) -> str:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return str(path)


def declare_size(path, member: str, size: int) -> None:
    """Patch the uncompressed size the zip declares for `member` (local header and
    central directory), leaving its compressed bytes alone."""
    data = bytearray(Path(path).read_bytes())
    name = member.encode()
    for signature, offset, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at: at + name_at + len(name)] == name:
                struct.pack_into("<I", data, at + offset, size)
            at = data.find(signature, at + 4)
    Path(path).write_bytes(bytes(data))


def _hostile(tmp: Path, label: str) -> str:
    """A copy of the valid artifact, made hostile in the way `label` names."""
    members = members_of(_ARTIFACT["path"])
    out = tmp / f"{label.replace(' ', '_')}.tsl"
    items = list(members.items())
    if label == "path traversal":
        return write_zip(out, items + [("../../escaped", b"x")])
    if label == "absolute member name":
        return write_zip(out, items + [("/etc/evil", b"x")])
    if label == "duplicate member":
        with pytest.warns(UserWarning):
            return write_zip(out, items + [("manifest.json", members["manifest.json"])])
    if label == "tampered object":
        obj = json.loads(members["manifest.json"])["files"]["object"]
        members[obj] = members[obj][:-1] + bytes([members[obj][-1] ^ 1])
        return write_zip(out, list(members.items()))
    if label == "manifest not JSON":
        members["manifest.json"] = b"{not json"
        return write_zip(out, list(members.items()))
    if label == "zip bomb by declared size":        # 3 x 4 GB declared: above the 8 GB cap
        bombs = [f"bomb{k}.bin" for k in range(3)]
        write_zip(out, items + [(b, b"\0" * 1000) for b in bombs])
        for b in bombs:
            declare_size(out, b, 0xFFFFFFF0)
        return str(out)
    if label == "manifest declared at 4 GB":
        write_zip(out, items)
        declare_size(out, "manifest.json", 0xFFFFFFF0)
        return str(out)
    if label == "member inflating past its declared size":
        write_zip(out, items)
        declare_size(out, json.loads(members["manifest.json"])["files"]["object"], 100)
        return str(out)
    if label == "truncated":
        data = Path(_ARTIFACT["path"]).read_bytes()
        out.write_bytes(data[: len(data) // 2])
        return str(out)
    if label == "not a zip":
        out.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 100)
        return str(out)
    raise ValueError(label)


HOSTILE = {
    "path traversal": (aot.ArtifactFormatError, r"unsafe member name '\.\./\.\./escaped'"),
    "absolute member name": (aot.ArtifactFormatError, r"unsafe member name '/etc/evil'"),
    "duplicate member": (aot.ArtifactFormatError, r"member 'manifest.json' appears twice"),
    "tampered object": (aot.ArtifactIntegrityError, r"member '.*' was modified or damaged: sha256"),
    "manifest not JSON": (aot.ArtifactFormatError, r"manifest"),
    "zip bomb by declared size": (aot.ArtifactLimitError, r"members declare \d+ bytes uncompressed, more than the cap"),
    "manifest declared at 4 GB": (aot.ArtifactLimitError, r"member 'manifest.json' declares 4294967280 bytes, more than"),
    "member inflating past its declared size": (aot.ArtifactIntegrityError, r"member '.*' (inflates past|is damaged)"),
    "truncated": (aot.ArtifactIntegrityError, r"truncated or damaged"),
    "not a zip": (aot.ArtifactFormatError, r"not a tessel artifact \(a .tsl file is a zip"),
}


def _refused_before_inflating(label):
    """aot.load refuses; for the declared-size bombs, before any member is inflated."""
    def run():
        import tempfile
        path = _hostile(Path(tempfile.mkdtemp(dir=_ARTIFACT["tmp"])), label)
        opened = []
        real_open = zipfile.ZipFile.open

        def counting_open(self, name, *args, **kwargs):
            opened.append(getattr(name, "filename", name))
            return real_open(self, name, *args, **kwargs)
        zipfile.ZipFile.open = counting_open
        real_loaded = llvm_target.LoadedObject
        llvm_target.LoadedObject = None        # calling it would fail the case: nothing may load
        try:
            aot.load(path)
        finally:
            zipfile.ZipFile.open = real_open
            llvm_target.LoadedObject = real_loaded
            if label in ("zip bomb by declared size", "manifest declared at 4 GB"):
                assert opened == [], f"inflated {opened} before refusing"
    return run


for _label, (_exc, _match) in HOSTILE.items():
    case("tessel.aot.load", _label, _exc, _match)(_refused_before_inflating(_label))

case("tessel.aot.load", "a directory", aot.ArtifactFormatError, r"cannot read the artifact")(lambda: aot.load("/"))
case("tessel.aot.load", "a missing file", aot.ArtifactFormatError, r"cannot read the artifact.*No such file")(
    lambda: aot.load("/nonexistent/model.tsl"))
case("tessel.aot.load", "not a path", TypeError, r"expected str, bytes or os.PathLike object, not int")(lambda: aot.load(3))


@case("tessel.aot.Artifact.__call__", "wrong shape, named", TypeError, r"x: expected f32\[3, 4\], given f32\[4, 3\]")
def _():
    aot.load(_ARTIFACT["path"])(np.ones((4, 3), F32), np.ones((4, 2), F32))


@case("tessel.aot.Artifact.__call__", "odd layouts and NaN compute")
def _():
    run = aot.load(_ARTIFACT["path"])
    x = np.asfortranarray(np.linspace(-1, 1, 12, dtype=F32).reshape(3, 4))
    x[0, 0] = np.nan
    y = np.arange(8, dtype=F32).reshape(2, 4).T          # transposed view
    close(run(x, y), np.exp(x) @ y + 1)


@case("tessel.aot.Artifact.__call__", "more memory than available is refused before allocating", MemoryError,
      r"needs 0.00 GiB for its outputs and scratch; this machine has 0.00 GiB available")
def _():
    run = aot.load(_ARTIFACT["path"])
    _with_available_memory(0, lambda: run(np.ones((3, 4), F32), np.ones((4, 2), F32)), guard_from=0)


case("tessel.aot.save", "not a compiled program", TypeError, r"aot.save takes a compiled program .* given int")(
    lambda: aot.save(3, "/tmp/never.tsl"))


@case("tessel.aot.save", "into a directory that does not exist", FileNotFoundError,
      r"cannot write .*/missing/m.tsl: the directory .*/missing does not exist")
def _():
    compiled = tessel.jit(twice_plus_one).lower(np.ones(2, F32)).compile()
    aot.save(compiled, os.path.join(_ARTIFACT["tmp"], "missing", "m.tsl"))


@case("tessel.aot.save", "an interpreter program", aot.ArtifactBackendError, r"native code is written for backend 'cpu', given 'interpreter'")
def _():
    compiled = tessel.jit(twice_plus_one, backend="interpreter").lower(np.ones(2, F32)).compile()
    aot.save(compiled, os.path.join(_ARTIFACT["tmp"], "interp.tsl"))


case("tessel.aot.export", "not a function", TypeError, r"jit expects a function, given int")(
    lambda: aot.export(3, ShapeDtype((2,), "f32"), path="/tmp/never.tsl"))
case("tessel.aot.export", "an unknown CPU", ValueError, r"unknown CPU 'nonsense' .* use one of \['x86-64'")(
    lambda: aot.export(twice_plus_one, ShapeDtype((2,), "f32"), path="/tmp/never.tsl", cpu="nonsense"))
case("tessel.aot.export", "an unknown target triple", ValueError,
     r"unknown target triple 'foo-bar-baz': tessel generates code for x86_64 and aarch64")(
    lambda: aot.export(twice_plus_one, ShapeDtype((2,), "f32"), path="/tmp/never.tsl", target="foo-bar-baz"))
case("tessel.aot.export", "a string for a shape", TypeError, r"argument x must be an array or a number, given str")(
    lambda: aot.export(twice_plus_one, "f32[2]", path="/tmp/never.tsl"))


# ----------------------------------------------------------------------------- the CLI (subprocesses)

TESSEL = Path(sys.executable).parent / "tessel"
CLI_CASES = []       # (subcommand, name, argv with {tmp} and {artifact}, exit code, stderr regex)


def cli_case(command: str, name: str, argv: list[str], code: int, match: str):
    CLI_CASES.append((command, name, argv, code, match))
    BATTERY.append(Case(f"cli {command}", name, lambda: None, None))   # checked by test_cli_battery


cli_case("version", "an extra argument", ["version", "extra"], 2, r"unrecognized arguments: extra")
cli_case("dump", "no such file", ["dump", "{tmp}/none.py:f", "--arg", "f32[2]"], 1, r"tessel dump: error: .*none.py: no such file")
cli_case("dump", "a malformed --arg", ["dump", "{tmp}/model.py:f", "--arg", "f32[2,x]"], 1,
         r"--arg 'f32\[2,x\]': expected DTYPE\[DIMS\]")
cli_case("dump", "an --arg beyond 2^62 bytes", ["dump", "{tmp}/model.py:f", "--arg", "f32[4611686018427387904,4]"], 1,
         r"would take .* bytes, more than")
cli_case("dump", "a function that recurses forever", ["dump", "{tmp}/model.py:recurse", "--arg", "f32[2]"], 1,
         r"tracing .*recurse failed: TraceError: .*recursion limit")
cli_case("dump", "a module that fails to import", ["dump", "{tmp}/broken.py:f", "--arg", "f32[2]"], 1,
         r"importing it failed: ZeroDivisionError")
cli_case("compile", "an output directory that does not exist", ["compile", "{tmp}/model.py:f", "--arg", "f32[2]", "-o",
                                                                  "{tmp}/no/dir/m.tsl"], 1, r"tessel compile: error: .*does not exist")
cli_case("compile", "an unknown dtype", ["compile", "{tmp}/model.py:f", "--arg", "c64[2]", "-o", "{tmp}/m.tsl"], 1,
         r"--arg 'c64\[2\]': .*unsupported dtype")
cli_case("run", "a zip bomb", ["run", "{bomb}", "--input", "{tmp}/x.npy"], 1,
         r"tessel run: error: ArtifactLimitError: .*more than the cap")
cli_case("run", "a pickled .npy input", ["run", "{artifact}", "--input", "{tmp}/pickled.npy", "--input", "{tmp}/x.npy"], 1,
         r"--input .*pickled.npy: cannot read it as .npy: .*pickle")
cli_case("run", "the wrong number of inputs", ["run", "{artifact}", "--input", "{tmp}/x.npy"], 1,
         r"takes 2 inputs \(x f32\[3, 4\], y f32\[4, 2\]\); given 1 --input")
cli_case("inspect", "path traversal", ["inspect", "{traversal}"], 1, r"tessel inspect: error: ArtifactFormatError: .*unsafe member name")
cli_case("sim", "an unknown opcode", ["sim", "{tmp}/bad.s"], 1, r"tessel sim: error: .*bad.s:2:1: unknown opcode 'FROB'")
cli_case("sim", "a bad --config", ["sim", "{tmp}/ok.s", "--config", "rows=" + "9" * 400], 1,
         r"tessel sim: error: --config: SystolicConfig.rows")


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, artifact):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "model.py").write_text("def f(x):\n    return x * 2\n\ndef recurse(x):\n    return recurse(x + 1)\n")
    (tmp / "broken.py").write_text("1 / 0\n")
    (tmp / "bad.s").write_text("HALT\nFROB x=1\n")
    (tmp / "ok.s").write_text("HALT\n")
    np.save(tmp / "x.npy", np.ones((3, 4), F32))
    np.save(tmp / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _ARTIFACT.update(path=artifact, tmp=str(tmp))
    return {"tmp": str(tmp), "artifact": artifact,
            "bomb": _hostile(tmp, "zip bomb by declared size"), "traversal": _hostile(tmp, "path traversal")}


# The first case of each subcommand runs as a real subprocess (the console script); the
# others call cli.main in this process, which is what the script runs (saves startups).
_AS_SUBPROCESS = {CLI_CASES.index(next(c for c in CLI_CASES if c[0] == command))
                  for command in dict.fromkeys(c[0] for c in CLI_CASES)}


@pytest.mark.parametrize("k", range(len(CLI_CASES)), ids=[f"{c}: {n}" for c, n, *_ in CLI_CASES])
def test_cli_battery(cli_files, k, capfd):
    command, name, argv, code, match = CLI_CASES[k]
    args = [a.format(**cli_files) for a in argv]
    if k in _AS_SUBPROCESS:
        result = subprocess.run([str(TESSEL), *args], capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        returncode, stderr = result.returncode, result.stderr
    else:
        returncode = cli.main(args)
        stderr = capfd.readouterr().err
    assert returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    assert len(stderr) < 4000, stderr          # one clear message, not a dump
    assert _search(match, stderr), stderr


# ----------------------------------------------------------------------------- running the battery

def _search(pattern: str, text: str) -> bool:
    import re
    return re.search(pattern, text, re.S) is not None


IN_PROCESS = [c for c in BATTERY if not c.isolated and not c.entry.startswith("cli ")]


@pytest.mark.parametrize("c", IN_PROCESS, ids=[c.id for c in IN_PROCESS])
def test_battery(c: Case, cli_files):
    if c.raises is None:
        c.run()
        return
    with pytest.raises(c.raises) as info:
        c.run()
    message = str(info.value)
    assert c.match is None or _search(c.match, message), f"message does not match {c.match!r}:\n{message}"
    assert len(message) < 6000, "the message should be a clear sentence, not a dump"


CHILD = r"""
import json, sys, traceback
import numpy as np
import tessel, tessel.numpy as tnp
cases = json.load(sys.stdin)
for name, code in cases:
    try:
        exec(compile(code, "<string>", "exec"), {"np": np, "tessel": tessel, "tnp": tnp})
        result = {"name": name, "raised": None}
    except BaseException as e:     # noqa: BLE001 - reported to the parent
        result = {"name": name, "raised": [k.__name__ for k in type(e).__mro__], "message": str(e)[:3000]}
    print(json.dumps(result), flush=True)
print(json.dumps({"name": "<done>"}), flush=True)
"""

ISOLATED = [c for c in BATTERY if c.isolated]


@pytest.fixture(scope="module")
def child_results():
    """Run every isolated case in one child process; it must survive them all."""
    child = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps([(c.id, c.run) for c in ISOLATED]),
                           capture_output=True, text=True, timeout=600, env=os.environ.copy())
    lines = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    assert child.returncode == 0 and lines and lines[-1]["name"] == "<done>", \
        f"the child process did not survive the battery (exit {child.returncode}):\n{child.stderr[-3000:]}"
    return {line["name"]: line for line in lines}


@pytest.mark.parametrize("c", ISOLATED, ids=[c.id for c in ISOLATED])
def test_battery_isolated(c: Case, child_results):
    result = child_results[c.id]
    if c.raises is None:
        assert result["raised"] is None, result
        return
    assert result["raised"] and c.raises in result["raised"], result
    assert c.match is None or _search(c.match, result["message"]), result["message"]


# ----------------------------------------------------------------------------- completeness

def public_entry_points() -> set[str]:
    """Every public entry point that takes user input."""
    from tessel.cli import build_parser
    names = {f"tessel.{n}" for n in tessel.__all__
             if callable(getattr(tessel, n)) and not inspect.ismodule(getattr(tessel, n))}
    names |= {"Jitted.__call__", "Jitted.lower", "Lowered.compile", "Compiled.__call__"}
    names |= {f"tessel.aot.{n}" for n, v in vars(aot).items() if n in aot.__all__ and inspect.isfunction(v)}
    names.add("tessel.aot.Artifact.__call__")
    names |= {f"tessel.distributed.{n}" for n in dist.__all__ if inspect.isfunction(getattr(dist, n))}
    names |= {f"tessel.optim.{n}" for n in tessel.optim.__all__ if inspect.isfunction(getattr(tessel.optim, n))}
    for ns, module in NAMESPACES.items():
        names |= {f"{ns}.{n}" for n in _public_functions(module)}
    subparsers = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    names |= {f"cli {n}" for n in subparsers.choices}
    names.add("tessel.compiler.parser.parse_module")
    names |= {f"tessel.runtime.systolic.asm.{n}" for n in ("assemble", "from_binary", "to_binary", "disassemble_binary")}
    names |= {"SystolicConfig", "SystolicConfig.from_overrides"}
    return names


def test_every_public_entry_point_has_a_battery_case():
    covered = {c.entry for c in BATTERY}
    missing = sorted(public_entry_points() - covered)
    assert not missing, f"public entry points without a bad-input case in tests/test_bad_inputs.py: {missing}"
    # and the list is real: the main entry points are in it
    assert {"tessel.jit", "tessel.aot.load", "cli run", "tessel.numpy.matmul", "tessel.optim.adam"} <= public_entry_points()


# ----------------------------------------------------------------------------- the compile cache survived

CACHE_PROBE = r"""
import numpy as np, tessel
f = tessel.jit(lambda x: x * 2 + 1)
print(f(np.arange(3, dtype=np.float32)).tolist())
"""


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """The whole battery runs against a fresh compile cache directory."""
    where = tmp_path_factory.mktemp("cache")
    saved = {k: os.environ.get(k) for k in ("TESSEL_CACHE_DIR", "TESSEL_LOG_COMPILES")}
    os.environ["TESSEL_CACHE_DIR"] = str(where)
    os.environ.pop("TESSEL_LOG_COMPILES", None)
    probe = subprocess.run([sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    yield where
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_compile_cache_intact_after_the_battery(private_cache, child_results):
    entries = sorted(os.listdir(private_cache))
    assert entries, "the battery compiled nothing into the cache"
    leftovers = [e for e in entries if not (e.endswith(".tsl") and len(e) == 64 + 4)]
    assert not leftovers, f"partial or foreign files in the cache: {leftovers}"
    cache = compile_cache.DiskCache(private_cache)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # a discarded (corrupt) entry would warn
        for e in entries:
            assert cache.get(e[:-4]) is not None
    env = {**os.environ, "TESSEL_CACHE_DIR": str(private_cache), "TESSEL_LOG_COMPILES": "1"}
    again = subprocess.run([sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == [1.0, 3.0, 5.0]
    assert "disk cache hit" in again.stderr, again.stderr


def test_collectives_record_the_users_line():
    """Issue 8 leftover: frames of tessel.distributed are tessel's own, so an all_reduce
    traced through it carries the user's file:line, not distributed/api.py."""
    lowered = tessel.jit(lambda x: dist.all_reduce(x, op="sum")).lower(np.ones(2, F32))
    (reduce,) = [i for i in lowered.module.entry.instructions if i.opcode == "all_reduce"]
    assert reduce.loc_text.startswith("tests/test_bad_inputs.py:") or HERE in reduce.loc_text, reduce.loc_text
    assert "distributed" not in reduce.loc_text

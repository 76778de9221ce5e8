"""CPU codegen: rng_bit_generator (Philox bit-exact with the interpreter, counter carry
and wrap-around, tails), all_reduce (single process: a copy), send/recv in one module,
and custom_call (registered emitters; a clear error otherwise)."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends.cpu import kernels_elementwise, kernels_misc
from tessel.backends.interpreter.testing import one_op_module
from tessel.compiler.ir import Builder, Module, Shape, TupleShape
from tessel.runtime import backends

from cpu_checks import assert_matches_interpreter, run_cpu

F32_3 = Shape("f32", (3,))


@pytest.mark.parametrize("shape", [(2, 3), (4,), (), (0,), (3, 5), (1000, 37)])
@pytest.mark.parametrize("state", [(0x12345678, 0x9ABCDEF0, 41, 0), (1, 2, 0xFFFFFFFF, 0),
                                   (1, 2, 0xFFFFFFFF, 0xFFFFFFFF), (7, 8, 0xFFFFFFFE, 3)])
def test_rng_bit_generator(shape, state):
    module = one_op_module("rng_bit_generator", [Shape("u32", (4,))],
                           shape=TupleShape([Shape("u32", (4,)), Shape("u32", shape)]))
    assert_matches_interpreter(module, [np.array(state, np.uint32)])


@pytest.mark.parametrize("reduction", ["sum", "mean", "max", "min"])
def test_all_reduce_is_a_copy(reduction):
    assert_matches_interpreter(one_op_module("all_reduce", [Shape("s32", (2, 3))], {"reduction": reduction}),
                               [np.arange(6, dtype=np.int32).reshape(2, 3)])


def send_recv_module(sends=1):
    m = Module("transfer")
    b = Builder(m, "main")
    x = b.parameter(F32_3, "x")
    where = {"channel_id": 5, "device": "systolic:0"}
    tokens = [b.emit("send", [b.emit("multiply", [x, x]) if k else x], where) for k in range(sends)]
    got = [b.emit("recv", tokens[:1] if tokens else [], where, shape=F32_3) for _ in range(max(sends, 1))]
    b.build(b.emit("tuple", got) if len(got) > 1 else got[0], entry=True)
    return m


def test_send_then_recv():
    assert_matches_interpreter(send_recv_module(), [np.array([1.0, 2.0, 3.0], np.float32)])


def test_channels_are_first_in_first_out():
    assert_matches_interpreter(send_recv_module(sends=2), [np.array([1.0, 2.0, 3.0], np.float32)])


def test_recv_without_send_is_a_compile_error():
    with pytest.raises(NotImplementedError, match="channel 5 has no send"):
        run_cpu(send_recv_module(sends=0), [np.zeros(3, np.float32)])


def custom_call_module(name):
    return one_op_module("custom_call", [F32_3], {"call_target_name": name, "backend_config": ""}, shape=F32_3)


def test_unregistered_custom_call_names_the_target():
    with pytest.raises(NotImplementedError, match="custom_call target 'my_kernel'.*not registered"):
        run_cpu(custom_call_module("my_kernel"), [np.ones(3, np.float32)])


def test_registered_custom_call_runs(monkeypatch):
    def double(kc, instr, outputs, operands):
        fn, b = kc.function("double", [kernels_elementwise.PTR, kernels_elementwise.PTR])
        src, dst = fn.args
        for k in range(instr.shape.size):
            from tessel.backends.cpu import loops as L
            v = L.load(b, L.gep(b, src, kernels_elementwise.FLOAT, k), kernels_elementwise.FLOAT)
            L.store(b, b.fadd(v, v), L.gep(b, dst, kernels_elementwise.FLOAT, k))
        b.ret_void()
        kc.entry.call(fn, [operands[0], outputs[0]])
    monkeypatch.setitem(kernels_misc.CUSTOM_CALLS, "double", double)
    (got,) = run_cpu(custom_call_module("double"), [np.array([1.0, 2.5, -3.0], np.float32)])
    np.testing.assert_array_equal(got, [2.0, 5.0, -6.0])

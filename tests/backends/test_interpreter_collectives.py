"""all_gather and collective_broadcast in one process, and through a plugged-in world."""
import numpy as np
import pytest

from tessel.backends.interpreter import Context, InterpreterError
from tessel.backends.interpreter.testing import run_op
from tessel.compiler import ops
from tessel.compiler.ir import Builder, Module, Shape


def test_all_gather_of_one_process_adds_a_leading_axis():
    x = np.array([[1.5, -2.0]], np.float32)
    got = run_op("all_gather", x, attrs={"participants": 1})
    np.testing.assert_array_equal(got, x[None])


def test_all_gather_traced_for_more_processes_than_there_are_is_an_error():
    with pytest.raises(InterpreterError, match="traced for 2 processes"):
        run_op("all_gather", np.zeros(3, np.float32), attrs={"participants": 2})


def test_collective_broadcast_of_one_process_is_the_identity():
    x = np.arange(4, dtype=np.int32)
    np.testing.assert_array_equal(run_op("collective_broadcast", x, attrs={"root": 0}), x)


def test_collective_broadcast_from_a_rank_that_does_not_exist_is_an_error():
    with pytest.raises(InterpreterError, match="root 1"):
        run_op("collective_broadcast", np.zeros(2, np.float32), attrs={"root": 1})


def test_collectives_use_the_plugged_in_world():
    class TwoProcesses:           # as if the other process held x + 10
        def all_gather(self, value, participants):
            return np.stack([value, value + 10])

        def broadcast(self, value, root):
            return value + 10 * root

    ctx = Context(collectives=TwoProcesses())
    x = np.array([1, 2], np.int32)
    np.testing.assert_array_equal(run_op("all_gather", x, attrs={"participants": 2}, ctx=ctx), [[1, 2], [11, 12]])
    np.testing.assert_array_equal(run_op("collective_broadcast", x, attrs={"root": 1}, ctx=ctx), [11, 12])


def test_shape_rules():
    m = Module("m")
    b = Builder(m, "main")
    x = b.parameter(Shape("f32", (2, 3)))
    assert b.emit("all_gather", [x], {"participants": 4}).shape == Shape("f32", (4, 2, 3))
    assert b.emit("collective_broadcast", [x], {"root": 1}).shape == Shape("f32", (2, 3))
    with pytest.raises(ops.ShapeError, match="participants >= 1"):
        b.emit("all_gather", [x], {"participants": 0})

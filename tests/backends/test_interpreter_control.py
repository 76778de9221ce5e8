"""Interpreter: control flow, tuples, rng, communication, custom calls, and the API."""
import numpy as np
import pytest

from tessel.backends import interpreter
from tessel.backends.interpreter import Context, IMPL, InterpreterError, evaluate, philox
from tessel.backends.interpreter.testing import one_op_module, run_op, scalar_computation
from tessel.compiler import ops
from tessel.compiler.ir import Builder, Module, Shape, SourceLoc, TupleShape

S32 = Shape("s32", ())
F32_3 = Shape("f32", (3,))


def exact(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)


def test_every_op_has_an_interpreter_rule():
    assert set(IMPL) == set(ops.OPS), (set(ops.OPS) - set(IMPL), set(IMPL) - set(ops.OPS))


# ----------------------------------------------------------------------------- while, conditional, call, fusion

def sum_below_module(limit):
    """while i < limit: (i, acc) = (i + 1, acc + i) -- returns (limit, sum(range(limit)))."""
    m = Module("loop")
    state = TupleShape([S32, S32])
    cb = Builder(m, "cond")
    s = cb.parameter(state, "s")
    cond = cb.build(cb.emit("compare", [cb.emit("get_tuple_element", [s], {"index": 0}), cb.constant(np.int32(limit))],
                            {"direction": "LT"}))
    bb = Builder(m, "body")
    s = bb.parameter(state, "s")
    i, acc = (bb.emit("get_tuple_element", [s], {"index": k}) for k in (0, 1))
    body = bb.build(bb.emit("tuple", [bb.emit("add", [i, bb.constant(np.int32(1))]), bb.emit("add", [acc, i])]))
    b = Builder(m, "main")
    init = b.emit("tuple", [b.constant(np.int32(0)), b.constant(np.int32(0))])
    b.build(b.emit("while", [init], {"condition": cond, "body": body}), entry=True)
    return m


@pytest.mark.parametrize("limit", [0, 1, 10])
def test_while(limit):
    i, acc = evaluate(sum_below_module(limit), [])
    exact(i, np.int32(max(limit, 0)))
    exact(acc, np.int32(sum(range(limit))))


def branch(m, name, opcode, shape):
    b = Builder(m, name)
    x = b.parameter(shape, "x")
    return b.build(b.emit(opcode, [x]))


def conditional_module(index_shape, opcodes):
    m = Module("cond")
    branches = tuple(branch(m, f"branch_{k}", op, F32_3) for k, op in enumerate(opcodes))
    b = Builder(m, "main")
    index, x = b.parameter(index_shape, "index"), b.parameter(F32_3, "x")
    b.build(b.emit("conditional", [index] + [x] * len(branches), {"branch_computations": branches}), entry=True)
    return m


def test_conditional_with_pred_index():
    m = conditional_module(Shape("pred", ()), ["negate", "exp"])
    x = np.array([0.0, 1.0, -2.0], np.float32)
    exact(evaluate(m, [np.array(False), x]), -x)          # false -> branch 0
    exact(evaluate(m, [np.array(True), x]), np.exp(x.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("index,which", [(0, 0), (1, 1), (2, 2), (3, 2), (-1, 2), (2 ** 31 - 1, 2)])
def test_conditional_with_s32_index_out_of_range_takes_the_last_branch(index, which):
    m = conditional_module(S32, ["negate", "abs", "floor"])
    x = np.array([0.5, -1.5, 2.25], np.float32)
    exact(evaluate(m, [np.array(index, np.int32), x]), [-x, np.abs(x), np.floor(x)][which])


@pytest.mark.parametrize("opcode,extra", [("call", {}), ("fusion", {"kind": "loop"})])
def test_call_and_fusion_evaluate_the_called_computation(opcode, extra):
    m = Module(opcode)
    callee = scalar_computation(m, "multiply", "f32", name="mul")
    b = Builder(m, "main")
    x, y = b.parameter(Shape("f32", ()), "x"), b.parameter(Shape("f32", ()), "y")
    attr = "to_apply" if opcode == "call" else "calls"
    b.build(b.emit(opcode, [x, y], {attr: callee, **extra}), entry=True)
    exact(evaluate(m, [np.float32(3) * np.ones((), np.float32), np.array(4, np.float32)]), np.array(12, np.float32))


def test_tuple_and_get_tuple_element_nest():
    m = Module("tuples")
    b = Builder(m, "main")
    x, y = b.parameter(F32_3, "x"), b.parameter(S32, "y")
    inner = b.emit("tuple", [x, y])
    outer = b.emit("tuple", [inner, b.emit("tuple", [])])
    picked = b.emit("get_tuple_element", [b.emit("get_tuple_element", [outer], {"index": 0})], {"index": 1})
    b.build(b.emit("tuple", [outer, picked]), entry=True)
    xv, yv = np.arange(3, dtype=np.float32), np.array(7, np.int32)
    ((gx, gy), empty), gy2 = evaluate(m, [xv, yv])
    exact(gx, xv), exact(gy, yv), exact(gy2, yv)
    assert empty == ()


def test_tuple_parameters():
    m = Module("tuple_param")
    b = Builder(m, "main")
    p = b.parameter(TupleShape([F32_3, S32]), "p")
    b.build(b.emit("get_tuple_element", [p], {"index": 0}), entry=True)
    exact(evaluate(m, [(np.ones(3, np.float32), np.array(1, np.int32))]), np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"parameter 0 \(p\): expected a tuple"):
        evaluate(m, [np.ones(3, np.float32)])


# ----------------------------------------------------------------------------- rng_bit_generator

KNOWN_ANSWERS = [  # Random123 kat_vectors, philox4x32 10: counter, key -> output
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,want", KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, want):
    got = philox.philox4x32(np.array([counter], np.uint32), np.array(key, np.uint32))
    exact(got[0], np.array(want, np.uint32))


def philox_scalar(counter, key):
    """Philox4x32-10 one block at a time in plain Python integers (a second, independent
    transcription of the algorithm)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    mask = 0xFFFFFFFF
    for r in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & mask, (p0 >> 32) ^ c3 ^ k1, p0 & mask
        k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
    return c0, c1, c2, c3


def generate(state, shape):
    return run_op("rng_bit_generator", np.array(state, np.uint32),
                  shape=TupleShape([Shape("u32", (4,)), Shape("u32", shape)]))


@pytest.mark.parametrize("shape", [(2, 3), (4,), (), (0,), (3, 5)])
def test_rng_bit_generator_uses_consecutive_counters(shape):
    key, counter = (0x12345678, 0x9ABCDEF0), 41
    new_state, bits = generate(key + (counter, 0), shape)
    size = int(np.prod(shape))
    blocks = -(-size // 4)
    words = [w for i in range(blocks) for w in philox_scalar((counter + i, 0, 0, 0), key)]
    exact(bits, np.array(words[:size], np.uint32).reshape(shape))
    exact(new_state, np.array(key + (counter + blocks, 0), np.uint32))


def test_rng_bit_generator_counter_carries_and_wraps():
    key = (1, 2)
    state, bits = generate(key + (0xFFFFFFFF, 0), (8,))           # carry into counter_hi
    expect = philox_scalar((0xFFFFFFFF, 0, 0, 0), key) + philox_scalar((0, 1, 0, 0), key)
    exact(bits, np.array(expect, np.uint32))
    exact(state, np.array([1, 2, 1, 1], np.uint32))
    state, bits = generate(key + (0xFFFFFFFF, 0xFFFFFFFF), (8,))  # 64-bit counter wraps to 0
    expect = philox_scalar((0xFFFFFFFF, 0xFFFFFFFF, 0, 0), key) + philox_scalar((0, 0, 0, 0), key)
    exact(bits, np.array(expect, np.uint32))
    exact(state, np.array([1, 2, 1, 0], np.uint32))


def test_rng_bit_generator_state_threads_through_calls():
    s1, a = generate((7, 8, 0, 0), (6,))
    s2, b = generate(tuple(int(v) for v in s1), (6,))
    _, both = generate((7, 8, 0, 0), (16,))
    exact(a, both[:6])
    exact(b, both[8:14])     # the first call used two whole blocks (8 words)


# ----------------------------------------------------------------------------- all_reduce, send/recv, custom_call

@pytest.mark.parametrize("reduction", ops.ALL_REDUCE_OPS)
def test_all_reduce_is_the_identity_in_one_process(reduction):
    x = np.array([[1.5, -2.0]], np.float32)
    exact(run_op("all_reduce", x, attrs={"reduction": reduction}), x)


def test_all_reduce_uses_the_plugged_in_collectives():
    class TimesTwoWorld:          # as if two processes held the same value
        def __init__(self):
            self.calls = []

        def all_reduce(self, value, reduction):
            self.calls.append(reduction)
            return value * 2 if reduction == "sum" else value

    world = TimesTwoWorld()
    got = run_op("all_reduce", np.array([1, 2], np.int32), attrs={"reduction": "sum"}, ctx=Context(collectives=world))
    exact(got, np.array([2, 4], np.int32))
    assert world.calls == ["sum"]


def send_recv_module(send_first=True):
    m = Module("transfer")
    b = Builder(m, "main")
    x = b.parameter(F32_3, "x")
    where = {"channel_id": 5, "device": "systolic:0"}
    if send_first:
        token = b.emit("send", [x], where)
        got = b.emit("recv", [token], where, shape=F32_3)
    else:
        got = b.emit("recv", [], where, shape=F32_3)
    b.build(got, entry=True)
    return m


def test_send_then_recv_transfers_the_value():
    x = np.array([1.0, 2.0, 3.0], np.float32)
    exact(evaluate(send_recv_module(), [x]), x)


def test_recv_without_send_is_an_error():
    with pytest.raises(InterpreterError, match="channel 5 .*found no value"):
        evaluate(send_recv_module(send_first=False), [np.zeros(3, np.float32)])


def test_recv_reads_a_value_left_in_the_context_by_another_program():
    ctx = Context()
    x = np.array([4.0, 5.0, 6.0], np.float32)
    run_op("send", x, attrs={"channel_id": 5, "device": "cpu"}, ctx=ctx)
    exact(evaluate(send_recv_module(send_first=False), [np.zeros(3, np.float32)], ctx), x)
    assert not ctx.channels[5]


def custom_call_module(name, shape=F32_3):
    return one_op_module("custom_call", [F32_3], {"call_target_name": name, "backend_config": "k=2"}, shape=shape)


def test_custom_call_runs_the_registered_target():
    seen = []

    def scale(instr, x):
        seen.append(instr.attrs["backend_config"])
        return x * 2
    got = evaluate(custom_call_module("scale"), [np.ones(3, np.float32)], Context(custom_calls={"scale": scale}))
    exact(got, np.full(3, 2.0, np.float32))
    assert seen == ["k=2"]


def test_unknown_custom_call_names_the_target():
    with pytest.raises(NotImplementedError, match="'my_kernel'"):
        evaluate(custom_call_module("my_kernel"), [np.ones(3, np.float32)])


def test_a_rule_producing_the_wrong_shape_is_reported():
    ctx = Context(custom_calls={"bad": lambda instr, x: x[:2]})
    with pytest.raises(InterpreterError, match=r"produced shape \(2,\).*declares f32\[3\]"):
        evaluate(custom_call_module("bad"), [np.ones(3, np.float32)], ctx)


# ----------------------------------------------------------------------------- evaluate's argument checks

def add_module():
    return one_op_module("add", [Shape("f32", (2, 3)), Shape("f32", (2, 3))])


@pytest.mark.parametrize("args,message", [
    ([np.ones((2, 3), np.float32)], r"takes 2 arguments \(f32\[2,3\], f32\[2,3\]\), given 1"),
    ([np.ones((2, 3), np.float32)] * 3, r"given 3"),
    ([np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)], r"parameter 1 \(x1\): expected f32\[2,3\].*given float32\[3, 2\]"),
    ([np.ones((2, 3), np.float64), np.ones((2, 3), np.float32)], r"parameter 0 \(x0\): expected f32\[2,3\].*given float64\[2, 3\]"),
    ([[[1.0] * 3] * 2, np.ones((2, 3), np.float32)], r"parameter 0 \(x0\): expected an ndarray f32\[2,3\], given a list"),
])
def test_evaluate_checks_arguments(args, message):
    with pytest.raises(TypeError, match=message):
        evaluate(add_module(), args)


def test_python_scalars_must_fit_the_parameter():
    m = one_op_module("add", [Shape("s8", ()), Shape("s8", ())])
    exact(evaluate(m, [100, 27]), np.array(127, np.int8))
    with pytest.raises(TypeError, match=r"parameter 1 \(x1\): expected s8\[\], given the Python scalar 300"):
        evaluate(m, [1, 300])
    with pytest.raises(TypeError, match="Python scalar 1.5"):
        evaluate(m, [1.5, 1])


def test_bf16_arguments_are_float32_arrays_rounded_to_bf16():
    m = one_op_module("add", [Shape("bf16", (2,)), Shape("bf16", (2,))])
    x = np.array([1.00390625, 2.0], np.float32)               # 1 + 2^-8: a tie, rounds to 1
    exact(evaluate(m, [x, np.zeros(2, np.float32)]), np.array([1.0, 2.0], np.float32))
    with pytest.raises(TypeError, match=r"expected bf16\[2\] \(float32\[2\]\)"):
        evaluate(m, [x.astype(np.float64), x])


def test_errors_inside_rules_name_the_instruction_and_source_line():
    m = Module("located")
    b = Builder(m, "main")
    b.loc = (SourceLoc("model.py", 12),)
    x = b.parameter(F32_3, "x")
    b.build(b.emit("custom_call", [x], {"call_target_name": "missing"}, shape=F32_3), entry=True)
    with pytest.raises(NotImplementedError) as info:
        evaluate(m, [np.ones(3, np.float32)])
    assert any("custom_call" in note and "model.py:12" in note for note in info.value.__notes__)


def test_module_without_entry():
    with pytest.raises(ValueError, match="no entry"):
        evaluate(Module("empty"), [])


def test_results_are_independent_writable_arrays():
    m = Module("const")
    b = Builder(m, "main")
    c = b.constant(np.arange(3, dtype=np.int32))
    b.build(b.emit("tuple", [c, c]), entry=True)
    first, second = evaluate(m, [])
    first[0] = 100
    exact(second, np.arange(3, dtype=np.int32))
    exact(evaluate(m, [])[0], np.arange(3, dtype=np.int32))


def test_evaluate_computation_runs_any_computation():
    m = Module("m")
    comp = scalar_computation(m, "subtract", "s32")
    got = interpreter.evaluate_computation(comp, [np.array(5, np.int32), np.array(7, np.int32)], Context())
    exact(got, np.array(-2, np.int32))


def test_a_module_that_does_not_verify_gives_a_clear_error():
    m = one_op_module("negate", [F32_3])
    stray = one_op_module("abs", [F32_3]).entry.parameters[0]
    m.entry.root.operands = [stray]                 # an operand from another module
    with pytest.raises(InterpreterError, match="uses x0, which computation main does not compute before it"):
        evaluate(m, [np.ones(3, np.float32)])


def test_every_op_is_exercised_by_the_interpreter_tests():
    import pathlib
    sources = "".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_interpreter_*.py"))
    built_by_builder = {"parameter", "constant"}    # Builder.parameter / Builder.constant
    missing = [op for op in ops.OPS if f'"{op}"' not in sources and op not in built_by_builder]
    assert not missing, f"ops without interpreter tests: {missing}"

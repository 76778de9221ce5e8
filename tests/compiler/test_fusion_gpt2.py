"""Acceptance (issue 3): a GPT-2-style transformer block, traced from plain NumPy and run
through the whole optimization pipeline, becomes a short list of fused kernels that
computes what the traced module computes.

A kernel is a fusion or an unfused instruction that does work: everything but
parameters, constants, tuples and get_tuple_element. For one block with H heads:

    layer norm 1      1   row sums of x, variance and normalize: two reduction levels in
                          one input fusion (a pass over each row per level, then normalize)
    qkv projection    1   GEMM + bias                                          (output fusion)
    per head          4   scores: GEMM reading q and k through slices, scale 1/sqrt(d),
                          causal mask add                                      (output fusion)
                          softmax: row max, exp(s - max) and its row sum, the division
                                                                (one input fusion, two levels)
                          probabilities @ v, v read through a slice            (output fusion)
    head concatenation 1  concatenate (a copy)
    out projection    1   GEMM + bias + residual add                           (output fusion)
    layer norm 2      1   as layer norm 1
    MLP up            1   GEMM + bias + gelu (tanh form)                       (output fusion)
    MLP down          1   GEMM + bias + residual add                           (output fusion)
                     --
                      7 + 3 H  =  13 kernels for H = 2

As traced, the float64 block has 119 such instructions; simplification alone (the
pipeline with the fusion passes disabled) leaves 95.
"""
from __future__ import annotations

import os
import re
import sys
from collections import Counter

import numpy as np
import pytest

import tessel
from tessel.backends.interpreter import evaluate
from tessel.compiler.parser import parse_module
from tessel.compiler.pipeline import optimize
from tessel.compiler.printer import print_module
from tessel.compiler.structural import assert_structurally_equal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "models"))
import numpy_models as nm  # noqa: E402  (plain NumPy models live in tests/models)

SEQ, HEADS = 8, 2
TRIVIAL = frozenset({"parameter", "constant", "tuple", "get_tuple_element"})
KERNELS = 7 + 3 * HEADS          # the table above
assert KERNELS == 13


def trace_block(dtype):
    block = nm.gpt2_params(np.random.default_rng(0), layers=1, dtype=dtype)["blocks"][0]
    x = np.random.default_rng(1).standard_normal((SEQ, block["ln1"]["gamma"].shape[0])).astype(dtype)
    lowered = tessel.jit(nm.transformer_block, static_argnums=(2,)).lower(x, block, HEADS)
    args = [x] + [block[layer][name] for layer in sorted(block) for name in sorted(block[layer])]
    return lowered.module, args


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["f64", "f32"])
def block(request):
    traced, args = trace_block(request.param)
    optimized, _ = optimize(traced)
    return traced, optimized, args


def kernels(module) -> list:
    return [i for i in module.entry.instructions if i.opcode not in TRIVIAL]


def kind(instr) -> str:
    return f"fusion:{instr.attrs['kind']}" if instr.opcode == "fusion" else instr.opcode


def inner_ops(instr) -> Counter:
    """Opcodes inside a fusion (nothing for any other instruction)."""
    return Counter(i.opcode for i in instr.attrs["calls"].instructions) if instr.opcode == "fusion" else Counter()


def root_is(fusion, opcode: str) -> bool:
    return fusion.attrs["calls"].root.opcode == opcode


def test_the_block_compiles_to_13_kernels(block):
    traced, optimized, _ = block
    assert len(kernels(optimized)) == KERNELS
    assert Counter(kind(k) for k in kernels(optimized)) == {
        "fusion:output": 4 + 2 * HEADS,     # every GEMM, with its epilogue
        "fusion:input": 2 + HEADS,          # one per layer norm and per softmax
        "concatenate": 1,                   # the heads side by side
    }
    assert len(kernels(traced)) > 6 * KERNELS


def test_one_output_fusion_per_matmul_and_its_epilogue(block):
    _, optimized, _ = block
    gemms = [k for k in kernels(optimized) if kind(k) == "fusion:output"]
    assert sum(inner_ops(k)["dot_general"] for k in kernels(optimized)) == len(gemms) == 4 + 2 * HEADS
    assert all(inner_ops(g)["dot_general"] == 1 for g in gemms)
    # every product but probabilities @ v (followed by the concatenation) ends in an epilogue
    assert len([g for g in gemms if not root_is(g, "dot_general")]) == 4 + HEADS
    (gelu,) = [g for g in gemms if inner_ops(g)["tanh"]]
    assert root_is(gelu, "multiply")


def test_one_kernel_per_layer_norm_and_per_softmax(block):
    _, optimized, _ = block
    reducing = [k for k in kernels(optimized) if k.opcode == "reduce" or inner_ops(k)["reduce"]]
    assert len(reducing) == 2 + HEADS
    inputs = [k for k in kernels(optimized) if kind(k) == "fusion:input"]
    assert all(inner_ops(f)["reduce"] == 2 for f in inputs)          # two levels: max / mean, then sum / var
    softmaxes = [f for f in inputs if inner_ops(f)["exp"]]
    layer_norms = [f for f in inputs if inner_ops(f)["sqrt"]]
    assert len(softmaxes) == HEADS and len(layer_norms) == 2
    assert all(root_is(f, "divide") for f in softmaxes)              # normalized in the same kernel
    assert all(root_is(f, "add") for f in layer_norms)               # ... + beta


def test_the_optimized_block_computes_what_the_traced_one_does(block):
    traced, optimized, args = block
    want, got = evaluate(traced, args), evaluate(optimized, args)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)


def test_the_optimized_block_round_trips_through_text(block):
    _, optimized, _ = block
    assert_structurally_equal(parse_module(print_module(optimized, full_constants=True)), optimized)


def test_fused_kernels_name_the_model_lines_they_came_from(block):
    _, optimized, _ = block
    lines = [line for line in print_module(optimized).split("ENTRY")[1].splitlines() if " fusion(" in line]
    assert len(lines) == (4 + 2 * HEADS) + (2 + HEADS)
    assert all(re.search(r"# .*numpy_models\.py:\d+", line) for line in lines)
    gelu, dense = (f"numpy_models.py:{_line_after(prefix)}" for prefix in ("def gelu", "def dense"))
    assert any(gelu in line and dense in line for line in lines)    # MLP up: the GEMM and the gelu


def _line_after(prefix: str) -> int:
    """The line number of the body of the model function starting with `prefix`."""
    with open(nm.__file__) as f:
        return 1 + next(n for n, line in enumerate(f, 1) if line.startswith(prefix))

"""Host-memory layout directives and the encoding of inputs/outputs (`hostio`)."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.runtime.systolic import asm, functional, hostio
from tessel.runtime.systolic.config import SystolicConfig

TEXT = """\
#! config rows=8 cols=8 ub_bytes=1024 acc_bytes=1024 host_bytes=256
#! input  a bf16[2,3] at 0x10
#! input  q i8[5] at 40
#! output b f32[2,3] at 64
DMA_LOAD host=16 ub=0 rows=2 cols=3 stride=6 fmt=bf16
DMA_LOAD host=40 ub=2 rows=1 cols=5 stride=5 fmt=i8
DMA_STORE host=64 ub=0 rows=2 cols=3 stride=12 fmt=f32
DMA_STORE host=128 ub=2 rows=1 cols=5 stride=20 fmt=f32
HALT
"""


def test_directives_parse_into_regions_and_config():
    layout = hostio.parse_layout(TEXT)
    assert layout.config == ("rows=8", "cols=8", "ub_bytes=1024", "acc_bytes=1024", "host_bytes=256")
    assert layout.inputs == (hostio.Region("a", "bf16", (2, 3), 16), hostio.Region("q", "i8", (5,), 40))
    assert [str(r) for r in layout.outputs] == ["b f32[2, 3] at 64"]
    assert hostio.Region.from_json(layout.inputs[0].to_json()) == layout.inputs[0]
    assert len(asm.assemble(TEXT)) == 5          # the directives are comments to the assembler


@pytest.mark.parametrize("mode", ["nearest_even", "truncate"])
def test_inputs_encode_like_dma_store_and_outputs_decode(mode):
    config = SystolicConfig.from_overrides(hostio.parse_layout(TEXT).config, bf16_rounding=mode)
    layout = hostio.parse_layout(TEXT)
    a = np.array([[1.00390625, -3.0078125, 1e-3], [7.0, 0.1, -0.0]], np.float32)
    q = np.array([-128, -1, 0, 5, 127], np.int64)
    memory = np.zeros(config.host_bytes, np.uint8)
    hostio.write_inputs(memory, layout.inputs, [a, q], config)
    functional.run(asm.assemble(TEXT), config, memory)
    (b,) = hostio.read_outputs(memory, layout.outputs).values()
    np.testing.assert_array_equal(b, functional.round_bf16(a, mode))
    np.testing.assert_array_equal(memory[128:148].view(np.float32), q.astype(np.float32))


def test_bad_inputs_are_refused_naming_the_region():
    layout = hostio.parse_layout(TEXT)
    config = SystolicConfig(rows=8, cols=8, ub_bytes=1024, acc_bytes=1024, host_bytes=256)
    memory = np.zeros(256, np.uint8)
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(hostio.LayoutError, match=r"input q: values outside the i8 range \[-128, 127\]"):
        hostio.write_inputs(memory, layout.inputs, [a, np.array([0, 0, 0, 0, 300])], config)
    with pytest.raises(hostio.LayoutError, match="input q: i8 region needs an integer array"):
        hostio.write_inputs(memory, layout.inputs, [a, np.zeros(5, np.float32)], config)
    with pytest.raises(hostio.LayoutError, match="region name 'a' declared twice"):
        hostio.parse_layout("#! input a f32[1] at 0\n#! output a f32[1] at 4\n")
    with pytest.raises(hostio.LayoutError, match="1:1: a: host format 'f16'"):
        hostio.parse_layout("#! input a f16[1] at 0\n")

"""SystolicConfig: defaults, derived sizes, refusals naming field/value/allowed, overrides."""
from __future__ import annotations

import pytest

from tessel.runtime.systolic.config import MIB, ConfigError, SystolicConfig


def test_defaults_are_the_documented_machine():
    cfg = SystolicConfig()
    assert (cfg.rows, cfg.cols, cfg.clock_hz) == (128, 128, 940e6)
    assert (cfg.dtype, cfg.bf16_rounding, cfg.dataflow) == ("bf16", "nearest_even", "ws")
    assert cfg.weight_fifo_depth == 4
    assert cfg.accumulate_dtype == "f32" and cfg.operand_bytes == 2
    # rows of 128 lanes x 4 bytes
    assert cfg.lanes == cfg.vector_lanes == 128 and cfg.row_bytes == 512
    assert cfg.ub_rows == 24 * MIB // 512 and cfg.acc_rows == 4 * MIB // 512


def test_lanes_cover_taller_arrays():
    assert SystolicConfig(rows=32, cols=8).lanes == 32
    assert SystolicConfig(rows=8, cols=32).lanes == 32


def test_int8_accumulates_in_int32():
    cfg = SystolicConfig(dtype="int8")
    assert cfg.accumulate_dtype == "int32" and cfg.operand_bytes == 1


@pytest.mark.parametrize("changes, field, allowed", [
    ({"rows": 0}, "rows", "[1, 2048]"),
    ({"cols": -3}, "cols", "[1, 2048]"),
    ({"rows": 4096}, "rows", "[1, 2048]"),
    ({"rows": 2.0}, "rows", "an int"),
    ({"cols": True}, "cols", "an int"),
    ({"clock_hz": 0}, "clock_hz", "> 0"),
    ({"clock_hz": float("inf")}, "clock_hz", "finite"),
    ({"dtype": "fp16"}, "dtype", "'bf16', 'f32', 'int8'"),
    ({"bf16_rounding": "stochastic"}, "bf16_rounding", "'nearest_even', 'truncate'"),
    ({"dataflow": "rs"}, "dataflow", "'ws', 'os', 'is'"),
    ({"weight_fifo_depth": 0}, "weight_fifo_depth", "[1, 64]"),
    ({"host_bytes_per_cycle": -1.0}, "host_bytes_per_cycle", "> 0"),
    ({"host_latency_cycles": -1}, "host_latency_cycles", ">= 0"),
    ({"ub_bytes": 511}, "ub_bytes", "at least one row of 128 lanes x 4 bytes = 512 bytes"),
    ({"acc_bytes": 100}, "acc_bytes", "at least one row"),
    ({"ub_bytes": 1 << 40}, "ub_bytes", "20-bit row addresses"),
    ({"host_bytes": 1 << 33}, "host_bytes", "[4, 4294967296]"),
    ({"host_bytes": 1023}, "host_bytes", "multiple of 4"),
])
def test_invalid_configs_are_refused_with_field_value_and_allowed(changes, field, allowed):
    with pytest.raises(ConfigError) as e:
        SystolicConfig(**changes)
    message = str(e.value)
    assert f"SystolicConfig.{field} = {next(iter(changes.values()))!r}" in message
    assert allowed in message


def test_ub_must_hold_a_row_of_the_wider_array():
    SystolicConfig(rows=16, cols=16, ub_bytes=64)          # one 16-lane row
    with pytest.raises(ConfigError, match="ub_bytes"):
        SystolicConfig(rows=32, cols=16, ub_bytes=64)      # 32 lanes need 128 bytes


def test_config_is_frozen_and_with_validates():
    cfg = SystolicConfig()
    with pytest.raises(AttributeError):
        cfg.rows = 4
    assert cfg.with_(rows=256, cols=256).lanes == 256
    with pytest.raises(ConfigError, match="rows"):
        cfg.with_(rows=0)
    with pytest.raises(ConfigError, match="no field 'row'"):
        cfg.with_(row=4)


def test_from_overrides_parses_cli_strings_by_field_type():
    cfg = SystolicConfig.from_overrides(["rows=256", "cols = 64", "ub_bytes=32MiB",
                                         "acc_bytes=512KiB", "clock_hz=1.05GHz",
                                         "host_bytes_per_cycle=64", "dtype=int8",
                                         "bf16_rounding=truncate", "host_bytes=1GiB"])
    assert (cfg.rows, cfg.cols, cfg.ub_bytes, cfg.acc_bytes) == (256, 64, 32 * MIB, 512 << 10)
    assert cfg.clock_hz == 1.05e9 and cfg.host_bytes_per_cycle == 64.0
    assert (cfg.dtype, cfg.bf16_rounding, cfg.host_bytes) == ("int8", "truncate", 1 << 30)
    assert SystolicConfig.from_overrides({"rows": "16"}, cols=16).lanes == 16
    base = SystolicConfig(rows=8, cols=8)
    assert SystolicConfig.from_overrides(["dtype=f32"], base=base).rows == 8


@pytest.mark.parametrize("override, match", [
    ("rows", "expected key=value"),
    ("=3", "expected key=value"),
    ("rows=abc", r"SystolicConfig.rows = 'abc' is not allowed: expected an int"),
    ("rows=1.5", "a whole number"),
    ("rows=0", r"\[1, 2048\]"),
    ("ub_bytes=3XB", "KiB/MiB/GiB"),
    ("clock_hz=fast", "a number"),
    ("depth=3", "no field 'depth'"),
    ("dtype=bf8", "one of 'bf16', 'f32', 'int8'"),
])
def test_bad_overrides_say_what_was_expected(override, match):
    with pytest.raises(ConfigError, match=match):
        SystolicConfig.from_overrides([override])

"""Reports from a timing result: text summary, Chrome/Perfetto trace JSON, PNG timeline."""

import importlib.util
import json

import numpy as np
import pytest

from tessel.runtime.systolic import report
from tessel.runtime.systolic.config import SystolicConfig
from tessel.runtime.systolic.timing import TRACKS, simulate_timing

CFG = SystolicConfig(rows=8, cols=8, host_bytes_per_cycle=16, host_latency_cycles=10,
                     clock_hz=1e9)
# The DMA-bound program of test_timing: 5 DMAs end at 50, the MATMUL runs [50, 68),
# then ACTIVATE [68, 72) waits on the matrix unit.
PROGRAM = "\n".join(
    ["LOAD_W src=host addr=4096 k=8 n=8 stride=16 fmt=bf16"]
    + [f"DMA_LOAD host={128 * i} ub={4 * i} rows=4 cols=8 stride=32 fmt=f32"
       + (" push=matrix" if i == 4 else "") for i in range(5)]
    + ["MATMUL ub=16 acc=0 rows=4 mode=overwrite swap=1 pop=dma push=vector",
       "ACTIVATE acc=0 ub=100 rows=4 fn=relu pop=matrix",
       "HALT"])


@pytest.fixture(scope="module")
def result():
    return simulate_timing(PROGRAM, CFG)


def test_text_report_states_the_numbers(result):
    text = report.text_report(result)
    assert "9 instructions on a 8x8 array at 1 GHz" in text
    assert "total: 72 cycles = 72 ns" in text
    # 4 rows x 64 MACs over 64 * 72.
    assert "256 MACs, utilization 5.6%" in text
    assert "matrix   waiting on token from dma             50 cycles" in text
    assert "vector   waiting on token from matrix          68 cycles" in text
    table = text.split("\n\n")[1]         # the per-unit busy table
    lines = {line.split()[0]: line.split() for line in table.splitlines()}
    assert lines["dma"][1:3] == ["50", "69.4%"]
    assert lines["matrix"][1:4] == ["18", "25.0%", "50"]
    assert "host->ub                 640" in text
    # By opcode: 5 DMAs of 18 cycles each, one MATMUL of 18 cycles and 256 MACs.
    assert report.by_instruction(result)["DMA_LOAD"] == (5, 90, 0)
    assert report.by_instruction(result)["MATMUL"] == (1, 18, 256)
    assert "MATMUL               1          18             256" in text


def test_chrome_trace_is_loadable_trace_event_format(result, tmp_path):
    path = tmp_path / "trace.json"
    report.write_chrome_trace(result, path)
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert sorted(names.values()) == sorted(TRACKS)          # one track per unit
    complete = [e for e in events if e["ph"] == "X"]
    for e in complete:                                        # the fields viewers require
        assert isinstance(e["name"], str) and e["name"]
        assert isinstance(e["pid"], int) and e["tid"] in names
        assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float))
        assert e["ts"] >= 0 and e["dur"] >= 0
    assert all(e["ph"] in ("X", "M") for e in events)
    assert len(complete) == len(result.events) + len(result.shifts)
    matmul = next(e for e in complete if e["name"] == "MATMUL")
    # 1 GHz: cycle 50 = 0.05 us, 18 cycles = 0.018 us.
    assert names[matmul["tid"]] == "matrix"
    assert matmul["ts"] == pytest.approx(0.05) and matmul["dur"] == pytest.approx(0.018)
    assert matmul["args"]["stall_reason"] == "token from dma"
    assert matmul["args"]["text"].startswith("MATMUL ub=16")
    assert trace["otherData"]["total_cycles"] == 72
    labels = [f"op{i}" for i in range(len(result.program))]
    labelled = report.chrome_trace(result, labels)["traceEvents"]
    assert next(e for e in labelled if e.get("name") == "MATMUL")["args"]["op"] == "op6"


def test_utilization_timeline_averages_to_the_utilization(result):
    edges, values = report.utilization_timeline(result, bins=72)
    assert edges[0] == 0 and edges[-1] == 72
    # The MATMUL streams rows during cycles 50..53 at k*n/(R*C) = 1.
    np.testing.assert_allclose(values[50:54], 1.0)
    assert values[:50].sum() == 0 and values[54:].sum() == 0
    assert np.average(values, weights=np.diff(edges)) == pytest.approx(result.mxu_utilization)


def test_png_timeline(result, tmp_path):
    if importlib.util.find_spec("matplotlib") is None:
        print("SKIP REASON: matplotlib is not installed (pip install 'tessel[plot]'); "
              "checking the error message instead")
        with pytest.raises(ImportError, match=r"pip install 'tessel\[plot\]'"):
            report.write_timeline_png(result, tmp_path / "t.png")
        return
    path = tmp_path / "timeline.png"
    report.write_timeline_png(result, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_missing_matplotlib_gives_install_hint(result, tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"optional extra: pip install 'tessel\[plot\]'"):
        report.write_timeline_png(result, tmp_path / "t.png")

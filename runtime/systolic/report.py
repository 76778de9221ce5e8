"""Reports from a timing result (`timing.simulate_timing`): text, Chrome trace, PNG.

- `text_report(result)`: cycles, time at the clock, MXU utilization, per-unit busy
  time, the stall breakdown and the bytes moved, as a few aligned lines.
- `chrome_trace(result)` / `write_chrome_trace(result, path)`: the Trace Event Format
  JSON that chrome://tracing and https://ui.perfetto.dev load: one track (thread) per
  unit plus one for the weight shifts into the array, one complete ("X") event per
  instruction, timestamps in microseconds at the configured clock.
- `write_timeline_png(result, path)`: a timeline of the units over an MXU-utilization
  curve, drawn with matplotlib (an optional extra: `pip install 'tessel[plot]'`).
"""

from __future__ import annotations

import json

import numpy as np

from .timing import TRACKS, UNITS, TimingResult

PROCESS_NAME = "systolic machine"


# ----------------------------------------------------------------------------- text

def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _duration(seconds: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds / 1e-9:.4g} ns"


def text_report(result: TimingResult) -> str:
    """A human-readable summary of where the cycles went."""
    cfg, total = result.config, result.total_cycles
    lines = [
        f"systolic program: {len(result.program)} instructions on a {cfg.rows}x{cfg.cols} "
        f"array at {_si(cfg.clock_hz, 'Hz')}",
        f"total: {total} cycles = {_duration(result.seconds)}",
        f"MXU: {result.macs} MACs, utilization {100 * result.mxu_utilization:.1f}% "
        f"(input port streaming {100 * result.streamed_rows / total if total else 0:.1f}% "
        "of cycles)",
        "",
        f"{'unit':<14}{'busy cycles':>12}{'busy':>8}{'stalled':>10}",
    ]
    for track in TRACKS:
        stalled = sum(result.stalls.get(track, {}).values())
        lines.append(f"{track:<14}{result.busy.get(track, 0):>12}"
                     f"{100 * result.busy_fraction(track):>7.1f}%"
                     f"{stalled if track in UNITS else '':>10}")
    stalls = [(cycles, unit, reason) for unit in UNITS
              for reason, cycles in result.stalls.get(unit, {}).items()]
    lines += ["", "stalls (idle cycles before an instruction, by what it waited for):"]
    if not stalls:
        lines.append("  none")
    for cycles, unit, reason in sorted(stalls, reverse=True):
        lines.append(f"  {unit:<8} waiting on {reason:<18} {cycles:>10} cycles")
    lines += ["", f"{'instruction':<14}{'count':>8}{'cycles':>12}{'MACs':>16}"]
    for name, (count, cycles, macs) in by_instruction(result).items():
        lines.append(f"{name:<14}{count:>8}{cycles:>12}{macs:>16}")
    lines += ["", "bytes moved:"]
    for direction, count in result.bytes_moved.items():
        lines.append(f"  {direction:<14}{count:>14}")
    return "\n".join(lines)


def by_instruction(result: TimingResult) -> dict[str, tuple[int, int, int]]:
    """Per opcode: how many ran, their summed durations (cycles; overlapping ones each
    count) and their MACs, in order of first appearance."""
    table: dict[str, list[int]] = {}
    for e in result.events:
        row = table.setdefault(e.name, [0, 0, 0])
        row[0] += 1
        row[1] += e.end - e.start
        row[2] += e.macs
    return {name: tuple(row) for name, row in table.items()}


# ----------------------------------------------------------------------------- Chrome trace

def _micros(cycles: int, clock_hz: float) -> float:
    return cycles * 1e6 / clock_hz


def chrome_trace(result: TimingResult, labels=None) -> dict:
    """The timeline as a Trace Event Format object (json.dump it, or use write_chrome_trace).

    `labels`: optional, one string per instruction (e.g. the HLO op it implements), shown
    as the event's `op` argument."""
    clock = result.config.clock_hz
    events = [{"name": "process_name", "ph": "M", "pid": 0, "tid": 0,
               "args": {"name": PROCESS_NAME}}]
    tid = {track: i + 1 for i, track in enumerate(TRACKS)}
    for track, number in tid.items():
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": number,
                       "args": {"name": track}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": number,
                       "args": {"sort_index": number}})
    for e in result.events + result.shifts:
        args = {"instruction": e.index, "start_cycle": e.start, "end_cycle": e.end}
        if e.name != "SHIFT":
            args["text"] = str(result.program[e.index])
        if labels is not None and labels[e.index]:
            args["op"] = labels[e.index]
        if e.stall:
            args["stall_cycles"], args["stall_reason"] = e.stall, e.reason
        if e.macs:
            args["macs"] = e.macs
        events.append({"name": e.name, "cat": e.unit, "ph": "X", "pid": 0, "tid": tid[e.unit],
                       "ts": _micros(e.start, clock), "dur": _micros(e.end - e.start, clock),
                       "args": args})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"total_cycles": result.total_cycles, "clock_hz": clock,
                          "mxu_utilization": result.mxu_utilization}}


def write_chrome_trace(result: TimingResult, path, labels=None) -> None:
    with open(path, "w") as f:
        json.dump(chrome_trace(result, labels), f)


# ----------------------------------------------------------------------------- utilization

def utilization_timeline(result: TimingResult, bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """MXU utilization over time: bin edges (cycles) and, per bin, the useful MACs issued
    in it over R * C * bin width. A MATMUL issues k * n MACs per cycle while its T input
    rows stream in ([start, start + T)); the bins' mean is the overall utilization."""
    total = max(result.total_cycles, 1)
    edges = np.linspace(0, total, bins + 1)
    per_cycle = np.zeros(bins)
    array = result.config.rows * result.config.cols
    for e in result.events:
        if not e.macs:
            continue
        rows = result.program[e.index].rows
        lo, hi = e.start, e.start + rows
        overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
        per_cycle += overlap * (e.macs / rows) / array
    return edges, per_cycle / np.diff(edges)


# ----------------------------------------------------------------------------- PNG

def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("PNG timelines need matplotlib, an optional extra: "
                          "pip install 'tessel[plot]' (or pip install matplotlib)") from e
    return plt


def write_timeline_png(result: TimingResult, path, bins: int = 200) -> None:
    """A PNG: one lane per unit (instructions as bars, stalls hatched), and the MXU
    utilization over time below it."""
    plt = _pyplot()
    fig, (lanes, util) = plt.subplots(2, 1, figsize=(12, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, track in enumerate(TRACKS):
        events = [e for e in result.events + result.shifts if e.unit == track]
        lanes.broken_barh([(e.start, e.end - e.start) for e in events], (row - 0.4, 0.8),
                          facecolors=colors[row % len(colors)])
        stalls = [(e.start - e.stall, e.stall) for e in events if e.stall]
        if stalls:
            lanes.broken_barh(stalls, (row - 0.4, 0.8), facecolors="none",
                              edgecolors="grey", hatch="//", linewidth=0)
    lanes.set_yticks(range(len(TRACKS)), TRACKS)
    lanes.invert_yaxis()
    lanes.set_title(f"{result.config.rows}x{result.config.cols} array: {result.total_cycles} "
                    f"cycles, MXU utilization {100 * result.mxu_utilization:.1f}%")
    edges, values = utilization_timeline(result, bins)
    util.stairs(100 * values, edges, fill=True)
    util.set_ylim(0, 100)
    util.set_ylabel("MXU %")
    util.set_xlabel("cycle")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)

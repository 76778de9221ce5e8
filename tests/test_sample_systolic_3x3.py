"""samples/systolic_3x3.py replays y = W x (3 x 3, batch 3) cycle by cycle; it must run
and show the wavefront the timing contract predicts."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cycles(out: str) -> dict[int, str]:
    """The printed block of each cycle."""
    parts = re.split(r"^cycle (\d+)", out, flags=re.M)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_systolic_3x3_sample_replays_the_wavefront():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "samples", "systolic_3x3.py")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    cycles = _cycles(out)
    # R = 3 cycles of weight shifting, the MATMUL starts at 3, 2R + C + T - 2 = 10 in all.
    assert sorted(cycles) == list(range(10))
    assert "weight tile starts shifting" in cycles[0]
    assert "MATMUL starts" in cycles[3]
    # Input row t reaches PE(r, c) at 3 + t + r + c: the wavefront is an anti-diagonal.
    for t in range(3):
        for r in range(3):
            for c in range(3):
                assert f"PE({r},{c})<-x{t}" in cycles[3 + t + r + c].split("wavefront:")[1]
    # y_t[c] leaves column c at 3 + t + 2 + c; W x0 = (7, 16, 25).
    assert "leaves column 0: y0[0] = 7" in cycles[5]
    assert "leaves column 1: y0[1] = 16" in cycles[6]
    assert "leaves column 2: y2[2] = 25" in cycles[9]
    # PE(1, 2) holds W[2, 1] = 8 once swapped in.
    assert "W21=8" in cycles[6]
    assert "total cycles: 10" in out
    assert "matches NumPy W @ x: True" in out

"""The README's first command runs samples/quickstart.py: it must work and say so."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_sample_runs_and_reports():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "samples", "quickstart.py")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "HloModule predict" in out
    assert "ENTRY main" in out
    assert "dot_general(" in out and "exp(" in out
    assert "quickstart.py:" in out                  # source lines in the HLO
    error = float(re.search(r"max \|tessel - numpy\| = (\S+)", out).group(1))
    assert error < 1e-5
    assert "rows sum to one: True" in out
    assert "compiled signatures cached: 1" in out

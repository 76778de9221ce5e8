"""The training samples run end to end (a few epochs on part of the data, interpreter
backend) and learn."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_sample(name, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "samples", name), *args],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name, epochs, batch", [("mnist_softmax.py", 4, 100), ("mlp.py", 3, 32)])
def test_sample_trains_and_reports(name, epochs, batch):
    out = run_sample(name, "--backend", "interpreter", "--epochs", str(epochs), "--batch-size", str(batch),
                     "--train-examples", "480")
    losses = [float(v) for v in re.findall(r"^epoch .* loss ([0-9.]+)", out, re.M)]
    assert len(losses) == epochs, out
    assert losses[-1] < losses[0], out
    assert re.search(r"examples/s", out), out
    summary = re.search(r"^done: .* final test accuracy ([0-9.]+)%", out, re.M)
    assert summary and float(summary.group(1)) > 30.0, out      # 10 classes: chance is 10%


def test_sample_rejects_an_unknown_backend():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "samples", "mlp.py"), "--backend", "tpu"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode != 0 and "invalid choice: 'tpu'" in result.stderr

"""The training samples run end to end (a few epochs on part of the data or tiny models,
interpreter backend) and learn: the loss falls, accuracies and examples/s are printed."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def epoch_losses(out):
    return [float(v) for v in re.findall(r"^epoch .* loss ([0-9.]+)", out, re.M)]


def test_cnn_trains_and_reports():
    out = run_sample("cnn.py", "--backend", "interpreter", "--epochs", "3", "--batch-size", "32",
                     "--train-examples", "320")
    losses = epoch_losses(out)
    assert len(losses) == 3 and losses[-1] < losses[0], out
    summary = re.search(r"^done: CNN .* final test accuracy ([0-9.]+)%", out, re.M)
    assert summary and float(summary.group(1)) > 30.0, out      # 10 classes: chance is 10%


def test_lstm_chars_trains_and_generates():
    out = run_sample("lstm_chars.py", "--backend", "interpreter", "--epochs", "3", "--steps", "4",
                     "--seq-len", "8", "--hidden", "16", "--batch-size", "8", "--generate", "20")
    losses = epoch_losses(out)
    assert len(losses) == 3 and losses[-1] < losses[0], out
    assert re.search(r"next-token acc .* examples/s \([0-9]+ tokens/s\)", out), out
    sample = re.search(r"^greedy sample:\n(.*)\ndone: char LSTM", out, re.M | re.S)
    assert sample and sample.group(1).startswith("def ") and len(sample.group(1)) == 4 + 20, out


GPT_TINY = ("--epochs", "2", "--steps", "3", "--layers", "1", "--width", "16", "--heads", "2",
            "--context", "8", "--batch-size", "4", "--generate", "8", "--lr", "1e-2")


def test_gpt_trains_and_generates():
    out = run_sample("gpt.py", "--backend", "interpreter", *GPT_TINY)
    losses = epoch_losses(out)
    assert len(losses) == 2 and losses[-1] < losses[0], out
    assert re.search(r"next-token acc .* examples/s \([0-9]+ tokens/s\)", out), out
    sample = re.search(r"^greedy sample:\n(.*)\ndone: GPT 1 layers", out, re.M | re.S)
    assert sample and sample.group(1).startswith("def ") and len(sample.group(1)) == 4 + 8, out


@pytest.mark.slow
@pytest.mark.parametrize("name, flags", [("gpt.py", GPT_TINY), ("cnn.py", ("--epochs", "1", "--train-examples", "256"))])
def test_sample_losses_agree_on_cpu_and_interpreter(name, flags):
    cpu, interpreter = (epoch_losses(run_sample(name, "--backend", b, *flags)) for b in ("cpu", "interpreter"))
    assert len(cpu) == len(interpreter) > 0
    assert all(abs(a - b) < 2e-3 for a, b in zip(cpu, interpreter)), (cpu, interpreter)

"""Every training sample runs with --backend systolic: the training step compiles for the
simulated machine (soft placement puts on the CPU only what the machine cannot hold --
Adam's s32 step counter, the integer compare of a one-hot), prints its simulated cost
per step, and learns. Tiny sizes, so the simulator finishes quickly."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COST = re.compile(r"^systolic: train_step per call: ([0-9,]+) simulated cycles \(([0-9.]+) us at the modelled "
                  r"clock\), MXU utilization ([0-9.]+)%(?:, ([0-9,]+) bytes transferred CPU<->systolic)?$", re.M)

SAMPLES = {  # sample -> tiny flags, what must stay off the CPU
    "mnist_softmax.py": (("--epochs", "3", "--steps", "3"), ()),      # --train-examples: the systolic default
    "mlp.py": (("--epochs", "3", "--train-examples", "192", "--batch-size", "32", "--lr", "3e-3"), ()),
    "cnn.py": (("--epochs", "2", "--train-examples", "96", "--batch-size", "16"),
               ("select_and_scatter", "reverse", "convolution", "dot_general")),
    "lstm_chars.py": (("--epochs", "2", "--steps", "3", "--seq-len", "6", "--hidden", "16", "--batch-size", "8",
                       "--generate", "4"), ("while", "dot_general", "tanh")),
    "gpt.py": (("--epochs", "2", "--steps", "3", "--context", "8", "--width", "16", "--heads", "2",
                "--batch-size", "4", "--generate", "4"), ("gather", "scatter", "dot_general")),
}


def run_systolic(name, *flags):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "samples", name), "--backend", "systolic", *flags],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_trains_on_the_systolic_machine(name):
    flags, machine_ops = SAMPLES[name]
    out = run_systolic(name, *flags)
    cost = COST.search(out)
    assert cost, out
    cycles = int(cost.group(1).replace(",", ""))
    assert cycles > 0 and float(cost.group(2)) > 0
    epochs = re.findall(r"^epoch .* loss ([0-9.]+) .* ([0-9,]+) simulated cycles/step$", out, re.M)
    assert len(epochs) == int(flags[1]), out
    assert all(int(c.replace(",", "")) == cycles for _, c in epochs), out     # cycles do not depend on the data
    losses = [float(loss) for loss, _ in epochs]
    assert losses[-1] < losses[0], out
    on_cpu = re.findall(r"^systolic: train_step: on the CPU: \d+ x (\w+) \((.*)$", out, re.M)
    assert not {op for op, _ in on_cpu} & set(machine_ops), out
    if name == "mnist_softmax.py":      # SGD on f32 values: the whole step runs on the machine
        assert not on_cpu and cost.group(4) is None, out
        assert "600 train" in out, out  # the systolic default (the simulator runs every instruction)
    else:                               # Adam counts steps in s32: on the CPU, said so
        assert any(op == "add" and why.startswith("its result is s32") and "from samples/common.py:" in why
                   for op, why in on_cpu), out
        assert int(cost.group(4).replace(",", "")) > 0, out

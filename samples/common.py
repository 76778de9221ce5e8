"""What the training samples share: data, command line, progress lines.

Data: scikit-learn's bundled 8x8 handwritten digits when scikit-learn is installed
(`pip install -e '.[samples]'`), otherwise generated at run time: seven-segment digits
drawn on an 8x8 grid with random stroke strengths, noise and (a quarter of them) shifts. Text (the
language-model samples): the sample's own source file, read at run time. Nothing is
downloaded.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np

# Seven-segment digits: which of the segments (top, upper left, upper right, middle,
# lower left, lower right, bottom) each digit lights.
SEGMENTS = {0: "abcefg", 1: "cf", 2: "acdeg", 3: "acdfg", 4: "bcdf", 5: "abdfg", 6: "abdefg",
            7: "acf", 8: "abcdefg", 9: "abcdfg"}
STROKES = {  # segment -> (rows, cols) it covers on the 8x8 grid
    "a": (slice(1, 2), slice(2, 6)), "b": (slice(1, 4), slice(2, 3)), "c": (slice(1, 4), slice(5, 6)),
    "d": (slice(3, 4), slice(2, 6)), "e": (slice(4, 7), slice(2, 3)), "f": (slice(4, 7), slice(5, 6)),
    "g": (slice(6, 7), slice(2, 6)),
}


def generated_digits(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n noisy seven-segment digits: (images f32[n, 64] in [0, 1], labels s32[n])."""
    labels = rng.integers(0, 10, n).astype(np.int32)
    images = np.zeros((n, 8, 8), np.float32)
    for k, digit in enumerate(labels):
        for segment in SEGMENTS[int(digit)]:
            rows, cols = STROKES[segment]
            images[k, rows, cols] = rng.uniform(0.5, 1.0)
        if rng.random() < 0.25:       # some are written off-centre
            images[k] = np.roll(images[k], (rng.integers(-1, 2), rng.integers(-1, 2)), axis=(0, 1))
    images += rng.normal(0, 0.2, images.shape).astype(np.float32)
    return np.clip(images, 0, 1).reshape(n, 64), labels


def load_digits(seed: int = 0, n_generated: int = 1800):
    """((x_train, y_train), (x_test, y_test), source): f32 images with 64 pixels in [0, 1]."""
    rng = np.random.default_rng(seed)
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        bunch = sklearn_digits()
        x, y = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int32)
        source = "scikit-learn 8x8 digits"
    except ImportError:
        x, y = generated_digits(n_generated, rng)
        source = "generated seven-segment 8x8 digits (install scikit-learn for real ones)"
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n_test = len(x) // 6
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test]), source


def one_hot(labels: np.ndarray, classes: int = 10) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels]


def batches(x, y, batch_size: int, rng):
    """Shuffled full batches (the ragged tail is dropped: one compiled signature)."""
    order = rng.permutation(len(x))
    for start in range(0, len(x) - batch_size + 1, batch_size):
        take = order[start:start + batch_size]
        yield x[take], y[take]


# ----------------------------------------------------------------------------- text

def bundled_text(path: str) -> str:
    """A sample's own source file as its training text: always there, nothing to download."""
    with open(os.path.abspath(path), encoding="utf-8") as f:
        return f.read()


class Vocabulary:
    """The text's distinct characters, each an integer token."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: k for k, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(k)] for k in ids)


def windows(ids: np.ndarray, batch: int, length: int, rng):
    """(inputs, targets): `batch` random windows of `length` characters and the next ones."""
    starts = rng.integers(0, len(ids) - length - 1, batch)
    take = starts[:, None] + np.arange(length + 1)
    chunk = ids[take]
    return chunk[:, :-1], chunk[:, 1:]


# ----------------------------------------------------------------------------- command line

SAMPLE_BACKENDS = ("cpu", "interpreter", "systolic")   # what --backend offers


def parse_args(description: str, argv, epochs: int, batch_size: int, lr: float, extra=None,
               steps: int | None = None, systolic: dict | None = None):
    """The samples' shared flags; `extra(parser)` adds a sample's own. `steps`: training
    steps per epoch (None: one pass over the data). `systolic`: defaults that replace the
    others under --backend systolic (the simulator runs every instruction of every step,
    so those runs are smaller) unless the flag is given."""
    from tessel.runtime import backends
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default="cpu", choices=sorted(set(SAMPLE_BACKENDS) | set(backends.available())),
                        help="tessel.jit backend (default cpu)")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--steps", type=int, default=steps,
                        help="training steps per epoch" + (" (default: one pass over the data)" if steps is None else ""))
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr, help="learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-examples", type=int, default=None,
                        help="train on only the first N training examples (a quick run)")
    if extra is not None:
        extra(parser)
    if systolic:
        parser.epilog = "under --backend systolic the defaults are " + ", ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in systolic.items())
    args = parser.parse_args(argv)
    if args.backend not in backends.available():
        parser.error(f"--backend {args.backend}: that backend is not available in this build of tessel "
                     f"(registered backends: {', '.join(backends.available())})")
    if args.backend == "systolic" and systolic:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")}
        for key, value in systolic.items():
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, value)
    return args


# ----------------------------------------------------------------------------- compiling

def jit_for(args, fn):
    """tessel.jit on the chosen backend; on the systolic machine with soft placement
    (ops the machine cannot run -- integer bookkeeping such as Adam's step counter, a
    one-hot's compare -- run on the CPU, with transfers at the cut: docs/placement.md)."""
    import tessel
    placement = "soft" if args.backend == "systolic" else None
    return tessel.jit(fn, backend=args.backend, placement=placement)


def compile_for(args, jitted, *example_args):
    """Compile `jitted` for the example arguments' shapes; the compiled program is called
    like the function. On the systolic backend, prints what one call costs the machine
    (and, with soft placement, what runs on the CPU and why), or stops with the
    backend's reason when the machine cannot run the step."""
    try:
        compiled = jitted.lower(*example_args).compile()
    except NotImplementedError as err:     # e.g. the systolic backend's UnsupportedOp
        raise SystemExit(f"--backend {args.backend} cannot compile {jitted.__name__}: {err}") from None
    if args.backend == "systolic":
        for line in placement_lines(compiled):
            print(f"systolic: {jitted.__name__}: {line}", flush=True)
        print(f"systolic: {jitted.__name__} per call: {cost_line(compiled)}", flush=True)
        compiled.cost_line = f"{compiled.systolic_report().total_cycles:,} simulated cycles/step"
    return compiled


def placement_lines(compiled) -> list[str]:
    """What soft placement put on the CPU, and why: one line per (op, reason), with how
    many instructions and the source lines they come from. Empty when everything runs
    on the machine."""
    exe = compiled.executable
    if not getattr(exe, "placed", False):
        return []
    from tessel.backends.systolic import codegen
    on_cpu: dict[tuple[str, str], list] = {}
    for instr in exe.module.entry.instructions:
        if instr.attrs.get("device") != "cpu" or instr.opcode in ("send", "recv"):
            continue
        why = codegen.unsupported_reason(instr) or "it reads or feeds CPU values that cannot cross to the machine"
        on_cpu.setdefault((instr.opcode, why), []).append(instr)
    lines = []
    for (opcode, why), instrs in on_cpu.items():
        where = sorted({loc for i in instrs for loc in i.loc_text.split(", ")})
        lines.append(f"on the CPU: {len(instrs)} x {opcode} ({why}; from {', '.join(where[:3])}"
                     f"{' ...' if len(where) > 3 else ''})")
    return lines


def cost_line(compiled) -> str:
    """Simulated cycles, time at the modelled clock, MXU utilization, bytes moved between
    the host and the machine's CPU partner (soft placement's transfers)."""
    report = compiled.systolic_report()
    line = (f"{report.total_cycles:,} simulated cycles ({report.seconds * 1e6:.1f} us at the modelled clock), "
            f"MXU utilization {report.mxu_utilization:.1%}")
    transfer = getattr(report, "transfer_bytes", None)
    if transfer is not None:
        line += f", {transfer:,} bytes transferred CPU<->systolic"
    return line


# ----------------------------------------------------------------------------- data

def load_for(args):
    """The digits split, the training set cut to --train-examples; prints what was loaded."""
    (x_train, y_train), test, source = load_digits(args.seed)
    if args.train_examples is not None:
        x_train, y_train = x_train[:args.train_examples], y_train[:args.train_examples]
    print(f"data: {source}; {len(x_train)} train, {len(test[0])} test; backend {args.backend}")
    return (x_train, y_train), test


def hit_rate(logits, targets_one_hot):
    """The fraction of rows whose target has the largest logit (the greedy prediction is
    right; a tie with another class counts as right). Float ops only -- no argmax, whose
    integer index the systolic machine cannot hold -- so it runs where the model runs."""
    import tessel.numpy as tnp
    target_logit = tnp.sum(targets_one_hot * logits, axis=-1)
    return tnp.mean((target_logit >= tnp.max(logits, axis=-1)).astype(tnp.float32))


# ----------------------------------------------------------------------------- training loops

def first(items, n: int | None):
    """The first n items (all when n is None)."""
    return items if n is None else itertools.islice(items, n)


def training_step(loss_fn, opt, has_aux: bool = False):
    """The step every sample jits as one program: the loss and its gradient
    (tessel.value_and_grad) and the optimizer's update. Returns
    `train_step(params, state, *batch) -> (params, state, loss[, aux])`."""
    import tessel

    def train_step(params, state, *batch):
        value, grads = tessel.value_and_grad(loss_fn, has_aux=has_aux)(params, *batch)
        params, state = opt.update(grads, state, params)
        return (params, state, *value) if has_aux else (params, state, value)

    return train_step


def fit_classifier(args, logits, loss_fn, opt, params, train, test, loss_scale: float = 1.0):
    """Train an image classifier with `opt` on `loss_fn(params, x, y_onehot)` (one jitted
    step, `training_step`) on shuffled batches, --steps per epoch (default: all), and
    report per epoch the accuracy of `logits(params, x)` on the training and test sets.
    Returns (progress, params). `loss_scale` turns the step's loss into the mean per example."""
    (x_train, y_train), (x_test, y_test) = train, test
    rng = np.random.default_rng(args.seed)
    batch, state = args.batch_size, opt.init(params)

    def accuracy(params, x, y_onehot):
        return hit_rate(logits(params, x), y_onehot)

    progress = Progress()                     # the total time includes compiling
    program = compile_for(args, jit_for(args, training_step(loss_fn, opt)), params, state,
                          x_train[:batch], one_hot(y_train[:batch]))
    progress.cost_line = getattr(program, "cost_line", None)
    measure = jit_for(args, accuracy)
    evaluate = {name: compile_for(args, measure, params, x, one_hot(y))
                for name, (x, y) in (("train", (x_train, y_train)), ("test", (x_test, y_test)))}

    def step(x, y):
        nonlocal params, state
        params, state, loss = program(params, state, x, one_hot(y))
        return loss * loss_scale

    for epoch in range(1, args.epochs + 1):
        loss, examples, seconds = progress.timed_epoch(step, first(batches(x_train, y_train, batch, rng), args.steps))
        progress.epoch(epoch, args.epochs, loss, float(evaluate["train"](params, x_train, one_hot(y_train))),
                       float(evaluate["test"](params, x_test, one_hot(y_test))), examples, seconds)
    return progress, params


def fit_sequences(args, loss_fn, opt, params, next_batch, tokens_per_example: int):
    """Train a language model with `opt` on `loss_fn(params, inputs, targets) -> (loss,
    next-token accuracy)` (one jitted step, `training_step`) on `next_batch()`, --steps
    per epoch. Returns (progress, params)."""
    state = opt.init(params)
    progress = Progress()                     # the total time includes compiling
    train_step = jit_for(args, training_step(loss_fn, opt, has_aux=True))
    program = compile_for(args, train_step, params, state, *next_batch())
    progress.cost_line = getattr(program, "cost_line", None)
    accuracies = []

    def step(inputs, targets):
        nonlocal params, state
        params, state, loss, accuracy = program(params, state, inputs, targets)
        accuracies.append(float(accuracy))
        return loss

    for epoch in range(1, args.epochs + 1):
        accuracies.clear()
        loss, examples, seconds = progress.timed_epoch(step, (next_batch() for _ in range(args.steps)))
        progress.sequence_epoch(epoch, args.epochs, loss, float(np.mean(accuracies)), examples, seconds,
                                tokens_per_example)
    return progress, params


class Progress:
    """Per-epoch lines (loss, accuracy, examples/s; on the systolic machine the simulated
    cost of each step) and the closing summary."""

    def __init__(self):
        self.losses: list[float] = []
        self.start = time.perf_counter()
        self.cost_line = None

    def timed_epoch(self, step, batches_of_epoch):
        """Run `step(x, y) -> mean loss of the batch` on each batch; returns (mean loss,
        examples timed, seconds), the run's first step (it traces and compiles) not timed."""
        total, n, timed, seconds = 0.0, 0, 0, 0.0
        for x, y in batches_of_epoch:
            start = time.perf_counter()
            loss = float(step(x, y))
            if getattr(self, "warm", False):
                timed, seconds = timed + len(x), seconds + time.perf_counter() - start
            self.warm = True
            total, n = total + loss, n + 1
        return total / n, timed, seconds

    def _rate(self, examples: int, seconds: float, tokens_per_example: int | None = None) -> str:
        if not examples:
            return "compiling"
        rate = f"{examples / seconds:9.0f} examples/s"
        if tokens_per_example:
            rate = f"{examples / seconds:7.0f} examples/s ({examples * tokens_per_example / seconds:.0f} tokens/s)"
        if self.cost_line:
            rate += " (simulator)"
        return rate

    def _cost(self) -> str:
        return f"  {self.cost_line}" if self.cost_line else ""

    def epoch(self, epoch: int, epochs: int, loss: float, train_acc: float, test_acc: float,
              examples: int, seconds: float) -> None:
        """`examples` trained in `seconds` (steps that compiled are not counted)."""
        self.losses.append(loss)
        self.test_acc = test_acc
        print(f"epoch {epoch:3d}/{epochs}  loss {loss:.4f}  train acc {train_acc:6.2%}  "
              f"test acc {test_acc:6.2%}  {self._rate(examples, seconds)}{self._cost()}", flush=True)

    def sequence_epoch(self, epoch: int, epochs: int, loss: float, accuracy: float, examples: int,
                       seconds: float, tokens_per_example: int) -> None:
        """A language model's line: `accuracy` is the next-token accuracy (greedy)."""
        self.losses.append(loss)
        self.next_token_acc = accuracy
        print(f"epoch {epoch:3d}/{epochs}  loss {loss:.4f}  next-token acc {accuracy:6.2%}  "
              f"{self._rate(examples, seconds, tokens_per_example)}{self._cost()}", flush=True)

    def summary(self, what: str) -> None:
        accuracy = (f"final test accuracy {self.test_acc:.2%}" if hasattr(self, "test_acc")
                    else f"final next-token accuracy {self.next_token_acc:.2%}")
        print(f"done: {what}; loss {self.losses[0]:.4f} -> {self.losses[-1]:.4f}, "
              f"{accuracy}, {time.perf_counter() - self.start:.1f} s total")

"""Synchronous data-parallel training of the MLP (samples/mlp.py) on MPI.

    mpiexec -n 2 python samples/train_data_parallel.py [--batch-size 32] [--epochs 3]
    python samples/train_data_parallel.py            # one process, no mpiexec needed

Every rank holds the whole model and draws the same shuffled global batches (same
seed); rank r trains on its shard r of each global batch of N x batch-size examples.
Inside the one jitted step the gradients are averaged with `all_reduce(op="mean")`, so
every rank applies the same Adam update: N ranks x batch B train like one process with
batch N*B. The step also returns max - min over ranks of a parameter checksum, which
must be exactly 0 after every step (checked). Rank 0 prints the progress.
"""
import argparse
import sys
import time

import numpy as np

import tessel
import tessel.distributed as dist
import tessel.numpy as tnp
from tessel.runtime import pytree

from common import load_digits, one_hot
from mlp import init_params, logits, loss_fn


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu", help="tessel.jit backend (default cpu)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per rank per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="rank 0 writes the final parameters here (.npz)")
    parser.add_argument("--no-eval", action="store_true", help="skip the accuracy after each epoch")
    return parser.parse_args(argv)


def checksum(params):
    """One number that changes with any parameter (sum and sum of squares of all)."""
    leaves = pytree.flatten(params)[0]
    return sum(tnp.sum(p) + tnp.sum(p * p) for p in leaves)


def make_step(opt, backend):
    @tessel.jit(backend=backend)
    def train_step(params, state, x, y_onehot):
        loss, grads = tessel.value_and_grad(loss_fn)(params, x, y_onehot)
        # one collective for all the gradients and the loss (all_reduce takes a pytree)
        grads, loss = dist.all_reduce((grads, loss), op="mean")
        params, state = opt.update(grads, state, params)
        c = checksum(params)
        highest = dist.all_reduce(tnp.stack([c, -c]), op="max")     # max and -min at once
        return params, state, loss, highest[0] + highest[1]
    return train_step


def shards(x, y, batch_size: int, rank: int, ranks: int, rng):
    """This rank's shard of each shuffled global batch (the same order on every rank)."""
    order = rng.permutation(len(x))
    per_step = batch_size * ranks
    for start in range(0, len(x) - per_step + 1, per_step):
        take = order[start + rank * batch_size:start + (rank + 1) * batch_size]
        yield x[take], y[take]


def main(argv=None):
    args = parse_args(argv)
    dist.initialize()
    rank, ranks = dist.process_index(), dist.process_count()
    say = print if rank == 0 else (lambda *a, **k: None)
    (x_train, y_train), (x_test, y_test), source = load_digits(args.seed)
    say(f"data: {source}; {len(x_train)} train, {len(x_test)} test; {ranks} rank(s) x batch "
        f"{args.batch_size}; backend {args.backend}", flush=True)
    rng = np.random.default_rng(args.seed)      # same seed everywhere: same init, same order
    params = init_params(rng)
    opt = tessel.optim.adam(args.lr)
    state = opt.init(params)
    train_step = make_step(opt, args.backend)
    accuracy = tessel.jit(lambda p, x, labels: tnp.mean(tnp.argmax(logits(p, x), axis=1) == labels),
                          backend=args.backend)

    step, timed_examples, timed_seconds = 0, 0, 0.0
    for epoch in range(1, args.epochs + 1):
        losses, epoch_examples, epoch_seconds = [], 0, 0.0
        for x, y in shards(x_train, y_train, args.batch_size, rank, ranks, rng):
            start = time.perf_counter()
            params, state, loss, spread = train_step(params, state, x, one_hot(y))
            loss, spread = float(loss), float(spread)
            if step > 0:        # the first step traces and compiles
                epoch_examples += len(x) * ranks
                epoch_seconds += time.perf_counter() - start
            if spread != 0.0:
                raise RuntimeError(f"step {step}: the parameters differ across ranks "
                                   f"(checksum max - min = {spread!r})")
            losses.append(loss)
            step += 1
            if args.steps is not None and step >= args.steps:
                break
        timed_examples, timed_seconds = timed_examples + epoch_examples, timed_seconds + epoch_seconds
        rate = f"{epoch_examples / epoch_seconds:8.0f} examples/s" if epoch_seconds else "compiling"
        if rank == 0:
            acc = "" if args.no_eval else (f"train acc {float(accuracy(params, x_train, y_train)):6.2%}  "
                                           f"test acc {float(accuracy(params, x_test, y_test)):6.2%}  ")
            say(f"epoch {epoch}/{args.epochs}  step {step}  loss {np.mean(losses):.4f}  {acc}{rate}", flush=True)
        if args.steps is not None and step >= args.steps:
            break
    if timed_seconds:
        say(f"done: {ranks} rank(s), {step} steps, parameters identical on every rank after every "
            f"step; {timed_examples / timed_seconds:.0f} examples/s overall", flush=True)
    if args.save and rank == 0:
        np.savez(args.save, **params)
    return params


if __name__ == "__main__":
    main(sys.argv[1:])

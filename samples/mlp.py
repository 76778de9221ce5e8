"""A multi-layer perceptron: 64 -> 128 -> 128 -> 10 with relu, softmax cross-entropy,
trained with Adam on 8x8 digits.

    python samples/mlp.py [--backend cpu|interpreter] [--epochs 15]

One jitted program per training step: forward, tessel.value_and_grad, Adam update.
"""
import numpy as np

import tessel
import tessel.numpy as tnp

from common import Progress, batches, load_for, one_hot, parse_args

SIZES = (64, 128, 128, 10)


def init_params(rng, sizes=SIZES):
    params = {}
    for k, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        params[f"w{k}"] = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[f"b{k}"] = np.zeros(fan_out, np.float32)
    return params


def logits(params, x):
    h = tnp.maximum(x @ params["w1"] + params["b1"], 0.0)
    h = tnp.maximum(h @ params["w2"] + params["b2"], 0.0)
    return h @ params["w3"] + params["b3"]


def loss_fn(params, x, y_onehot):
    return -tnp.mean(tnp.sum(y_onehot * tessel.nn.log_softmax(logits(params, x), axis=1), axis=1))


def main(argv=None):
    args = parse_args("2-hidden-layer MLP on 8x8 digits", argv, epochs=15, batch_size=64, lr=1e-3)
    (x_train, y_train), (x_test, y_test) = load_for(args)
    rng = np.random.default_rng(args.seed)
    params = init_params(rng)
    opt = tessel.optim.adam(args.lr)
    state = opt.init(params)

    @tessel.jit(backend=args.backend)
    def train_step(params, state, x, y_onehot):
        loss, grads = tessel.value_and_grad(loss_fn)(params, x, y_onehot)
        params, state = opt.update(grads, state, params)
        return params, state, loss

    @tessel.jit(backend=args.backend)
    def accuracy(params, x, labels):
        return tnp.mean(tnp.argmax(logits(params, x), axis=1) == labels)

    def step(x, y):
        nonlocal params, state
        params, state, loss = train_step(params, state, x, one_hot(y))
        return loss

    progress = Progress()
    for epoch in range(1, args.epochs + 1):
        loss, examples, seconds = progress.timed_epoch(step, batches(x_train, y_train, args.batch_size, rng))
        progress.epoch(epoch, args.epochs, loss, float(accuracy(params, x_train, y_train)),
                       float(accuracy(params, x_test, y_test)), examples, seconds)
    progress.summary(f"MLP {'-'.join(map(str, SIZES))}, relu, Adam {args.lr:g}")
    return progress


if __name__ == "__main__":
    main()

"""Softmax regression, the classic first example: y = softmax(x W + b), cross-entropy,
gradient descent with learning rate 0.01, on 8x8 digits.

    python samples/mnist_softmax.py [--backend cpu|interpreter] [--epochs 20]

The training step (forward, tessel.grad, the SGD update) is one jitted program. As in
the original tutorial the loss is the cross-entropy summed over the batch of 100.
"""
import numpy as np

import tessel
import tessel.numpy as tnp

from common import Progress, batches, load_for, one_hot, parse_args


def logits(params, x):
    return x @ params["w"] + params["b"]


def loss_fn(params, x, y_onehot):
    return -tnp.sum(y_onehot * tessel.nn.log_softmax(logits(params, x), axis=1))


def main(argv=None):
    args = parse_args("softmax regression on 8x8 digits", argv, epochs=20, batch_size=100, lr=0.01)
    (x_train, y_train), (x_test, y_test) = load_for(args)
    params = {"w": np.zeros((64, 10), np.float32), "b": np.zeros(10, np.float32)}
    opt = tessel.optim.sgd(args.lr)
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
        return loss * (1.0 / len(x))          # report the mean over examples

    rng = np.random.default_rng(args.seed)
    progress = Progress()
    for epoch in range(1, args.epochs + 1):
        loss, examples, seconds = progress.timed_epoch(step, batches(x_train, y_train, args.batch_size, rng))
        progress.epoch(epoch, args.epochs, loss, float(accuracy(params, x_train, y_train)),
                       float(accuracy(params, x_test, y_test)), examples, seconds)
    progress.summary("softmax regression, SGD 0.01")
    return progress


if __name__ == "__main__":
    main()

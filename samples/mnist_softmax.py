"""Softmax regression, the classic first example: y = softmax(x W + b), cross-entropy,
gradient descent with learning rate 0.01, on 8x8 digits.

    python samples/mnist_softmax.py [--backend cpu|interpreter|systolic] [--epochs 20] [--steps N]

The training step (forward, tessel.grad, the SGD update) is one jitted program. As in
the original tutorial the loss is the cross-entropy summed over the batch of 100.
"""
import numpy as np

import tessel
import tessel.numpy as tnp

from common import fit_classifier, load_for, parse_args


def logits(params, x):
    return x @ params["w"] + params["b"]


def loss_fn(params, x, y_onehot):
    return -tnp.sum(y_onehot * tessel.nn.log_softmax(logits(params, x), axis=1))


def main(argv=None):
    args = parse_args("softmax regression on 8x8 digits", argv, epochs=20, batch_size=100, lr=0.01,
                      systolic={"epochs": 5, "train_examples": 600})
    train, test = load_for(args)
    params = {"w": np.zeros((64, 10), np.float32), "b": np.zeros(10, np.float32)}
    opt = tessel.optim.sgd(args.lr)

    # The loss is summed over the batch, as in the tutorial; the progress lines show its mean.
    progress, _ = fit_classifier(args, logits, loss_fn, opt, params, train, test, loss_scale=1.0 / args.batch_size)
    progress.summary("softmax regression, SGD 0.01")
    return progress


if __name__ == "__main__":
    main()

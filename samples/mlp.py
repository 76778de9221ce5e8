"""A multi-layer perceptron: 64 -> 128 -> 128 -> 10 with relu, softmax cross-entropy,
trained with Adam on 8x8 digits.

    python samples/mlp.py [--backend cpu|interpreter|systolic] [--epochs 15] [--steps N]

One jitted program per training step: forward, tessel.value_and_grad, Adam update.
"""
import numpy as np

import tessel
import tessel.numpy as tnp

from common import fit_classifier, load_for, parse_args

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
    args = parse_args("2-hidden-layer MLP on 8x8 digits", argv, epochs=15, batch_size=64, lr=1e-3,
                      systolic={"epochs": 5, "train_examples": 640})
    train, test = load_for(args)
    params = init_params(np.random.default_rng(args.seed))
    opt = tessel.optim.adam(args.lr)

    progress, _ = fit_classifier(args, logits, loss_fn, opt, params, train, test)
    progress.summary(f"MLP {'-'.join(map(str, SIZES))}, relu, Adam {args.lr:g}")
    return progress


if __name__ == "__main__":
    main()

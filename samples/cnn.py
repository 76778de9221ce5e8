"""A small convolutional network on 8x8 digits (NHWC): conv 3x3 -> relu -> max-pool 2x2
-> conv 3x3 -> relu -> max-pool 2x2 -> dense -> softmax cross-entropy, trained with Adam.

    python samples/cnn.py [--backend cpu|interpreter|systolic] [--epochs 8] [--steps N]

One jitted program per training step: forward, tessel.value_and_grad (the convolutions'
gradients are convolutions, the max-pools' are select_and_scatter), Adam update.
"""
import numpy as np

import tessel
import tessel.numpy as tnp

from common import fit_classifier, load_for, parse_args

CONV = ("NHWC", "HWIO", "NHWC")


def init_params(rng, channels=(1, 16, 32), classes=10, image=8):
    def he(*shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    c0, c1, c2 = channels
    flat = (image // 4) ** 2 * c2
    return {"conv1": he(3, 3, c0, c1, fan_in=9 * c0), "b1": np.zeros(c1, np.float32),
            "conv2": he(3, 3, c1, c2, fan_in=9 * c1), "b2": np.zeros(c2, np.float32),
            "dense": he(flat, classes, fan_in=flat), "b3": np.zeros(classes, np.float32)}


def conv_relu_pool(x, kernel, bias):
    y = tessel.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=CONV)
    return tessel.nn.max_pool(tnp.maximum(y + bias, 0.0), (2, 2), strides=(2, 2))


def logits(params, x):
    h = conv_relu_pool(x.reshape(x.shape[0], 8, 8, 1), params["conv1"], params["b1"])
    h = conv_relu_pool(h, params["conv2"], params["b2"])
    return h.reshape(h.shape[0], -1) @ params["dense"] + params["b3"]


def loss_fn(params, x, y_onehot):
    return -tnp.mean(tnp.sum(y_onehot * tessel.nn.log_softmax(logits(params, x), axis=1), axis=1))


def main(argv=None):
    args = parse_args("a small CNN on 8x8 digits", argv, epochs=8, batch_size=64, lr=3e-3,
                      systolic={"epochs": 4, "train_examples": 384, "batch_size": 32})
    train, test = load_for(args)
    params = init_params(np.random.default_rng(args.seed))
    opt = tessel.optim.adam(args.lr)

    progress, _ = fit_classifier(args, logits, loss_fn, opt, params, train, test)
    progress.summary(f"CNN conv16-pool-conv32-pool-dense, Adam {args.lr:g}")
    return progress


if __name__ == "__main__":
    main()

"""A character-level LSTM trained on its own source code, then asked to write some.

    python samples/lstm_chars.py [--backend cpu|interpreter|systolic] [--epochs 12] [--steps 25]

Each training step takes a batch of random windows of the text: characters are one-hot
encoded, the LSTM cell steps over time with lax.scan, a dense layer predicts the next
character, and the loss is the mean cross-entropy. Forward, tessel.value_and_grad (the
scan's gradient is a reversed loop) and the Adam update are one jitted program. At the
end the model continues a prompt greedily (always the most likely next character).
"""
import functools
import os

import numpy as np

import tessel
import tessel.numpy as tnp

from common import Vocabulary, bundled_text, fit_sequences, hit_rate, jit_for, parse_args, windows


def init_params(rng, vocab: int, hidden: int):
    def normal(*shape, fan_in):
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    bias = np.zeros(4 * hidden, np.float32)
    bias[hidden:2 * hidden] = 1.0              # forget gate starts open: gradients flow back in time
    return {"wx": normal(vocab, 4 * hidden, fan_in=vocab), "wh": normal(hidden, 4 * hidden, fan_in=hidden),
            "b": bias, "wy": normal(hidden, vocab, fan_in=hidden), "by": np.zeros(vocab, np.float32)}


def lstm_cell(params, h, c, x_projection):
    """One step; x_projection = x @ wx for this step's input (computed for all steps at once)."""
    z = x_projection + h @ params["wh"] + params["b"]
    i, f, g, o = tnp.split(z, 4, axis=-1)
    c = tessel.nn.sigmoid(f) * c + tessel.nn.sigmoid(i) * tnp.tanh(g)
    h = tessel.nn.sigmoid(o) * tnp.tanh(c)
    return h, c


def sequence_logits(params, tokens):
    """tokens s32[batch, time] -> logits f32[time, batch, vocab]."""
    vocab, hidden = params["wx"].shape[0], params["wh"].shape[0]
    batch = tokens.shape[0]
    x = tessel.nn.one_hot(tnp.transpose(tokens), vocab)            # [time, batch, vocab]
    projections = x @ params["wx"]

    def step(carry, x_projection):
        h, c = lstm_cell(params, *carry, x_projection)
        return (h, c), h

    zeros = tnp.zeros((batch, hidden), dtype=np.float32)
    _, hs = tessel.lax.scan(step, (zeros, zeros), projections)
    return hs @ params["wy"] + params["by"]


def loss_fn(params, inputs, targets):
    """Mean next-character cross-entropy; the greedy next-character accuracy rides along."""
    logits = sequence_logits(params, inputs)
    target = tessel.nn.one_hot(tnp.transpose(targets), logits.shape[-1])
    loss = -tnp.mean(tnp.sum(target * tessel.nn.log_softmax(logits, axis=-1), axis=-1))
    return loss, hit_rate(logits, target)


def generate(params, vocab: Vocabulary, prompt: str, length: int, args) -> str:
    """Run the prompt through the cell, then append `length` greedy characters."""
    @functools.partial(jit_for, args)
    def next_state(params, h, c, token):
        x_projection = tessel.nn.one_hot(token, len(vocab)) @ params["wx"]
        h, c = lstm_cell(params, h, c, x_projection)
        return h, c, tnp.argmax(h @ params["wy"] + params["by"], axis=-1)

    hidden = params["wh"].shape[0]
    h = c = np.zeros((1, hidden), np.float32)
    out = []
    for token in vocab.encode(prompt):
        h, c, predicted = next_state(params, h, c, np.array([token], np.int32))
    for _ in range(length):
        out.append(int(np.asarray(predicted)[0]))
        h, c, predicted = next_state(params, h, c, np.asarray(predicted, np.int32))
    return prompt + vocab.decode(out)


def extra_flags(parser):
    parser.add_argument("--seq-len", type=int, default=32, help="characters per training window")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM state size")
    parser.add_argument("--generate", type=int, default=160, help="characters to generate at the end")


def main(argv=None):
    args = parse_args("a character LSTM trained on its own source", argv, epochs=12, batch_size=32,
                      lr=1e-2, extra=extra_flags, steps=25,
                      systolic={"epochs": 3, "steps": 5, "seq_len": 12, "hidden": 32, "batch_size": 16,
                                "generate": 24})
    text = bundled_text(__file__)
    vocab = Vocabulary(text)
    ids = vocab.encode(text)
    print(f"data: {os.path.basename(__file__)}, {len(text)} characters, {len(vocab)} distinct; "
          f"backend {args.backend}")
    rng = np.random.default_rng(args.seed)
    params = init_params(rng, len(vocab), args.hidden)
    opt = tessel.optim.adam(args.lr)

    progress, params = fit_sequences(args, loss_fn, opt, params,
                                     lambda: windows(ids, args.batch_size, args.seq_len, rng), args.seq_len)
    if args.generate:
        print("greedy sample:\n" + generate(params, vocab, "def ", args.generate, args))
    progress.summary(f"char LSTM, hidden {args.hidden}, windows of {args.seq_len}, Adam {args.lr:g}")
    return progress


if __name__ == "__main__":
    main()

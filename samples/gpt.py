"""A small GPT-2-style language model trained on its own source code, characters as tokens.

    python samples/gpt.py [--backend cpu|interpreter|systolic] [--epochs 10] [--steps 20]

The model: token and position embeddings, pre-norm transformer blocks (layer norm,
causal multi-head self-attention, layer norm, GELU MLP, residuals), a final layer norm
and the output projection tied to the token embedding. Each iteration is one training
step: forward, mean next-character cross-entropy, tessel.value_and_grad and the Adam
update, jitted as one program. At the end the model continues a prompt greedily.
"""
import functools

import numpy as np

import tessel
import tessel.numpy as tnp

from common import Vocabulary, bundled_text, fit_sequences, hit_rate, jit_for, parse_args, windows


def init_params(rng, vocab: int, context: int, width: int, layers: int):
    def normal(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def zeros(*shape):
        return np.zeros(shape, np.float32)

    def norm():
        return {"gamma": np.ones(width, np.float32), "beta": zeros(width)}

    def block():
        residual_scale = 0.02 / np.sqrt(2 * layers)       # GPT-2's scaled init of residual outputs
        return {"ln1": norm(), "ln2": norm(),
                "qkv": {"w": normal(width, 3 * width), "b": zeros(3 * width)},
                "out": {"w": normal(width, width, scale=residual_scale), "b": zeros(width)},
                "fc": {"w": normal(width, 4 * width), "b": zeros(4 * width)},
                "proj": {"w": normal(4 * width, width, scale=residual_scale), "b": zeros(width)}}

    return {"wte": normal(vocab, width), "wpe": normal(context, width, scale=0.01),
            "blocks": [block() for _ in range(layers)], "ln_f": norm()}


def dense(x, layer):
    return x @ layer["w"] + layer["b"]


def layer_norm(x, norm):
    return tessel.nn.layer_norm(x, norm["gamma"], norm["beta"])


def causal_self_attention(x, block, heads: int):
    """x f32[batch, time, width]: each position attends to itself and earlier ones."""
    batch, time, width = x.shape
    q, k, v = (part.reshape(batch, time, heads, width // heads)
               for part in tnp.split(dense(x, block["qkv"]), 3, axis=-1))
    scores = tnp.einsum("bqhd,bkhd->bhqk", q, k) * float(1.0 / np.sqrt(width // heads))   # a weak float: stays f32
    later = np.triu(np.ones((time, time), bool), k=1)                # key after query: masked
    scores = tnp.where(later, -1e9, scores)
    mixed = tnp.einsum("bhqk,bkhd->bqhd", tessel.nn.softmax(scores, axis=-1), v)
    return dense(mixed.reshape(batch, time, width), block["out"])


def logits(params, tokens, heads: int):
    """tokens s32[batch, time] -> f32[batch, time, vocab]."""
    time = tokens.shape[1]
    x = params["wte"][tokens] + params["wpe"][:time]
    for block in params["blocks"]:
        x = x + causal_self_attention(layer_norm(x, block["ln1"]), block, heads)
        x = x + dense(tessel.nn.gelu(dense(layer_norm(x, block["ln2"]), block["fc"])), block["proj"])
    return layer_norm(x, params["ln_f"]) @ params["wte"].T


def loss_fn(params, inputs, targets, heads: int):
    """Mean next-character cross-entropy; the greedy next-character accuracy rides along."""
    out = logits(params, inputs, heads)
    target = tessel.nn.one_hot(targets, out.shape[-1])
    loss = -tnp.mean(tnp.sum(target * tessel.nn.log_softmax(out, axis=-1), axis=-1))
    return loss, hit_rate(out, target)


def generate(params, vocab: Vocabulary, prompt: str, length: int, context: int, heads: int, args) -> str:
    """Greedy continuation. One compiled shape: the last `context` tokens, right-padded
    (causal attention keeps the padding from reaching the position that is read)."""
    @functools.partial(jit_for, args)
    def next_token_logits(params, window):
        return logits(params, window, heads)[0]

    ids = list(vocab.encode(prompt))
    for _ in range(length):
        recent = ids[-context:]
        window = np.zeros((1, context), np.int32)
        window[0, :len(recent)] = recent
        ids.append(int(np.argmax(np.asarray(next_token_logits(params, window))[len(recent) - 1])))
    return vocab.decode(ids)


def extra_flags(parser):
    parser.add_argument("--context", type=int, default=32, help="characters the model sees")
    parser.add_argument("--width", type=int, default=64, help="embedding width")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks")
    parser.add_argument("--generate", type=int, default=160, help="characters to generate at the end")


def main(argv=None):
    args = parse_args("a small GPT-2-style model trained on its own source", argv, epochs=10,
                      batch_size=16, lr=3e-3, extra=extra_flags, steps=20,
                      systolic={"epochs": 3, "steps": 4, "context": 16, "width": 32, "layers": 1,
                                "batch_size": 8, "lr": 1e-2, "generate": 16})
    if args.width % args.heads:
        raise SystemExit(f"--width {args.width} must be a multiple of --heads {args.heads}")
    text = bundled_text(__file__)
    vocab = Vocabulary(text)
    ids = vocab.encode(text)
    print(f"data: gpt.py, {len(text)} characters, {len(vocab)} distinct; backend {args.backend}")
    rng = np.random.default_rng(args.seed)
    params = init_params(rng, len(vocab), args.context, args.width, args.layers)
    opt = tessel.optim.adam(args.lr)

    progress, params = fit_sequences(args, functools.partial(loss_fn, heads=args.heads), opt, params,
                                     lambda: windows(ids, args.batch_size, args.context, rng), args.context)
    if args.generate:
        print("greedy sample:\n" + generate(params, vocab, "def ", args.generate, args.context, args.heads, args))
    progress.summary(f"GPT {args.layers} layers, width {args.width}, {args.heads} heads, "
                     f"context {args.context}, Adam {args.lr:g}")
    return progress


if __name__ == "__main__":
    main()

"""Models written in plain NumPy, as a user would write them before knowing tessel.

The tests run each one eagerly with NumPy and through @tessel.jit, unmodified.
"""
import numpy as np


# ----------------------------------------------------------------------------- GPT-2 style

def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax(x):
    shifted = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return shifted / np.sum(shifted, axis=-1, keepdims=True)


def layer_norm(x, gamma, beta, eps=1e-5):
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.var(x, axis=-1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def dense(x, w, b):
    return x @ w + b


def causal_self_attention(x, qkv, out, n_heads):
    seq = x.shape[0]
    mask = (1.0 - np.tri(seq, dtype=x.dtype)) * -1e9          # 0 on and below the diagonal
    q, k, v = np.split(dense(x, **qkv), 3, axis=-1)
    heads = []
    for qh, kh, vh in zip(np.split(q, n_heads, axis=-1), np.split(k, n_heads, axis=-1),
                          np.split(v, n_heads, axis=-1)):
        scores = qh @ kh.T / np.sqrt(qh.shape[-1]) + mask
        heads.append(softmax(scores) @ vh)
    return dense(np.hstack(heads), **out)


def transformer_block(x, block, n_heads):
    x = x + causal_self_attention(layer_norm(x, **block["ln1"]), block["qkv"], block["out"], n_heads)
    h = gelu(dense(layer_norm(x, **block["ln2"]), **block["fc"]))
    return x + dense(h, **block["proj"])


def gpt2_logits(params, tokens, n_heads):
    wte, wpe = params["wte"], params["wpe"]
    x = wte[list(tokens)] + wpe[range(len(tokens))]
    for block in params["blocks"]:
        x = transformer_block(x, block, n_heads)
    return layer_norm(x, **params["ln_f"]) @ wte.T             # tied output projection


def gpt2_params(rng, vocab=50, ctx=16, width=32, layers=2, dtype=np.float64):
    def normal(*shape, scale=0.1):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    def ln():
        return {"gamma": (1 + normal(width)).astype(dtype), "beta": normal(width)}

    def blk():
        return {"ln1": ln(), "ln2": ln(),
                "qkv": {"w": normal(width, 3 * width), "b": normal(3 * width)},
                "out": {"w": normal(width, width), "b": normal(width)},
                "fc": {"w": normal(width, 4 * width), "b": normal(4 * width)},
                "proj": {"w": normal(4 * width, width), "b": normal(width)}}

    return {"wte": normal(vocab, width, scale=0.5), "wpe": normal(ctx, width),
            "blocks": [blk() for _ in range(layers)], "ln_f": ln()}


# ----------------------------------------------------------------------------- MLP

def mlp_loss(params, x, labels_onehot):
    h = np.maximum(x @ params["w1"] + params["b1"], 0)
    logits = h @ params["w2"] + params["b2"]
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = -(labels_onehot * log_probs).sum(axis=1).mean()
    accuracy = (log_probs.argmax(axis=1) == labels_onehot.argmax(axis=1)).mean()
    return loss, accuracy


def mlp_params(rng, sizes=(20, 32, 5), dtype=np.float64):
    return {"w1": (rng.standard_normal(sizes[:2]) * 0.3).astype(dtype), "b1": np.zeros(sizes[1], dtype),
            "w2": (rng.standard_normal(sizes[1:]) * 0.3).astype(dtype), "b2": np.zeros(sizes[2], dtype)}


# ----------------------------------------------------------------------------- LSTM

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_run(params, xs, h, c):
    """Step an LSTM cell over the leading axis of xs with a plain Python loop."""
    for t in range(xs.shape[0]):
        z = xs[t] @ params["wx"] + h @ params["wh"] + params["b"]
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    return h, c


def lstm_params(rng, n_in=6, n_hidden=8, dtype=np.float64):
    return {"wx": (rng.standard_normal((n_in, 4 * n_hidden)) * 0.4).astype(dtype),
            "wh": (rng.standard_normal((n_hidden, 4 * n_hidden)) * 0.4).astype(dtype),
            "b": (rng.standard_normal(4 * n_hidden) * 0.1).astype(dtype)}

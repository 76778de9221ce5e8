"""tessel in one page: trace a small MLP, look at its HLO, run it, check it against NumPy.

    python samples/quickstart.py
"""
import numpy as np

import tessel
import tessel.numpy as tnp


@tessel.jit
def predict(params, x):
    hidden = tnp.maximum(x @ params["w1"] + params["b1"], 0.0)
    return tessel.nn.softmax(hidden @ params["w2"] + params["b2"])


def init_params(rng, n_in=8, n_hidden=16, n_out=3):
    return {
        "w1": rng.standard_normal((n_in, n_hidden)).astype(np.float32) * 0.5,
        "b1": np.zeros(n_hidden, np.float32),
        "w2": rng.standard_normal((n_hidden, n_out)).astype(np.float32) * 0.5,
        "b2": np.zeros(n_out, np.float32),
    }


def numpy_predict(params, x):
    hidden = np.maximum(x @ params["w1"] + params["b1"], 0.0)
    logits = hidden @ params["w2"] + params["b2"]
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main():
    rng = np.random.default_rng(0)
    params = init_params(rng)
    x = rng.standard_normal((4, 8)).astype(np.float32)

    lowered = predict.lower(params, x)
    print("== HLO traced from predict() ==")
    print(lowered.as_text())

    probs = predict(params, x)            # traces, compiles, caches, runs
    print("== result ==")
    print(np.array2string(probs, precision=4, suppress_small=True))
    error = float(np.max(np.abs(probs - numpy_predict(params, x))))
    print(f"max |tessel - numpy| = {error:.2e}")
    print(f"rows sum to one: {np.allclose(probs.sum(axis=-1), 1.0, atol=1e-5)}")
    predict(params, x)                    # same signature: runs from the cache
    print(f"compiled signatures cached: {predict.cache_size()}")


if __name__ == "__main__":
    main()

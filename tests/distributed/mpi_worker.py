"""Run by tests/distributed under `mpiexec -n 2`: `python mpi_worker.py SCENARIO`.

    collectives   every collective (jitted on the CPU backend, and eager) against NumPy
    fail          rank 1 raises at step 3 while rank 0 goes on into the next collective
    mismatch      rank 1 brings a different shape to an all_reduce
"""
import sys

import numpy as np

import tessel
import tessel.distributed as dist
import tessel.numpy as tnp


def rank_value(r, shape=(3, 4)):
    return (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) * (r + 1) - r).astype(np.float32)


def collectives():
    r, n = dist.process_index(), dist.process_count()
    everyone = np.stack([rank_value(k) for k in range(n)])
    x = rank_value(r)

    @tessel.jit
    def step(x):
        y = tnp.sin(x) + 1.0          # native work before, between and after the collectives
        s = dist.all_reduce(y, op="sum")
        return (s * 2.0, dist.all_reduce(x, op="mean"), dist.all_reduce(x, op="max"),
                dist.all_reduce(x, op="min"), dist.all_gather(x * 3.0), dist.broadcast(x + 1.0, root=1))

    s, mean, mx, mn, gathered, bcast = step(x)
    ys = np.sin(everyone) + np.float32(1.0)
    np.testing.assert_allclose(s, ys.sum(0) * 2.0, rtol=1e-5)
    np.testing.assert_allclose(mean, everyone.mean(0), rtol=1e-6)
    np.testing.assert_array_equal(mx, everyone.max(0))
    np.testing.assert_array_equal(mn, everyone.min(0))
    np.testing.assert_array_equal(gathered, everyone * 3.0)
    np.testing.assert_array_equal(bcast, everyone[1] + 1.0)
    # eager (the interpreter), integers
    ints = np.arange(5, dtype=np.int32) + 10 * r
    np.testing.assert_array_equal(dist.all_reduce(ints, op="sum"), sum(np.arange(5) + 10 * k for k in range(n)))
    np.testing.assert_array_equal(dist.all_gather(ints), [np.arange(5) + 10 * k for k in range(n)])
    # gradients: d/dx_r of sum(all_reduce(x*x)) summed over ranks is 2 x_r times n
    g = tessel.jit(tessel.grad(lambda x: tnp.sum(dist.all_reduce(x * x, op="sum"))))(x)
    np.testing.assert_allclose(g, 2 * x * n, rtol=1e-6)
    print(f"collectives ok on rank {r} of {n}", flush=True)


def fail():
    r = dist.process_index()
    step = tessel.jit(lambda x: dist.all_reduce(x, op="sum"))
    for k in range(6):
        if r == 1 and k == 3:
            raise ValueError("rank 1 breaks down at step 3")
        step(np.ones(4, np.float32))


def mismatch():
    r = dist.process_index()
    step = tessel.jit(lambda x: dist.all_reduce(x * 2.0, op="sum"))
    step(np.ones((2, 3 + r), np.float32))


if __name__ == "__main__":
    dist.initialize()
    {"collectives": collectives, "fail": fail, "mismatch": mismatch}[sys.argv[1]]()

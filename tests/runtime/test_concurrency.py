"""Concurrency (issue 9): one jitted function called from 8 threads with mixed
signatures computes correctly and compiles each signature exactly once; processes
sharing TESSEL_CACHE_DIR compile, store, load and export the same program at the same
moment and all succeed; a later process hits the cache."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp

THREADS = 8


def model(x, w):
    return tnp.tanh(x @ w) + 1.0


def signatures():
    """Four signatures: two shapes, two dtypes, one a pytree of another structure."""
    rng = np.random.default_rng(0)
    return {
        "f32[4,3]": (rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)),
        "f32[8,3]": (rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)),
        "f64[4,3]": (rng.normal(size=(4, 3)), rng.normal(size=(3, 2))),
        "f32[2,5]": (rng.normal(size=(2, 5)).astype(np.float32), rng.normal(size=(5, 7)).astype(np.float32)),
    }


@pytest.mark.parametrize("backend", ["cpu", "interpreter"])
def test_eight_threads_mixed_signatures_compile_each_once(backend, monkeypatch, capfd, tmp_path):
    monkeypatch.setenv("TESSEL_LOG_COMPILES", "1")
    monkeypatch.setenv("TESSEL_CACHE_DIR", str(tmp_path))
    cases = signatures()
    # The reference: the same programs run one call at a time (bit-exact), checked against NumPy.
    sequential = tessel.jit(model, backend=backend)
    expected = {k: sequential(x, w) for k, (x, w) in cases.items()}
    for k, (x, w) in cases.items():
        np.testing.assert_allclose(expected[k], np.tanh(x @ w) + 1.0, rtol=1e-5 if x.dtype == np.float32 else 1e-12,
                                   atol=1e-6 if x.dtype == np.float32 else 1e-14)
    capfd.readouterr()
    f = tessel.jit(model, backend=backend)
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(index: int):
        try:
            order = list(cases)[index % 4:] + list(cases)[:index % 4]    # each thread its own order
            start.wait()
            for _ in range(3):
                for key in order:
                    x, w = cases[key]
                    out = f(x, w)
                    assert out.dtype == x.dtype and out.shape == expected[key].shape
                    np.testing.assert_array_equal(out, expected[key])
        except BaseException as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert f.trace_count == len(cases) and f.cache_size() == len(cases)
    log = capfd.readouterr().err
    compiles = re.findall(r"^tessel: model: traced in [\d.]+ ms, compiled in [\d.]+ ms \(in-memory cache miss: [^)]*\)$",
                          log, re.M)
    assert len(compiles) == len(cases), log


def test_a_failing_signature_fails_in_every_thread_and_does_not_block_others():
    """A signature whose trace fails is not cached: every caller gets the error, and
    other signatures are not held up by it."""
    f = tessel.jit(lambda x: x @ x)                      # (2, 3) @ (2, 3) cannot multiply
    bad, good = np.ones((2, 3), np.float32), np.ones((3, 3), np.float32)
    outcomes: list = []
    start = threading.Barrier(4)

    def worker(k):
        start.wait()
        try:
            outcomes.append(("ok", f(good if k % 2 else bad).sum()))
        except ValueError as e:
            outcomes.append(("error", str(e)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(kind for kind, _ in outcomes) == ["error", "error", "ok", "ok"]
    assert all("matmul" in v for kind, v in outcomes if kind == "error")
    assert all(v == 27.0 for kind, v in outcomes if kind == "ok")
    assert f.cache_size() == 1


WORKER = textwrap.dedent(r"""
    import json, os, sys, time
    import numpy as np
    import tessel, tessel.numpy as tnp

    def model(x, w):
        return tnp.tanh(x @ w) + 1.0

    # a barrier between the processes: both have imported tessel before either compiles
    here, peers = sys.argv[1], sys.argv[2:]
    open(here, "w").close()
    deadline = time.time() + 120
    while not all(os.path.exists(p) for p in peers) and time.time() < deadline:
        time.sleep(0.01)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    w = np.linspace(0, 2, 6, dtype=np.float32).reshape(3, 2)
    jitted = tessel.jit(model)(x, w)
    path = os.path.join(os.environ["SHARED"], "model.tsl")
    tessel.aot.export(model, x, w, path=path)
    loaded = tessel.aot.load(path)(x, w)
    print(json.dumps({"jit": jitted.tolist(), "aot": loaded.tolist()}))
""")


def _start(tmp_path, cache, name, peers):
    env = {**os.environ, "TESSEL_CACHE_DIR": str(cache), "TESSEL_LOG_COMPILES": "1", "SHARED": str(tmp_path)}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / name), *[str(tmp_path / p) for p in peers]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_processes_sharing_the_cache_compile_and_load_at_once(tmp_path):
    cache = tmp_path / "cache"
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    w = np.linspace(0, 2, 6, dtype=np.float32).reshape(3, 2)
    want = np.tanh(x @ w) + 1.0
    procs = [_start(tmp_path, cache, "a", ["a", "b"]), _start(tmp_path, cache, "b", ["a", "b"])]
    logs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        result = json.loads(out)
        np.testing.assert_allclose(result["jit"], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(result["aot"], result["jit"])
        logs.append(err)
    entries = os.listdir(cache)
    assert entries and all(e.endswith(".tsl") and not e.startswith(".") for e in entries), entries
    assert not [e for e in os.listdir(tmp_path) if e.endswith(".tmp")]

    third = _start(tmp_path, cache, "c", ["c"])
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    np.testing.assert_allclose(json.loads(out)["jit"], want, rtol=1e-5, atol=1e-6)
    assert re.search(r"model: disk cache hit", err), err

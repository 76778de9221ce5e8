"""The systolic backend's compile caches: programs compiled for two machine configs
(TESSEL_SYSTOLIC_CONFIG, using_config) never share an entry, in a jit object's
in-memory cache or on disk; a disk hit runs the same program as a fresh compile."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import tessel
from tessel.backends.systolic import program_cache
from tessel.backends.systolic.executable import using_config
from tessel.runtime.systolic.config import SystolicConfig

X = np.linspace(-1, 1, 40 * 24, dtype=np.float32).reshape(40, 24)
W = np.linspace(-0.5, 0.5, 24 * 20, dtype=np.float32).reshape(24, 20)


def layer(x, w):
    return np.tanh(x @ w)


def runner(jitted, *args):
    """The SystolicExecutable behind a jit's compiled program for `args`."""
    return jitted.lower(*args).compile().executable.backend_runner


def program_of(jitted):
    """The program the jit's most recent in-memory entry runs."""
    return list(jitted._cache.values())[-1].executable.backend_runner.program


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entries(directory):
    return sorted(directory.glob("*.tsl")) if directory.exists() else []


def test_in_memory_cache_keys_include_the_config_from_the_environment(monkeypatch):
    f = tessel.jit(layer, backend="systolic")
    monkeypatch.setenv("TESSEL_SYSTOLIC_CONFIG", "rows=16,cols=16")
    small = f(X, W)
    assert program_of(f).config.rows == 16 and f.trace_count == 1
    monkeypatch.setenv("TESSEL_SYSTOLIC_CONFIG", "rows=32,cols=32")
    bigger = f(X, W)                                        # same shapes, another machine: recompiled
    assert f.trace_count == 2 and f.cache_size() == 2 and program_of(f).config.rows == 32
    monkeypatch.setenv("TESSEL_SYSTOLIC_CONFIG", "rows=16,cols=16")
    np.testing.assert_array_equal(f(X, W), small)           # the first entry again, from the cache
    assert f.trace_count == 2
    np.testing.assert_allclose(small, bigger, rtol=1e-5, atol=1e-6)   # same bf16 numerics, other tiling


def test_in_memory_cache_keys_include_using_config_on_the_fast_path_too():
    f = tessel.jit(layer, backend="systolic")
    f(X, W)
    f(X, W)                                                 # served by the fast path
    assert f.trace_count == 1
    with using_config(SystolicConfig(rows=16, cols=16, dtype="f32")):
        exact = f(X, W)
        assert f.trace_count == 2 and program_of(f).config.dtype == "f32"
        f(X, W)
        assert f.trace_count == 2
    np.testing.assert_allclose(exact, np.tanh(X @ W), rtol=1e-5, atol=1e-6)   # f32 multiplies ran
    assert not np.array_equal(exact, f(X, W))              # back on the default (bf16) machine
    assert f.trace_count == 2


def test_the_compile_log_says_the_config_changed(monkeypatch, capsys):
    monkeypatch.setenv("TESSEL_LOG_COMPILES", "1")
    f = tessel.jit(layer, backend="systolic")
    f(X, W)
    with using_config(SystolicConfig(clock_hz=1e9)):
        f(X, W)
    assert "in-memory cache miss: backend configuration: clock_hz 940000000.0 -> 1000000000.0" \
        in capsys.readouterr().err


def test_disk_cache_entries_are_per_config_and_hits_run_the_same_program(cache_dir):
    first = runner(tessel.jit(layer, backend="systolic"), X, W)
    assert len(entries(cache_dir)) == 1
    again = runner(tessel.jit(layer, backend="systolic"), X, W)      # a new jit object: a disk hit
    assert len(entries(cache_dir)) == 1
    assert again.program.text() == first.program.text() and again.program.origins == first.program.origins
    np.testing.assert_array_equal(again.run([X, W])[0], first.run([X, W])[0])
    for config in (SystolicConfig(rows=32, cols=32), SystolicConfig(clock_hz=2e9)):
        with using_config(config):
            other = runner(tessel.jit(layer, backend="systolic"), X, W)
        assert other.program.config == config
    assert len(entries(cache_dir)) == 3                     # one entry per machine
    with zipfile.ZipFile(entries(cache_dir)[0]) as z:
        meta = json.loads(z.read("meta.json"))
        assert SystolicConfig(**meta["program"]["config"]) in (SystolicConfig(), SystolicConfig(rows=32, cols=32),
                                                               SystolicConfig(clock_hz=2e9))
    assert program_cache.key(first.module, SystolicConfig()) != program_cache.key(first.module,
                                                                                  SystolicConfig(clock_hz=2e9))


def test_a_damaged_disk_entry_is_discarded_and_recompiled(cache_dir):
    first = runner(tessel.jit(layer, backend="systolic"), X, W)
    [entry] = entries(cache_dir)
    entry.write_bytes(entry.read_bytes()[:200])
    with pytest.warns(RuntimeWarning, match="discarding a corrupt compile cache entry"):
        again = runner(tessel.jit(layer, backend="systolic"), X, W)
    assert again.program.text() == first.program.text() and len(entries(cache_dir)) == 1


def test_placed_programs_are_keyed_by_the_config_too():
    """placement='auto' may put parts on the machine whatever the jit's backend."""
    f = tessel.jit(layer, placement="auto")
    f(X, W)
    with using_config(SystolicConfig(rows=16, cols=16)):
        f(X, W)
    assert f.trace_count == 2 and f.cache_size() == 2


def test_a_jit_whose_device_scopes_reach_the_machine_is_keyed_by_the_config():
    def scoped(x, w):
        with tessel.device("systolic"):
            h = x @ w
        return np.tanh(h)

    f = tessel.jit(scoped)                                # backend cpu, a systolic part
    f(X, W)
    f(X, W)
    assert f.trace_count == 1
    with using_config(SystolicConfig(rows=16, cols=16, dtype="f32")):
        exact = f(X, W)
        assert f.trace_count == 2
        f(X, W)
    assert f.trace_count == 2 and f.cache_size() == 2
    np.testing.assert_allclose(exact, np.tanh(X @ W), rtol=1e-5, atol=1e-6)
    assert not np.array_equal(f(X, W), exact) and f.trace_count == 2
    plain = tessel.jit(layer)                             # no systolic part: no config in its keys
    plain(X, W)
    assert plain._context is None


def test_a_jit_whose_scopes_put_everything_on_the_machine_is_keyed_by_the_config():
    def all_on_the_machine(x, w):
        with tessel.device("systolic"):
            return np.tanh(x @ w)

    f = tessel.jit(all_on_the_machine)                    # one device: a plain systolic program
    f(X, W)
    assert f.lower(X, W).compile().backend == "systolic"
    with using_config(SystolicConfig(rows=16, cols=16)):
        f(X, W)
        assert program_of(f).config.rows == 16
    assert f.trace_count == 3 and f.cache_size() == 2     # (lower() traced once more)

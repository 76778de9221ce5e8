"""The persistent compile cache: hits across jit objects and processes, atomic writes
under concurrency, corrupt entries discarded with a warning, keys that follow what
the code depends on, and TESSEL_LOG_COMPILES explaining every miss."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.backends.cpu import executable, llvm_target, program_cache
from tessel.runtime import compile_cache


def layer(x, w):
    return tnp.tanh(x @ w).sum(axis=0) + 1.0


X = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
W = np.linspace(0, 2, 12, dtype=np.float32).reshape(4, 3)
EXPECTED = np.tanh(X @ W).sum(axis=0) + 1.0


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entries(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def native_of(jitted, *args):
    """The native code object behind a jit's compiled program for `args`."""
    run = jitted.lower(*args).compile().executable._run
    return run.__self__.jit


def test_a_new_jit_object_hits_the_disk_cache(cache_dir):
    first = native_of(tessel.jit(layer), X, W)
    assert isinstance(first, llvm_target.JitModule) and first.object is None     # stored, then dropped
    assert len(entries(cache_dir)) == 1 and entries(cache_dir)[0].endswith(".tsl")
    second = native_of(tessel.jit(layer), X, W)
    assert isinstance(second, llvm_target.LoadedObject)          # no codegen, no LLVM
    np.testing.assert_allclose(tessel.jit(layer)(X, W), EXPECTED, rtol=1e-6)


def test_the_key_follows_shapes_target_and_the_code_generator(cache_dir, monkeypatch):
    tessel.jit(layer)(X, W)
    tessel.jit(layer)(X[:3], W)                                   # another shape: another entry
    assert len(entries(cache_dir)) == 2
    monkeypatch.setattr(program_cache, "_fingerprint", "an edited code generator")
    assert isinstance(native_of(tessel.jit(layer), X, W), llvm_target.JitModule)
    assert len(entries(cache_dir)) == 3
    host = llvm_target.host()
    base = program_cache.key("m", host, 2, None)
    assert base != program_cache.key("m", host, 4, None)
    assert base != program_cache.key("m", llvm_target.TargetInfo(host.triple, host.cpu, "+sse2"), 2, None)


def test_constants_are_part_of_the_key_and_source_lines_are_not(cache_dir):
    """Two closures over different weights of one shape (constants the HLO printer
    elides) get different entries; the same code traced from another line shares one."""
    a, b = np.full((8, 3), 0.5, np.float32), np.full((8, 3), -2.0, np.float32)
    x = np.ones((2, 8), np.float32)
    np.testing.assert_allclose(tessel.jit(lambda x: x @ a)(x), x @ a)
    np.testing.assert_allclose(tessel.jit(lambda x: x @ b)(x), x @ b)
    assert len(entries(cache_dir)) == 2
    again = tessel.jit(lambda x: x @ a)          # another line, another lambda: the same program
    assert isinstance(native_of(again, x), llvm_target.LoadedObject)
    np.testing.assert_allclose(again(x), x @ a)


def test_disabled_and_default_locations(monkeypatch, tmp_path):
    monkeypatch.setenv("TESSEL_CACHE_DIR", "off")
    assert compile_cache.default() is None
    monkeypatch.delenv("TESSEL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.directory() == tmp_path / "tessel"      # on by default, under the user cache dir
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.directory() == tmp_path / "home" / ".cache" / "tessel"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_a_corrupt_entry_is_discarded_with_a_warning_and_recompiled(cache_dir, damage):
    tessel.jit(layer)(X, W)
    (entry,) = cache_dir.iterdir()
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[:len(data) // 3])
    elif damage == "garbage":
        entry.write_bytes(b"not a zip at all")
    else:                                   # one byte of the stored object, CRC and all intact
        import zipfile
        with zipfile.ZipFile(entry) as z:
            members = {n: z.read(n) for n in z.namelist()}
        obj = bytearray(members["code/program.o"])
        obj[len(obj) // 2] ^= 0x55
        members["code/program.o"] = bytes(obj)
        with zipfile.ZipFile(entry, "w") as z:
            for n, d in members.items():
                z.writestr(n, d)
    with pytest.warns(RuntimeWarning, match="discarding a corrupt compile cache entry"):
        native = native_of(tessel.jit(layer), X, W)
    assert isinstance(native, llvm_target.JitModule)              # compiled again ...
    np.testing.assert_allclose(tessel.jit(layer)(X, W), EXPECTED, rtol=1e-6)
    assert isinstance(native_of(tessel.jit(layer), X, W), llvm_target.LoadedObject)   # ... and stored again


def test_large_constants_are_embedded_up_to_a_limit(cache_dir, monkeypatch, capsys):
    """JIT code references constant sections over 256 KiB by address; cached code
    embeds them (up to EMBED_CONSTANTS_LIMIT), and above that is not cached."""
    monkeypatch.setenv("TESSEL_LOG_COMPILES", "1")
    big = np.arange(70_000, dtype=np.float32)                     # 280 KB of constants
    np.testing.assert_array_equal(tessel.jit(lambda x: x + big)(np.ones(70_000, np.float32)), big + 1)
    assert len(entries(cache_dir)) == 1
    again = tessel.jit(lambda x: x + big)
    assert isinstance(native_of(again, np.ones(70_000, np.float32)), llvm_target.LoadedObject)
    np.testing.assert_array_equal(again(np.full(70_000, 2, np.float32)), big + 2)
    monkeypatch.setattr(program_cache, "EMBED_CONSTANTS_LIMIT", 100_000)
    np.testing.assert_array_equal(tessel.jit(lambda x: x - big)(np.ones(70_000, np.float32)), 1 - big)
    assert len(entries(cache_dir)) == 1
    assert "not cached: its code holds addresses of this process" in capsys.readouterr().err


def test_log_compiles_explains_every_miss(cache_dir, monkeypatch, capsys):
    monkeypatch.setenv("TESSEL_LOG_COMPILES", "1")

    def scaled(x, w, n):
        return layer(x, w) * n
    f = tessel.jit(scaled, static_argnums=(2,))
    f(X, W, 2)
    f(X[:3], W, 2)
    f(X[:3].astype(np.float64), W, 2)
    f(X[:3].astype(np.float64), W, 3)
    f(X[:3].astype(np.float64), W, 3)                             # in-memory hit: nothing logged
    g = tessel.jit(scaled, static_argnums=(2,))
    g(X, W, 2)                                                    # a new jit object: disk hit
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tessel:")]
    compiles = [line for line in lines if "compiled in" in line]
    assert len(compiles) == 5
    assert "in-memory cache miss: first call" in compiles[0]
    assert "argument x: f32[6, 4] -> f32[3, 4]" in compiles[1]
    assert "argument x: f32[3, 4] -> f64[3, 4]" in compiles[2]
    assert "static argument 2: 2 -> 3" in compiles[3]
    assert [line.split(" disk cache ")[1].split()[0] for line in lines if " disk cache " in line] == \
        ["miss", "miss", "miss", "miss", "hit"]
    assert all(re_ms(line) for line in compiles)


def re_ms(line: str) -> bool:
    import re
    return re.search(r"traced in \d+\.\d ms, compiled in \d+\.\d ms", line) is not None


CHILD = r"""
import numpy as np, tessel, tessel.numpy as tnp
f = tessel.jit(lambda x, w: tnp.tanh(x @ w).sum(axis=0) + 1.0)
x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
w = np.linspace(0, 2, 12, dtype=np.float32).reshape(4, 3)
print(repr(f(x, w).tolist()))
"""


def _start(cache):
    env = {**__import__("os").environ, "TESSEL_CACHE_DIR": str(cache), "TESSEL_LOG_COMPILES": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_processes_share_the_cache_and_compile_at_once(tmp_path, monkeypatch):
    cache = tmp_path / "shared"
    racers = [_start(cache), _start(cache)]                        # two processes, one empty cache
    results = [p.communicate(timeout=300) for p in racers]
    assert all(p.returncode == 0 for p in racers), [err for _, err in results]
    assert results[0][0] == results[1][0]
    np.testing.assert_allclose(eval(results[0][0]), EXPECTED, rtol=1e-6)
    assert any("stored in the disk cache" in err for _, err in results)   # (the other may have hit it)
    assert len(entries(cache)) == 1 and entries(cache)[0].endswith(".tsl")   # no temporaries left
    monkeypatch.setenv("TESSEL_CACHE_DIR", str(cache))            # this process reuses their entry
    later = tessel.jit(lambda x, w: tnp.tanh(x @ w).sum(axis=0) + 1.0)
    assert isinstance(native_of(later, X, W), llvm_target.LoadedObject)
    np.testing.assert_allclose(later(X, W), EXPECTED, rtol=1e-6)


def test_an_entry_whose_plan_is_malformed_is_discarded_with_a_warning_and_recompiled(cache_dir):
    """An intact container whose program plan this code cannot read (a key missing)."""
    import json
    import zipfile
    tessel.jit(layer)(X, W)
    (entry,) = cache_dir.iterdir()
    with zipfile.ZipFile(entry) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(members["meta.json"])
    del meta["program"]["scratch_bytes"]
    members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(entry, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    with pytest.warns(RuntimeWarning, match=r"discarding a malformed compile cache entry \w{12} \(KeyError"):
        native = native_of(tessel.jit(layer), X, W)
    assert isinstance(native, llvm_target.JitModule)              # compiled again ...
    np.testing.assert_allclose(tessel.jit(layer)(X, W), EXPECTED, rtol=1e-6)
    assert isinstance(native_of(tessel.jit(layer), X, W), llvm_target.LoadedObject)   # ... and stored again


@pytest.mark.parametrize("backend", ["cpu", "systolic"])
def test_a_malformed_entry_is_reported_at_the_backends_caller(cache_dir, backend):
    from tessel.backends.systolic import program_cache as systolic_program_cache
    load = {"cpu": program_cache.load, "systolic": systolic_program_cache.load}[backend]
    cache = compile_cache.DiskCache(cache_dir)
    cache.put("ab" * 32, {"program": {"arguments": 3}}, {})
    with pytest.warns(RuntimeWarning, match="discarding a malformed compile cache entry abababababab") as caught:
        assert load(cache, "ab" * 32) is None
    assert [w.filename for w in caught] == [__file__]             # the warning names the caller's line
    assert entries(cache_dir) == []

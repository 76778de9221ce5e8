"""The persistent compile cache's size limit (TESSEL_CACHE_MAX_BYTES): least recently
used entries go first, a hit counts as a use, the limit holds after every write, and
readers in other processes survive entries deleted under them."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.aot import archive
from tessel.backends.cpu import llvm_target
from tessel.runtime import compile_cache
from tessel.runtime.compile_cache import DiskCache


def payload(key: str, size: int = 4000) -> dict[str, bytes]:
    """Incompressible member bytes that name their key (so a read can be checked)."""
    noise = np.random.default_rng(int(key, 16) % 2**32).bytes(size)
    return {"code/program.o": key.encode() + noise}


def key_of(i: int) -> str:
    return f"{i:064x}"


def sizes(root) -> dict[str, int]:
    return {p.stem: p.stat().st_size for p in root.glob("*.tsl")}


def age(cache: DiskCache, key: str, seconds_ago: float) -> None:
    """Set an entry's last use (the order eviction goes by) explicitly."""
    t = time.time() - seconds_ago
    os.utime(cache.path(key), (t, t))


@pytest.fixture
def unlimited(monkeypatch):
    monkeypatch.setenv("TESSEL_CACHE_MAX_BYTES", "unlimited")


def test_least_recently_used_entries_go_first_and_a_hit_is_a_use(tmp_path, unlimited):
    cache = DiskCache(tmp_path)
    for i in range(4):
        cache.put(key_of(i), {}, payload(key_of(i)))
        age(cache, key_of(i), 100 - i)               # written in order 0, 1, 2, 3
    assert cache.get(key_of(0)) is not None           # 0 is now the most recently used
    each = max(sizes(tmp_path).values())
    deleted = cache.evict(2 * each + each // 2)       # room for two entries
    assert sorted(p.stem for p in deleted) == [key_of(1), key_of(2)]
    assert sorted(sizes(tmp_path)) == [key_of(0), key_of(3)]
    meta, members = cache.get(key_of(0))
    assert members == payload(key_of(0))


@pytest.mark.parametrize("limit", ["9000", "20K", "1M"])
def test_the_limit_holds_after_every_write(tmp_path, monkeypatch, limit):
    monkeypatch.setenv("TESSEL_CACHE_MAX_BYTES", limit)
    cap = compile_cache.max_bytes()
    cache = DiskCache(tmp_path)
    for i in range(12):
        cache.put(key_of(i), {}, payload(key_of(i)))
        age(cache, key_of(i), 100 - i)
        held = sizes(tmp_path)
        assert sum(held.values()) <= cap
        assert key_of(i) in held                      # the entry just written stays
        # What stays is the most recent run of writes.
        assert sorted(held) == [key_of(j) for j in range(i - len(held) + 1, i + 1)]
    assert len(sizes(tmp_path)) == min(12, cap // max(sizes(tmp_path).values()))


def test_an_entry_larger_than_the_limit_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_CACHE_MAX_BYTES", "1000")
    cache = DiskCache(tmp_path)
    cache.put(key_of(1), {}, payload(key_of(1)))
    assert sizes(tmp_path) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # a plain miss, not a "corrupt entry"
        assert cache.get(key_of(1)) is None


def test_crashed_writers_temporaries_are_cleaned_up(tmp_path, unlimited):
    cache = DiskCache(tmp_path)
    stale, fresh = tmp_path / ".tsl-crashed.tmp", tmp_path / ".tsl-writing.tmp"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"x" * 100)
    old = time.time() - compile_cache.STALE_TEMPORARY_SECONDS - 10
    os.utime(stale, (old, old))
    cache.put(key_of(1), {}, payload(key_of(1)))
    assert not stale.exists() and fresh.exists()      # a live writer's file is left alone


@pytest.mark.parametrize("value", ["1.5G", "lots", "-3", "12 parsecs"])
def test_a_malformed_limit_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("TESSEL_CACHE_MAX_BYTES", value)
    with pytest.raises(ValueError, match=r"TESSEL_CACHE_MAX_BYTES=.*expected a size in bytes"):
        compile_cache.max_bytes()


def test_limit_parsing(monkeypatch):
    for value, want in [("", compile_cache.DEFAULT_MAX_BYTES), ("123", 123), ("64K", 64 << 10),
                        ("512M", 512 << 20), ("2GiB", 2 << 30), ("unlimited", None)]:
        monkeypatch.setenv("TESSEL_CACHE_MAX_BYTES", value)
        assert compile_cache.max_bytes() == want, value
    monkeypatch.delenv("TESSEL_CACHE_MAX_BYTES")
    assert compile_cache.max_bytes() == 1 << 30


def test_an_entry_deleted_while_it_is_read_still_reads(tmp_path, unlimited, monkeypatch):
    """Another process evicts the entry after this reader opened it: the open file stays
    readable, so the read completes with the right bytes (and the entry is gone)."""
    cache = DiskCache(tmp_path)
    cache.put(key_of(5), {}, payload(key_of(5)))
    verify = archive.Reader.verify

    def evict_then_verify(self, *args, **kwargs):
        assert cache.evict(0) == [cache.path(key_of(5))]
        return verify(self, *args, **kwargs)
    monkeypatch.setattr(archive.Reader, "verify", evict_then_verify)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta, members = cache.get(key_of(5))
    assert members == payload(key_of(5)) and sizes(tmp_path) == {}


def test_an_entry_deleted_before_it_is_opened_is_a_miss(tmp_path, unlimited, monkeypatch):
    """Deleted between the reader's look at the file and its open: a miss, no warning,
    and nothing else discarded."""
    cache = DiskCache(tmp_path)
    cache.put(key_of(6), {}, payload(key_of(6)))
    real_zipfile = archive.zipfile.ZipFile

    def evict_then_open(file, *args, **kwargs):
        if isinstance(file, str) and file.endswith(".tsl"):
            cache.evict(0)
        return real_zipfile(file, *args, **kwargs)
    monkeypatch.setattr(archive.zipfile, "ZipFile", evict_then_open)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(key_of(6)) is None


EVICTER = r"""
import sys
import numpy as np
from tessel.runtime.compile_cache import DiskCache
root, rounds, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cache = DiskCache(root)
for r in range(rounds):
    key = f"{r % keys:064x}"
    noise = np.random.default_rng(int(key, 16) % 2**32).bytes(4000)
    cache.put(key, {}, {"code/program.o": key.encode() + noise})   # evicts to the limit
"""


def test_a_reader_and_an_evicting_writer_in_two_processes(tmp_path, monkeypatch):
    """One process keeps writing entries into a cache that holds only a few (so it keeps
    deleting), while this one keeps reading them: every read is a correct hit or a
    clean miss, never a warning or a wrong payload."""
    monkeypatch.setenv("TESSEL_CACHE_MAX_BYTES", "12K")      # about two entries
    keys = 6
    cache = DiskCache(tmp_path)
    for i in range(keys):
        cache.put(key_of(i), {}, payload(key_of(i)))
    child = subprocess.Popen([sys.executable, "-c", EVICTER, str(tmp_path), "400", str(keys)],
                             stderr=subprocess.PIPE, text=True)
    hits = misses = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        while child.poll() is None or hits + misses < 200:
            i = (hits + misses) % keys
            found = cache.get(key_of(i))
            if found is None:
                misses += 1
            else:
                assert found[1] == payload(key_of(i))
                hits += 1
    assert child.wait(timeout=120) == 0, child.stderr.read()
    assert hits > 0 and misses > 0, (hits, misses)
    assert sum(sizes(tmp_path).values()) <= 12 << 10
    assert not list(tmp_path.glob(".tsl-*.tmp"))


def test_jit_keeps_the_cache_within_the_limit(tmp_path, monkeypatch):
    """End to end: with room for about one program, compiling a second evicts the first,
    which a new jit object then compiles again (and stores, evicting the second)."""
    monkeypatch.setenv("TESSEL_CACHE_DIR", str(tmp_path))

    def layer(x, w):
        return tnp.tanh(x @ w).sum(axis=0)
    x, w = np.ones((6, 4), np.float32), np.ones((4, 3), np.float32)
    tessel.jit(layer)(x, w)
    (first,) = sizes(tmp_path).values()
    monkeypatch.setenv("TESSEL_CACHE_MAX_BYTES", str(first * 3 // 2))
    age(DiskCache(tmp_path), next(iter(sizes(tmp_path))), 10)
    tessel.jit(layer)(x[:3], w)
    assert len(sizes(tmp_path)) == 1
    again = tessel.jit(layer)
    assert isinstance(again.lower(x, w).compile().executable._run.__self__.jit, llvm_target.JitModule)
    np.testing.assert_allclose(again(x, w), np.tanh(x @ w).sum(axis=0), rtol=1e-6)
    assert len(sizes(tmp_path)) == 1

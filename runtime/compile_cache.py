"""The persistent compile cache: compiled programs on disk, shared across processes.

    TESSEL_CACHE_DIR=DIR     where entries live (default: $XDG_CACHE_HOME/tessel, else
                             ~/.cache/tessel); "0", "off" or "" (set but empty) disables it
    TESSEL_CACHE_MAX_BYTES=N the most the entries may take together (default 1 GiB; a
                             K, M or G suffix counts binary units; "unlimited" for none)

An entry is one file `<key>.tsl` in the container of AOT artifacts (aot/archive.py: a
zip whose manifest lists a sha256 per member, read with size caps). The key is a sha256
the backend computes from what the code depends on: the optimized module's text, the
backend, the target (triple, CPU, features), the tessel version and a fingerprint of
the code generator's source files (so an edited code generator never reuses stale code).

Writes are atomic (a temporary file renamed over the entry), so processes compiling the
same program at once all succeed and readers never see half an entry. An entry that
fails any check (truncated, damaged, wrong format) is discarded with a warning and the
program is compiled again.

Size: after each write, the least recently used entries are deleted until the cache
fits TESSEL_CACHE_MAX_BYTES. "Used" is the entry's modification time, which a write
sets and every hit moves to now (atime is not usable: noatime/relatime mounts). Other
processes may be reading an entry that is deleted: a deletion is one unlink, a reader
that opened the file keeps reading it (POSIX), and a reader that finds it gone treats
it as a miss, so the worst a concurrent eviction does is one recompile.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Callable, TypeVar

ENTRY_FORMAT = "tessel-compile-cache"
ENTRY_VERSION = 1
_DISABLED = ("0", "off", "false", "no", "")
DEFAULT_MAX_BYTES = 1 << 30
_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:I?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
# A writer's temporary file this old is a crashed writer's leftover (writes take seconds).
STALE_TEMPORARY_SECONDS = 3600
T = TypeVar("T")


def directory() -> Path | None:
    """The cache directory, or None when the cache is disabled."""
    value = os.environ.get("TESSEL_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in _DISABLED else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tessel"


def default() -> "DiskCache | None":
    where = directory()
    return DiskCache(where) if where is not None else None


def max_bytes() -> int | None:
    """TESSEL_CACHE_MAX_BYTES as bytes (None: unlimited); a clear error if malformed."""
    value = os.environ.get("TESSEL_CACHE_MAX_BYTES", "").strip()
    if not value:
        return DEFAULT_MAX_BYTES
    if value.lower() in ("unlimited", "none", "inf"):
        return None
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"TESSEL_CACHE_MAX_BYTES={value!r}: expected a size in bytes, optionally "
                         f"with a K, M or G suffix (e.g. 536870912 or 512M), or 'unlimited'")
    return int(match[1]) * _UNITS[match[2].upper()]


def source_fingerprint(*packages: str) -> str:
    """sha256 over the .py files of `packages` (directories relative to the tessel root)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def module_text(module) -> str:
    """The module as compiled code depends on it: the HLO text without source locations
    (a function traced from another line compiles to the same code), with the full
    digest of every constant (the printer elides large ones)."""
    from ..compiler import printer
    lines = []
    for comp in printer.computation_order(module):
        lines.append(f"{'ENTRY ' if comp is module.entry else ''}{comp.name}")
        for instr in comp.instructions:
            text = printer.print_instruction(instr, instr is comp.root)
            if instr.locs:
                text = text[:text.rindex("  # ")].rstrip()
            lines.append(text)
            if instr.opcode == "constant":
                lines.append(f"  digest {instr.attrs['value'].digest}")
    return "\n".join(lines)


def make_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class DiskCache:
    """Entries `<key>.tsl` in one directory: `get` -> (meta, members) or None; `load`
    decodes an entry with the backend's reader (backends/*/program_cache.py); `put`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.tsl"

    def get(self, key: str) -> tuple[dict, dict[str, bytes]] | None:
        """The entry's metadata and members, None if there is none. A damaged entry is
        removed with a warning (and None returned: the caller compiles again)."""
        from ..aot import archive
        from ..aot.errors import ArtifactError
        path = self.path(key)
        try:
            with archive.Reader(path) as reader:
                if "meta.json" not in reader.names():
                    raise ArtifactError(f"{path}: no meta.json")
                meta = json.loads(reader.read("meta.json", limit=archive.MAX_MANIFEST_BYTES))
                if not isinstance(meta, dict) or meta.get("format") != ENTRY_FORMAT \
                        or meta.get("format_version") != ENTRY_VERSION or meta.get("key") != key:
                    raise ArtifactError(f"{path}: not a version {ENTRY_VERSION} cache entry for this key")
                members = reader.verify(meta.get("members"), exempt="meta.json")
        except (ArtifactError, ValueError, OSError) as e:
            if _vanished(e):             # no entry, or evicted by another process meanwhile
                return None
            warnings.warn(f"tessel: discarding a corrupt compile cache entry ({e}); compiling again",
                          RuntimeWarning, stacklevel=2)
            self.discard(key)
            return None
        _touch(path)
        return meta, members

    def load(self, key: str, decode: Callable[[dict, dict[str, bytes]], T]) -> T | None:
        """`decode(meta, members)` of the entry, None if there is none. A damaged entry
        (`get`) or one `decode` finds malformed (KeyError, TypeError, ValueError: a layout
        this code does not read) is removed with a warning, and None returned."""
        found = self.get(key)
        if found is None:
            return None
        try:
            return decode(*found)
        except (KeyError, TypeError, ValueError) as e:
            self.discard(key)
            warnings.warn(f"tessel: discarding a malformed compile cache entry {key[:12]} ({e!r})",
                          RuntimeWarning, stacklevel=3)      # the backend's caller
            return None

    def put(self, key: str, meta: dict, members: dict[str, bytes]) -> Path:
        from ..aot import archive
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {**meta, "format": ENTRY_FORMAT, "format_version": ENTRY_VERSION, "key": key,
                "members": {n: {"sha256": archive.sha256(d), "size": len(d)} for n, d in members.items()}}
        path = self.path(key)
        archive.write(path, {"meta.json": json.dumps(meta, sort_keys=True).encode(), **members}, durable=False)
        self.evict(max_bytes(), keep=path)
        return path

    def evict(self, limit: int | None, keep: Path | None = None) -> list[Path]:
        """Delete least recently used entries until they take at most `limit` bytes
        (`keep`, the entry just written, goes last); also crashed writers' temporaries.
        Returns the entries deleted. Safe with other processes reading, writing and
        evicting at once: each deletion is one unlink, and one that lost a race to
        another evicter is skipped."""
        _remove_stale_temporaries(self.root)
        if limit is None:
            return []
        found = _entries(self.root)
        total = sum(size for _, size, _ in found)
        found.sort(key=lambda e: (e[2] == keep, e[0]))     # oldest use first, `keep` last
        deleted = []
        for _, size, path in found:
            if total <= limit:
                break
            if _unlink(path):
                deleted.append(path)
            total -= size            # gone either way (another evicter may have taken it)
        return deleted

    def discard(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass


def _entries(root: Path) -> list[tuple[float, int, Path]]:
    """(last use, size, path) of every entry; entries that vanish meanwhile are skipped."""
    found = []
    for path in root.glob("*.tsl"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        found.append((st.st_mtime, st.st_size, path))
    return found


def _touch(path: Path) -> None:
    """Record a use: the entry's modification time becomes now (its bytes are unchanged)."""
    try:
        os.utime(path)
    except OSError:                  # evicted meanwhile, or a read-only cache: not a use to keep
        pass


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:        # another process evicted or discarded it first
        return False
    except PermissionError:          # open elsewhere on a system that forbids it: keep it
        return False
    return True


def _remove_stale_temporaries(root: Path) -> None:
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    for path in root.glob(".tsl-*.tmp"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass


def _vanished(error: BaseException) -> bool:
    """Whether reading failed because the file is not there (never written, or deleted
    between our look and our open), not because its contents are bad."""
    while error is not None:
        if isinstance(error, FileNotFoundError):
            return True
        error = error.__cause__
    return False

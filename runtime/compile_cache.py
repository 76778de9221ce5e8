"""The persistent compile cache: compiled programs on disk, shared across processes.

    TESSEL_CACHE_DIR=DIR     where entries live (default: $XDG_CACHE_HOME/tessel, else
                             ~/.cache/tessel); "0", "off" or "" (set but empty) disables it

An entry is one file `<key>.tsl` in the container of AOT artifacts (aot/archive.py: a
zip whose manifest lists a sha256 per member, read with size caps). The key is a sha256
the backend computes from what the code depends on: the optimized module's text, the
backend, the target (triple, CPU, features), the tessel version and a fingerprint of
the code generator's source files (so an edited code generator never reuses stale code).

Writes are atomic (a temporary file renamed over the entry), so processes compiling the
same program at once all succeed and readers never see half an entry. An entry that
fails any check (truncated, damaged, wrong format) is discarded with a warning and the
program is compiled again.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

ENTRY_FORMAT = "tessel-compile-cache"
ENTRY_VERSION = 1
_DISABLED = ("0", "off", "false", "no", "")


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
    """Entries `<key>.tsl` in one directory: `get` -> (meta, members) or None; `put`."""

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
        if not path.exists():
            return None
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
            warnings.warn(f"tessel: discarding a corrupt compile cache entry ({e}); compiling again",
                          RuntimeWarning, stacklevel=2)
            self.discard(key)
            return None
        return meta, members

    def put(self, key: str, meta: dict, members: dict[str, bytes]) -> Path:
        from ..aot import archive
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {**meta, "format": ENTRY_FORMAT, "format_version": ENTRY_VERSION, "key": key,
                "members": {n: {"sha256": archive.sha256(d), "size": len(d)} for n, d in members.items()}}
        path = self.path(key)
        archive.write(path, {"meta.json": json.dumps(meta, sort_keys=True).encode(), **members}, durable=False)
        return path

    def discard(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass

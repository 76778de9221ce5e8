"""The .tsl container: a zip read defensively, written atomically.

Reading trusts nothing: the file must be a zip, member names must be plain relative
paths (no `..`, no absolute or drive paths, no backslashes, no duplicates, no
directories, no encryption), the uncompressed sizes the zip declares are capped before
anything is inflated, and inflating stops at the declared size (a member that inflates
to more is refused). Nothing is ever extracted to disk.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
import zlib

from .errors import ArtifactFormatError, ArtifactIntegrityError, ArtifactLimitError

ZIP_MAGIC = b"PK\x03\x04"
MAX_MEMBERS = 4096
MAX_TOTAL_BYTES = 8 << 30          # uncompressed, all members together
MAX_MANIFEST_BYTES = 16 << 20
_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path, members: dict[str, bytes], durable: bool = True) -> None:
    """Write `members` as a zip at `path` atomically (a temporary file in the same
    directory, then a rename: readers see the old file or the new one, never half).
    `durable` also syncs the data to disk before the rename (artifacts; a cache,
    which detects damaged entries anyway, skips it)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):     # else mkstemp names its temporary file, not `path`
        raise FileNotFoundError(f"cannot write {path}: the directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".tsl-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for name, data in members.items():
                    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible bytes
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    z.writestr(info, data)
            os.chmod(tmp, 0o644)            # mkstemp's 0600 would hide artifacts from other users
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Reader:
    """The members of an artifact file, read with the checks of the module docstring."""

    def __init__(self, path, max_total_bytes: int = MAX_TOTAL_BYTES):
        self.where = os.fspath(path)
        try:
            with open(self.where, "rb") as f:
                head = f.read(8)
        except OSError as e:
            raise ArtifactFormatError(f"{self.where}: cannot read the artifact: {e}") from e
        if head[:4] != ZIP_MAGIC:
            raise ArtifactFormatError(f"{self.where}: not a tessel artifact (a .tsl file is a zip; "
                                      f"this file starts with {head!r})")
        try:
            self._zip = zipfile.ZipFile(self.where)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as e:
            raise ArtifactIntegrityError(f"{self.where}: the zip is truncated or damaged: {e}") from e
        self._infos = self._check_members(infos, max_total_bytes)

    def _check_members(self, infos, max_total_bytes: int) -> dict:
        if len(infos) > MAX_MEMBERS:
            raise ArtifactLimitError(f"{self.where}: {len(infos)} members, more than the {MAX_MEMBERS} allowed")
        checked: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if len(name) > 255 or not _SAFE_NAME.fullmatch(name) or ".." in name.split("/"):
                raise ArtifactFormatError(f"{self.where}: unsafe member name {name!r} (member names must "
                                          f"be relative paths of [A-Za-z0-9_.+-] parts, without '..')")
            if name in checked:
                raise ArtifactFormatError(f"{self.where}: member {name!r} appears twice")
            if info.flag_bits & 0x1:
                raise ArtifactFormatError(f"{self.where}: member {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ArtifactFormatError(f"{self.where}: member {name!r} uses compression method "
                                          f"{info.compress_type} (only stored and deflated are read)")
            checked[name] = info
        total = sum(i.file_size for i in infos)
        if total > max_total_bytes:
            raise ArtifactLimitError(f"{self.where}: members declare {total} bytes uncompressed, more "
                                     f"than the cap of {max_total_bytes} (max_total_bytes)")
        return checked

    def close(self) -> None:
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def names(self) -> list[str]:
        return list(self._infos)

    def read(self, name: str, limit: int | None = None) -> bytes:
        """A member's bytes, inflated no further than its declared size (and `limit`)."""
        info = self._infos.get(name)
        if info is None:
            raise ArtifactIntegrityError(f"{self.where}: member {name!r} is missing")
        cap = info.file_size if limit is None else min(info.file_size, limit)
        if info.file_size > cap:
            raise ArtifactLimitError(f"{self.where}: member {name!r} declares {info.file_size} bytes, "
                                     f"more than the {cap} allowed for it")
        chunks, size = [], 0
        try:
            with self._zip.open(info) as f:
                while True:
                    chunk = f.read(min(_CHUNK, cap + 1 - size))
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > cap:
                        raise ArtifactLimitError(f"{self.where}: member {name!r} inflates past its "
                                                 f"declared {info.file_size} bytes")
                    chunks.append(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:
            raise ArtifactIntegrityError(f"{self.where}: member {name!r} is damaged: {e}") from e
        return b"".join(chunks)

    def verify(self, members: dict, exempt: str) -> dict[str, bytes]:
        """Every member listed in `members` ({name: {sha256, size}}) present with that
        size and hash, nothing else but `exempt`; returns the members' bytes."""
        if not isinstance(members, dict):
            raise ArtifactFormatError(f"{self.where}: the manifest's member list is malformed")
        present = set(self._infos) - {exempt}
        missing, extra = sorted(set(members) - present), sorted(present - set(members))
        if missing or extra:
            raise ArtifactIntegrityError(f"{self.where}: members differ from the manifest: "
                                         f"missing {missing}, not listed {extra}")
        contents = {}
        for name, expected in members.items():
            if not isinstance(expected, dict) or not isinstance(expected.get("sha256"), str):
                raise ArtifactFormatError(f"{self.where}: manifest entry of {name!r} has no sha256")
            data = self.read(name)
            digest = sha256(data)
            if digest != expected["sha256"] or len(data) != expected.get("size"):
                raise ArtifactIntegrityError(
                    f"{self.where}: member {name!r} was modified or damaged: sha256 {digest[:16]}... "
                    f"({len(data)} bytes), the manifest says {expected['sha256'][:16]}... "
                    f"({expected.get('size')} bytes)")
            contents[name] = data
        return contents

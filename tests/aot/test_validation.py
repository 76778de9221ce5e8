"""Bad artifacts are refused with a specific ArtifactError before any code is loaded:
not a zip, truncated, tampered, wrong version, foreign CPU features, unsafe member
names, zip bombs, unsupported backends."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import tessel
from tessel import aot
from tessel.aot import archive
from tessel.backends.cpu import llvm_target


def small(x, y):
    return np.exp(x) @ y + 1.0


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("valid") / "small.tsl"
    return aot.export(small, tessel.ShapeDtype((3, 4), "float32"), tessel.ShapeDtype((4, 2), "float32"),
                      path=str(path))


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if native code were loaded: refusals happen before that."""
    def refuse(*args, **kwargs):
        raise AssertionError("native code was loaded from an invalid artifact")
    monkeypatch.setattr(llvm_target, "LoadedObject", refuse)


def members_of(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def rewrite(path, out, change=None, manifest_change=None):
    """A copy of the artifact at `out` with member bytes and/or manifest fields changed."""
    members = members_of(path)
    if change:
        change(members)
    if manifest_change:
        manifest = json.loads(members["manifest.json"])
        manifest_change(manifest)
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return str(out)


def test_the_valid_artifact_runs(artifact):
    x, y = np.ones((3, 4), np.float32), np.full((4, 2), 0.5, np.float32)
    np.testing.assert_allclose(aot.load(artifact)(x, y), np.exp(x) @ y + 1, rtol=1e-6)


def test_not_a_zip(tmp_path, nothing_loads):
    path = tmp_path / "model.tsl"
    path.write_bytes(b"\x7fELF this is an object file, not an artifact")
    with pytest.raises(aot.ArtifactFormatError, match="not a tessel artifact.*zip"):
        aot.load(path)
    with pytest.raises(aot.ArtifactFormatError, match="cannot read"):
        aot.load(tmp_path / "missing.tsl")


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated(artifact, tmp_path, nothing_loads, keep):
    data = open(artifact, "rb").read()
    path = tmp_path / "cut.tsl"
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(aot.ArtifactIntegrityError, match="truncated or damaged"):
        aot.load(path)


def test_tampered_member(artifact, tmp_path, nothing_loads):
    def flip(members):
        name = next(n for n in members if n.endswith(".o") and "runtime" not in n)
        code = bytearray(members[name])
        code[len(code) // 2] ^= 0xFF
        members[name] = bytes(code)
    with pytest.raises(aot.ArtifactIntegrityError, match=r"member 'code/small\.o' was modified or damaged"):
        aot.load(rewrite(artifact, tmp_path / "t.tsl", change=flip))


def test_missing_and_unlisted_members(artifact, tmp_path, nothing_loads):
    with pytest.raises(aot.ArtifactIntegrityError, match=r"missing \['hlo/optimized.txt'\]"):
        aot.load(rewrite(artifact, tmp_path / "a.tsl", change=lambda m: m.pop("hlo/optimized.txt")))
    with pytest.raises(aot.ArtifactIntegrityError, match=r"not listed \['code/extra.o'\]"):
        aot.load(rewrite(artifact, tmp_path / "b.tsl", change=lambda m: m.update({"code/extra.o": b"x"})))
    with pytest.raises(aot.ArtifactFormatError, match="no manifest.json"):
        aot.load(rewrite(artifact, tmp_path / "c.tsl", change=lambda m: m.pop("manifest.json")))


def test_wrong_format_version(artifact, tmp_path, nothing_loads):
    path = rewrite(artifact, tmp_path / "v.tsl", manifest_change=lambda m: m.update(format_version=99))
    with pytest.raises(aot.ArtifactVersionError, match="format version 99.*reads versions 1, 2"):
        aot.load(path)
    path = rewrite(artifact, tmp_path / "j.tsl", change=lambda m: m.update({"manifest.json": b"{not json"}))
    with pytest.raises(aot.ArtifactFormatError, match="not valid JSON"):
        aot.load(path)


def test_malformed_signature(artifact, tmp_path, nothing_loads):
    def bad(manifest):
        manifest["signature"]["inputs"][0]["dtype"] = "complex128"
    with pytest.raises(aot.ArtifactFormatError, match="unknown dtype"):
        aot.load(rewrite(artifact, tmp_path / "s.tsl", manifest_change=bad))


def test_wrong_architecture_in_manifest(artifact, tmp_path, nothing_loads):
    def foreign(manifest):
        manifest["target"]["triple"] = "aarch64-unknown-linux-gnu"
    with pytest.raises(aot.ArtifactTargetError, match="built for aarch64-unknown-linux-gnu"):
        aot.load(rewrite(artifact, tmp_path / "arch.tsl", manifest_change=foreign))


@pytest.mark.skipif(llvm_target.arch(llvm_target.host().triple) != "x86_64", reason="x86-64 CPU features")
def test_cpu_features_the_host_lacks(tmp_path, nothing_loads):
    assert "amx-tile" not in llvm_target.required_features(llvm_target.host())
    path = aot.export(small, np.ones((3, 4), np.float32), np.ones((4, 2), np.float32), path=str(tmp_path / "amx.tsl"),
                      cpu="x86-64-v3", features="+avx2,+fma,+amx-tile,+prefer-256-bit")
    manifest = json.loads(members_of(path)["manifest.json"])
    assert manifest["target"]["required_features"] == ["amx-tile", "avx2", "fma"]     # tuning flag ignored
    with pytest.raises(aot.ArtifactTargetError, match="may use amx-tile, which this host's CPU"):
        aot.load(path)


@pytest.mark.parametrize("name", ["../evil.o", "/etc/passwd", "code/../../x", "C:\\x.o", "code\\x.o", "./x"])
def test_unsafe_member_names(artifact, tmp_path, nothing_loads, name):
    path = rewrite(artifact, tmp_path / "p.tsl", change=lambda m: m.update({name: b"payload"}))
    with zipfile.ZipFile(path) as z:
        assert name in z.namelist() or name.lstrip("/") in z.namelist()
    with pytest.raises(aot.ArtifactFormatError, match="unsafe member name"):
        aot.load(path)


def test_zip_bomb_declared_size_over_the_cap(artifact, tmp_path, nothing_loads):
    path = rewrite(artifact, tmp_path / "bomb.tsl", change=lambda m: m.update({"big.bin": bytes(64 << 20)}))
    assert (tmp_path / "bomb.tsl").stat().st_size < 1 << 20
    with pytest.raises(aot.ArtifactLimitError, match="more than the cap of 8388608"):
        aot.load(path, max_total_bytes=8 << 20)


def test_zip_bomb_lying_about_its_size(artifact, tmp_path, nothing_loads):
    """A member whose central directory entry declares 1 KiB but inflates to 16 MiB."""
    members = members_of(artifact)
    manifest = json.loads(members["manifest.json"])
    path = tmp_path / "liar.tsl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    raw = bytearray(path.read_bytes())
    # Rewrite the HLO member's declared uncompressed size (central directory, offset 24).
    name = b"hlo/optimized.txt"
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46:central + 46 + len(name)] != name:
        central = raw.index(b"PK\x01\x02", central + 4)
    true_size = int.from_bytes(raw[central + 24:central + 28], "little")
    assert true_size == manifest["members"]["hlo/optimized.txt"]["size"] > 64
    raw[central + 24:central + 28] = (64).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(aot.ArtifactIntegrityError, match="hlo/optimized.txt"):
        aot.load(path)


def test_unknown_backends_are_refused(artifact, tmp_path, nothing_loads):
    path = rewrite(artifact, tmp_path / "gpu.tsl", manifest_change=lambda m: m.update(backend="gpu"))
    with pytest.raises(aot.ArtifactBackendError, match="unknown backend 'gpu'"):
        aot.load(path)
    with pytest.raises(aot.ArtifactBackendError, match="'interpreter'"):
        aot.save(tessel.jit(small, backend="interpreter").lower(np.ones((3, 4), np.float32),
                                                                np.ones((4, 2), np.float32)).compile(),
                 str(tmp_path / "i.tsl"))
    with pytest.raises(aot.ArtifactBackendError, match="given backend 'interpreter'"):
        aot.export(small, np.ones((3, 4), np.float32), np.ones((4, 2), np.float32),
                   path=str(tmp_path / "j.tsl"), backend="interpreter")


def test_version_1_artifacts_still_load(artifact, tmp_path):
    """Version 1 differed only in keeping .npy copies of the CPU constants (now listed with
    a sha256 instead): such an artifact still loads and runs."""
    def as_v1(members):
        manifest = json.loads(members["manifest.json"])
        manifest["format_version"] = 1
        members["constants/c.npy"] = b"\x93NUMPY"               # what v1 kept: listed and hashed
        manifest["members"]["constants/c.npy"] = {"sha256": archive.sha256(b"\x93NUMPY"), "size": 6}
        members["manifest.json"] = json.dumps(manifest).encode()
    path = rewrite(artifact, tmp_path / "v1.tsl", change=as_v1)
    x, y = np.ones((3, 4), np.float32), np.full((4, 2), 0.5, np.float32)
    np.testing.assert_allclose(aot.load(path)(x, y), np.exp(x) @ y + 1, rtol=1e-6)


def test_every_refusal_is_an_artifact_error():
    for cls in (aot.ArtifactFormatError, aot.ArtifactVersionError, aot.ArtifactIntegrityError,
                aot.ArtifactLimitError, aot.ArtifactTargetError, aot.ArtifactBackendError):
        assert issubclass(cls, aot.ArtifactError)


def test_writing_is_atomic(artifact, tmp_path, monkeypatch):
    """A failure while writing leaves the previous file intact and no temporary behind."""
    target = tmp_path / "keep.tsl"
    target.write_bytes(open(artifact, "rb").read())
    before = target.read_bytes()

    class Broken:
        def __bytes__(self):
            raise RuntimeError("disk on fire")
    with pytest.raises(TypeError):
        archive.write(target, {"manifest.json": b"{}", "x": Broken()})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tsl"]


@pytest.mark.parametrize("damage", ["garbage", "cut", "shared-object"])
def test_a_malformed_object_with_matching_hashes_never_reaches_llvm(artifact, tmp_path, nothing_loads, damage):
    """Hashes rewritten to match (as a forger would): the object is still checked before
    LLVM reads it, since LLVM's object reader may abort the process."""
    members = members_of(artifact)
    manifest = json.loads(members["manifest.json"])
    name = manifest["files"]["object"]
    obj = members[name]
    bad = {"garbage": b"\x7fELF\x02\x01\x01" + bytes(11) + obj[18:20] + bytes(200),
           "cut": obj[:200],
           "shared-object": obj[:16] + (3).to_bytes(2, "little") + obj[18:]}[damage]
    members[name] = bad
    manifest["members"][name] = {"sha256": archive.sha256(bad), "size": len(bad)}
    members["manifest.json"] = json.dumps(manifest).encode()
    archive.write(tmp_path / "forged.tsl", members)
    with pytest.raises(aot.ArtifactFormatError, match="object member is malformed"):
        aot.load(tmp_path / "forged.tsl")

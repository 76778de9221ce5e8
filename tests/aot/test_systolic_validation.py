"""Bad systolic artifacts are refused with a specific ArtifactError before the simulator
runs anything: not a zip, truncated, wrong version, a tampered program, and -- with the
hashes rewritten to match, as a forger would -- a program that does not decode or fails
validate.py, an assembly text that is not the program, an invalid machine config, a
layout outside the host image or unlike the signature, pickled constants."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import tessel
from tessel import aot
from tessel.aot import archive
from tessel.runtime.systolic import asm, functional, isa


def small(w, x):
    return np.tanh(x @ w) + 1.0


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("sys") / "small.tsl"
    return aot.export(small, tessel.ShapeDtype((16, 8), "float32"), tessel.ShapeDtype((4, 16), "float32"),
                      path=str(path), backend="systolic", config=["rows=8", "cols=8"])


@pytest.fixture
def nothing_runs(monkeypatch):
    """Fail the test if the simulator ran: refusals happen before that."""
    def refuse(*args, **kwargs):
        raise AssertionError("the simulator ran an invalid artifact")
    monkeypatch.setattr(functional, "run", refuse)
    monkeypatch.setattr(functional.Machine, "run", refuse)


def forge(path, out, change=None, manifest_change=None, rehash=True):
    """A copy of the artifact with members and/or manifest fields changed; `rehash`
    rewrites the manifest's sha256/size of every member to match (a forger's copy)."""
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    if change:
        change(members, manifest)
    if manifest_change:
        manifest_change(manifest)
    if rehash:
        manifest["members"] = {n: {"sha256": archive.sha256(d), "size": len(d)} for n, d in members.items()}
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return str(out)


def _program(members, manifest):
    return isa.decode_program(members[manifest["files"]["program"]])


def _set_program(members, manifest, program):
    members[manifest["files"]["program"]] = isa.encode_program(program)
    members[manifest["files"]["assembly"]] = asm.disassemble(program).encode()


def test_the_valid_artifact_runs(artifact):
    w = np.linspace(-1, 1, 128, dtype=np.float32).reshape(16, 8)
    x = np.linspace(0, 1, 64, dtype=np.float32).reshape(4, 16)
    np.testing.assert_allclose(aot.load(artifact)(w, x), np.tanh(x @ w) + 1, atol=2e-2)


def test_not_a_zip_truncated_and_wrong_version(artifact, tmp_path, nothing_runs):
    data = open(artifact, "rb").read()
    (tmp_path / "text.tsl").write_text("ADD v0, v1, v2\n")
    with pytest.raises(aot.ArtifactFormatError, match="not a tessel artifact"):
        aot.load(tmp_path / "text.tsl")
    (tmp_path / "cut.tsl").write_bytes(data[:len(data) // 2])
    with pytest.raises(aot.ArtifactIntegrityError, match="truncated or damaged"):
        aot.load(tmp_path / "cut.tsl")
    path = forge(artifact, tmp_path / "v.tsl", manifest_change=lambda m: m.update(format_version=3))
    with pytest.raises(aot.ArtifactVersionError, match="format version 3"):
        aot.load(path)


def test_tampered_program_member(artifact, tmp_path, nothing_runs):
    def flip(members, manifest):
        name = manifest["files"]["program"]
        code = bytearray(members[name])
        code[5] ^= 0x10
        members[name] = bytes(code)
    path = forge(artifact, tmp_path / "t.tsl", change=flip, rehash=False)
    with pytest.raises(aot.ArtifactIntegrityError, match=r"member 'program/small\.bin' was modified"):
        aot.load(path)


def test_forged_program_that_fails_validation(artifact, tmp_path, nothing_runs):
    """A MATMUL reading UB rows past the unified buffer, hashes and assembly made to match."""
    def past_the_buffer(members, manifest):
        program = _program(members, manifest)
        k = next(i for i, ins in enumerate(program) if ins.name == "MATMUL")
        config = tessel.runtime.systolic.config.SystolicConfig(**manifest["program"]["config"])
        program[k] = program[k].replace(ub=config.ub_rows - 1)
        _set_program(members, manifest, program)
    path = forge(artifact, tmp_path / "v.tsl", change=past_the_buffer)
    with pytest.raises(aot.ArtifactProgramError, match="fails validation"):
        aot.load(path)


def test_forged_program_that_does_not_decode(artifact, tmp_path, nothing_runs):
    def garbage(members, manifest):
        members[manifest["files"]["program"]] = bytes([0xFF] * 16) * manifest["program"]["instructions"]
    with pytest.raises(aot.ArtifactProgramError, match="does not decode"):
        aot.load(forge(artifact, tmp_path / "g.tsl", change=garbage))


def test_assembly_that_is_not_the_program(artifact, tmp_path, nothing_runs):
    def lie(members, manifest):
        name = manifest["files"]["assembly"]
        members[name] = members[name].replace(b"MATMUL", b"MATMUL ", 1)
    with pytest.raises(aot.ArtifactIntegrityError, match="is not the disassembly"):
        aot.load(forge(artifact, tmp_path / "a.tsl", change=lie))


@pytest.mark.parametrize("change, message", [
    ({"rows": 0}, r"SystolicConfig.rows = 0 is not allowed"),
    ({"dtype": "fp8"}, r"SystolicConfig.dtype = 'fp8'"),
    ({"warp_drive": True}, r"warp_drive"),
])
def test_config_that_fails_validation(artifact, tmp_path, nothing_runs, change, message):
    path = forge(artifact, tmp_path / "c.tsl", manifest_change=lambda m: m["program"]["config"].update(change))
    with pytest.raises(aot.ArtifactConfigError, match="machine configuration is invalid.*" + message):
        aot.load(path)


def test_config_valid_but_not_the_programs(artifact, tmp_path, nothing_runs):
    """A smaller unified buffer is a valid machine, but not the one the addresses were planned for."""
    path = forge(artifact, tmp_path / "u.tsl",
                 manifest_change=lambda m: m["program"]["config"].update(ub_bytes=32 * 4))
    with pytest.raises(aot.ArtifactProgramError, match="fails validation"):
        aot.load(path)


def test_layout_outside_the_image_or_unlike_the_signature(artifact, tmp_path, nothing_runs):
    def far(manifest):
        manifest["program"]["outputs"][0]["address"] = manifest["program"]["host_bytes"]
    with pytest.raises(aot.ArtifactProgramError, match=r"program.outputs\[0\].*past the \d+-byte host image"):
        aot.load(forge(artifact, tmp_path / "o.tsl", manifest_change=far))

    def reshaped(manifest):
        manifest["program"]["inputs"][1]["shape"] = [2, 16]
    with pytest.raises(aot.ArtifactFormatError, match="does not match the signature"):
        aot.load(forge(artifact, tmp_path / "s.tsl", manifest_change=reshaped))

    def no_fmt(manifest):
        manifest["program"]["inputs"][0]["fmt"] = "f64"
    with pytest.raises(aot.ArtifactFormatError, match=r"program.inputs\[0\] must be"):
        aot.load(forge(artifact, tmp_path / "f.tsl", manifest_change=no_fmt))


def test_pickled_or_misshapen_constants(artifact, tmp_path, nothing_runs):
    def pickled(members, manifest):
        entry = manifest["program"]["constants"][0]
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        members[entry["file"]] = buffer.getvalue()
    with pytest.raises(aot.ArtifactFormatError, match="is not a .npy array.*pickle"):
        aot.load(forge(artifact, tmp_path / "p.tsl", change=pickled))

    def wrong_dtype(members, manifest):
        entry = manifest["program"]["constants"][0]
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(entry["shape"], np.float64))
        members[entry["file"]] = buffer.getvalue()
    with pytest.raises(aot.ArtifactFormatError, match="holds float64"):
        aot.load(forge(artifact, tmp_path / "d.tsl", change=wrong_dtype))


def test_malformed_origins(artifact, tmp_path, nothing_runs):
    def short(members, manifest):
        members[manifest["files"]["origins"]] = b'["dot.1"]'
    with pytest.raises(aot.ArtifactFormatError, match="one string per instruction"):
        aot.load(forge(artifact, tmp_path / "o.tsl", change=short))


def test_refusals_are_artifact_errors():
    assert issubclass(aot.ArtifactConfigError, aot.ArtifactProgramError)
    assert issubclass(aot.ArtifactProgramError, aot.ArtifactError)

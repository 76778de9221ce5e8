"""Artifacts for other machines: x86-64 baseline, x86-64-v3 and aarch64-linux objects
are emitted with the target's own vector width (never the JIT host's tuning), carry
the right ELF machine, and a foreign one is refused on this host."""
from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

import tessel
from tessel import aot
from tessel.aot import elf
from tessel.backends.cpu import codegen, llvm_target
from tessel.compiler.pipeline import optimize

X86 = "x86_64-unknown-linux-gnu"
ARM = "aarch64-unknown-linux-gnu"
on_x86_linux = pytest.mark.skipif(llvm_target.host().triple.split("-")[0] != "x86_64"
                                  or "linux" not in llvm_target.host().triple, reason="an x86-64 Linux host")


def layer(x, w, b):
    return np.tanh(x @ w + b).sum(axis=1) + np.exp(-x[:, :8] ** 2).mean()


ARGS = (tessel.ShapeDtype((32, 64), "float32"), tessel.ShapeDtype((64, 48), "float32"),
        tessel.ShapeDtype((48,), "float32"))


def values():
    rng = np.random.default_rng(1)
    return (rng.standard_normal((32, 64)).astype(np.float32) * 0.3,
            rng.standard_normal((64, 48)).astype(np.float32) * 0.3, rng.standard_normal(48).astype(np.float32))


def members(path):
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        return manifest, {role: z.read(name) for role, name in manifest["files"].items()}


TARGETS = {"x86-64": (X86, "x86-64"), "x86-64-v3": (X86, "x86-64-v3"), "aarch64": (ARM, "generic")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> artifact path, one export per target for the whole module."""
    root = tmp_path_factory.mktemp("targets")
    return {name: aot.export(layer, *ARGS, path=str(root / f"{name}.tsl"), target=triple, cpu=cpu)
            for name, (triple, cpu) in TARGETS.items()}


@pytest.mark.parametrize("name, machine, vector_bits", [("x86-64", 62, 128), ("x86-64-v3", 62, 256),
                                                        ("aarch64", 183, 128)])
def test_objects_for_named_targets(exported, name, machine, vector_bits):
    triple, cpu = TARGETS[name]
    manifest, files = members(exported[name])
    assert manifest["target"]["triple"] == triple and manifest["target"]["cpu"] == cpu
    assert elf.machine(files["object"]) == machine
    assert elf.machine(files["runtime_object"]) == machine
    assert llvm_target.named_target(triple, cpu).vector_bits == vector_bits
    same_kind = llvm_target.arch(triple) == llvm_target.arch(llvm_target.host().triple)
    assert ("shared_library" in files) == (same_kind and __import__("shutil").which("cc") is not None)


@on_x86_linux
def test_foreign_architecture_is_refused(exported):
    path = exported["aarch64"]
    with pytest.raises(aot.ArtifactTargetError, match=r"built for aarch64-unknown-linux-gnu \(CPU generic\)"):
        aot.load(path)


@on_x86_linux
def test_foreign_object_under_a_host_manifest_is_refused(exported, tmp_path):
    """The object itself is checked too: an aarch64 object in an x86-64 artifact."""
    arm_path, x86_path = exported["aarch64"], exported["x86-64"]
    arm_manifest, arm_files = members(arm_path)
    x86_manifest, _ = members(x86_path)
    with zipfile.ZipFile(x86_path) as z:
        contents = {n: z.read(n) for n in z.namelist()}
    name = x86_manifest["files"]["object"]
    contents[name] = arm_files["object"]
    from tessel.aot import archive
    x86_manifest["members"][name] = {"sha256": archive.sha256(arm_files["object"]), "size": len(arm_files["object"])}
    contents["manifest.json"] = json.dumps(x86_manifest).encode()
    archive.write(tmp_path / "mixed.tsl", contents)
    with pytest.raises(aot.ArtifactTargetError, match="object code is for aarch64"):
        aot.load(tmp_path / "mixed.tsl")


@on_x86_linux
@pytest.mark.parametrize("cpu", ["x86-64", "x86-64-v3"])
def test_portable_x86_artifacts_run_here(exported, cpu):
    path = exported[cpu]
    args = values()
    expected = tessel.jit(layer)(*args)
    np.testing.assert_allclose(aot.load(path)(*args), expected, rtol=2e-5, atol=2e-5)


def _assembly(target):
    module, _ = optimize(tessel.jit(layer).lower(*ARGS).module, "cpu")
    program = codegen.compile_program(module, target=target, self_contained=True)
    return program.ir, llvm_target.emit_assembly(program.ir, target)


@on_x86_linux
def test_vector_width_comes_from_the_target_not_the_host():
    base_ir, base_asm = _assembly(llvm_target.named_target(X86, "x86-64"))
    v3_ir, v3_asm = _assembly(llvm_target.named_target(X86, "x86-64-v3"))
    assert base_ir != v3_ir                       # codegen itself follows the target's width
    assert not re.search(r"%[yz]mm", base_asm)     # SSE only: no AVX, no AVX-512
    assert "%ymm" in v3_asm and "%zmm" not in v3_asm
    host = llvm_target.host()
    if host.has("avx512f"):             # the JIT host's own code does use AVX-512
        assert "%zmm" in _assembly(host)[1]


def test_unknown_cpu_and_triple_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown CPU 'pentium9'.*x86-64-v3"):
        aot.export(layer, *ARGS, path=str(tmp_path / "x.tsl"), target=X86, cpu="pentium9")
    with pytest.raises(ValueError, match="LLVM has no target for triple 'nonsense-unknown-none'"):
        llvm_target.named_target("nonsense-unknown-none", "any", "+x")

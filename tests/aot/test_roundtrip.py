"""Round trips: MLP, CNN and a GPT-2-style block saved as artifacts, loaded in a fresh
process (without the frontend or the compiler passes), and linked into a C program;
every output must equal the JIT's bit for bit (same code generator, same target)."""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import aot_models as am
import tessel
from tessel.runtime import pytree

needs_cc = pytest.mark.skipif(not __import__("shutil").which("cc"), reason="needs a C compiler (cc)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (artifact path, dynamic args, JIT outputs) for every model."""
    root = tmp_path_factory.mktemp("artifacts")
    return {name: am.export_case(name, str(root / f"{name}.tsl")) for name in am.CASES}


FRESH_PROCESS = r"""
import json, os, sys
import numpy as np
import tessel.aot
root = sys.argv[1]
for name in json.loads(sys.argv[2]):
    artifact = tessel.aot.load(os.path.join(root, name + ".tsl"))
    n = len(artifact.signature.in_specs)
    leaves = [np.load(os.path.join(root, f"{name}.in{k}.npy"), allow_pickle=False) for k in range(n)]
    *args, kwargs = tessel.runtime.pytree.unflatten(artifact.signature.in_tree, leaves)
    out, _ = tessel.runtime.pytree.flatten(artifact(*args, **kwargs))
    for k, value in enumerate(out):
        np.save(os.path.join(root, f"{name}.out{k}.npy"), value, allow_pickle=False)
forbidden = sorted(m for m in sys.modules if m.startswith(("tessel.frontend", "tessel.compiler.passes",
                                                          "tessel.compiler.pipeline")))
print(json.dumps(forbidden))
"""


def test_fresh_process_loads_and_matches_the_jit_without_the_compiler(exported, tmp_path):
    for name, (path, dynamic, _) in exported.items():
        os.link(path, tmp_path / f"{name}.tsl")
        leaves, _ = pytree.flatten(tuple(dynamic) + ({},))
        for k, leaf in enumerate(leaves):
            np.save(tmp_path / f"{name}.in{k}.npy", leaf, allow_pickle=False)
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path), json.dumps(list(exported))],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []       # no frontend, no passes
    for name, (_, _, expected) in exported.items():
        want, _ = pytree.flatten(expected)
        assert want
        for k, value in enumerate(want):
            got = np.load(tmp_path / f"{name}.out{k}.npy", allow_pickle=False)
            assert got.dtype == value.dtype and got.shape == value.shape
            np.testing.assert_array_equal(got, value, err_msg=f"{name} output {k}")


def test_loaded_artifact_keeps_pytrees_and_avals(exported):
    path, dynamic, expected = exported["cnn"]
    artifact = tessel.aot.load(path)
    params, images = dynamic
    out = artifact(params, images)
    assert set(out) == {"logits", "features"}
    np.testing.assert_array_equal(out["logits"], expected["logits"])
    in_params, in_images, kwargs = artifact.in_avals
    assert sorted(in_params) == sorted(params) and kwargs == {}
    assert in_images.dims == images.shape and in_images.dtype.name == "f32"
    assert artifact.out_avals["logits"].dims == (2, 5)
    assert "convolution" in artifact.as_text() or "dot_general" in artifact.as_text()


def test_inputs_are_checked_at_call(exported):
    path, (params, images), _ = exported["cnn"]
    artifact = tessel.aot.load(path)
    with pytest.raises(TypeError, match=r"images.*expected f32\[2, 3, 12, 12\], given f32\[2, 3, 12, 11\]"):
        artifact(params, images[..., :11])
    with pytest.raises(TypeError, match=r"expected f32\[2, 3, 12, 12\], given f64"):
        artifact(params, images.astype(np.float64))
    with pytest.raises(TypeError, match=r"missing keys \['w'\]"):
        artifact({k: v for k, v in params.items() if k != "w"}, images)


@needs_cc
@pytest.mark.parametrize("name", list(am.CASES))
def test_c_program_gives_the_same_numbers(exported, tmp_path, name):
    path, dynamic, expected = exported[name]
    leaves, _ = pytree.flatten(tuple(dynamic) + ({},))
    raw = am.run_in_c(path, leaves, str(tmp_path))
    want, _ = pytree.flatten(expected)
    for k, (data, value) in enumerate(zip(raw, want)):
        got = np.frombuffer(data, value.dtype).reshape(value.shape)
        np.testing.assert_array_equal(got, value, err_msg=f"{name} output {k} from C")


@needs_cc
def test_shared_library_runs_through_ctypes(exported, tmp_path):
    path, (params, x), expected = exported["mlp"]
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        library = tmp_path / os.path.basename(manifest["files"]["shared_library"])
        library.write_bytes(z.read(manifest["files"]["shared_library"]))
    lib = ctypes.CDLL(str(library))
    run = getattr(lib, manifest["entry"]["run"])
    run.restype = ctypes.c_int
    leaves, _ = pytree.flatten((params, x, {}))
    leaves = [np.ascontiguousarray(a) for a in leaves]
    out = np.empty(expected.shape, expected.dtype)
    argv = (ctypes.c_void_p * len(leaves))(*[a.ctypes.data for a in leaves])
    resv = (ctypes.c_void_p * 1)(out.ctypes.data)
    assert run(argv, resv) == 0
    np.testing.assert_array_equal(out, expected)


def test_export_traces_for_shape_dtypes_with_statics_and_aliases(tmp_path):
    def f(x, scale, n):
        return {"y": np.tanh(x * scale) * n, "x": x, "k": np.arange(3.0)}   # x and k: aliased outputs

    path = tessel.aot.export(f, tessel.ShapeDtype((4, 5), "float32"), tessel.ShapeDtype((), "float32"), 3,
                             path=str(tmp_path / "f.tsl"), static_argnums=(2,))
    artifact = tessel.aot.load(path)
    assert artifact.manifest["statics"] == [[2, "3"]]
    x = np.linspace(-2, 2, 20, dtype=np.float32).reshape(4, 5)
    out = artifact(x, np.float32(0.5))
    np.testing.assert_allclose(out["y"], np.tanh(x * np.float32(0.5)) * 3, rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["k"], np.arange(3.0))
    assert sorted(c["dtype"] for c in artifact.manifest["constants"]) == ["f32", "f64"]


def test_constants_are_stored_once_in_the_object(tmp_path):
    """The constant's bytes are in the object code (what runs and what C links), and the
    manifest lists its sha256 instead of a second .npy copy."""
    w = np.random.default_rng(1).standard_normal((64, 96)).astype(np.float32)

    def f(x):
        return x @ w

    path = tessel.aot.export(f, tessel.ShapeDtype((4, 64), "float32"), path=str(tmp_path / "w.tsl"))
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
        obj = z.read(manifest["files"]["object"])
    assert not [n for n in names if n.startswith("constants/")]
    assert w.tobytes() in obj and obj.count(w.tobytes()) == 1
    [entry] = [c for c in manifest["constants"] if c["shape"] == [64, 96]]
    assert entry["sha256"] == hashlib.sha256(w.tobytes()).hexdigest() and entry["dtype"] == "f32"
    artifact = tessel.aot.load(path)
    x = np.ones((4, 64), np.float32)
    np.testing.assert_array_equal(artifact(x), tessel.jit(f)(x))
    with pytest.raises(ValueError, match="compiled into the object code"):
        artifact.constants()


def test_bf16_arguments_and_results(tmp_path):
    """bf16 travels as float32 arrays in Python and as 16-bit patterns in native code."""
    def f(x, y):
        return x * 3 + 1, x.astype("float32") * y, x           # the last: an aliased bf16 output

    jitted = tessel.jit(f)
    compiled = jitted.lower(tessel.ShapeDtype((37,), "bf16"), tessel.ShapeDtype((37,), "float32")).compile()
    path = tessel.aot.save(compiled, str(tmp_path / "bf16.tsl"))
    x = tessel.compiler.dtypes.round_to_bf16(np.linspace(-3, 3, 37, dtype=np.float32))
    y = np.linspace(1, 2, 37, dtype=np.float32)
    artifact = tessel.aot.load(path)
    assert [a.dtype.name for a in artifact.out_avals] == ["bf16", "f32", "bf16"]
    for got, want in zip(artifact(x, y), compiled(x, y)):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_keyword_arguments_and_calls_from_several_threads(tmp_path):
    """Dynamic keyword arguments keep their names; threads calling one artifact at
    once each use their own scratch."""
    from concurrent.futures import ThreadPoolExecutor

    def f(x, *, shift):
        return np.tanh(x @ x.T + shift).sum(axis=1)

    xs = [np.random.default_rng(k).standard_normal((40, 24)).astype(np.float32) for k in range(8)]
    shift = np.float32(0.25)
    compiled = tessel.jit(f).lower(xs[0], shift=shift).compile()
    artifact = tessel.aot.load(tessel.aot.save(compiled, str(tmp_path / "kw.tsl")))
    assert artifact.in_avals[-1]["shift"].dims == ()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: artifact(x, shift=shift), xs * 4))
    for x, value in zip(xs * 4, got):
        np.testing.assert_array_equal(value, compiled(x, shift=shift))
    with pytest.raises(TypeError, match="missing keys \\['shift'\\]"):
        artifact(xs[0])

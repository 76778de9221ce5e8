"""The manifest of a .tsl artifact: what the program is, what it needs, what it holds.

`manifest.json`, format version 2 (every field is checked on load, see `check`):

    format            "tessel-artifact"
    format_version    2 (version 1 artifacts, which also held the CPU constants as .npy
                      copies, still load)
    tessel_version    the version that wrote it (informational)
    name              the function's name; symbol_prefix: its C identifier
    backend           "cpu" or "systolic"
    signature         {in_tree, inputs: [{path, dtype, shape, weak}], out_tree,
                       outputs: [{dtype, shape}]}; trees as {"kind", "children", "keys"}
    statics           [[name or position, repr]]: static arguments baked into the program
    files             role -> member
    members           member -> {sha256, size}: every member but the manifest itself

cpu:
    target            {triple, cpu, features, required_features}: what the code was built
                      for; required_features are the ISA features it may use
    entry             {run, run_with_scratch, scratch_size, scratch_bytes}: symbols
    files             object, runtime_object, header, hlo (+ shared_library)
    constants         [{name, dtype, shape, sha256}]: the constants compiled into the object

systolic (aot/systolic.py):
    program           {config: SystolicConfig fields, host_bytes, instructions (count),
                       inputs, outputs, constants: [{name, fmt, shape, address} (+ file)]}
    files             program (binary), assembly (text), hlo

Trees and avals are plain JSON (no pickle anywhere): dict keys may be strings,
integers, floats, booleans or null, which JSON arrays keep apart.
"""
from __future__ import annotations

import json
from typing import Any

from ..compiler import dtypes
from ..compiler.ir import Shape
from ..runtime import pytree
from ..runtime.executable import ArgSpec, Signature
from .errors import ArtifactFormatError, ArtifactVersionError

FORMAT = "tessel-artifact"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
BACKENDS = ("cpu", "systolic")
_TREE_KINDS = ("leaf", "none", "tuple", "list", "dict")
_KEY_TYPES = (str, int, float, bool, type(None))


# ----------------------------------------------------------------------------- writing

def tree_to_json(tree: pytree.TreeDef) -> dict:
    out: dict[str, Any] = {"kind": tree.kind}
    if tree.children:
        out["children"] = [tree_to_json(c) for c in tree.children]
    if tree.kind == "dict":
        bad = [k for k in tree.keys if not isinstance(k, _KEY_TYPES)]
        if bad:
            raise TypeError(f"an artifact's pytrees need dict keys that are str, int, float, bool "
                            f"or None; given key {bad[0]!r} of type {type(bad[0]).__name__}")
        out["keys"] = list(tree.keys)
    return out


def aval_to_json(aval: Shape) -> dict:
    return {"dtype": aval.dtype.name, "shape": list(aval.dims)}


def signature_to_json(signature: Signature) -> dict:
    return {"in_tree": tree_to_json(signature.in_tree),
            "inputs": [{"path": s.path, **aval_to_json(s.aval), "weak": s.weak} for s in signature.in_specs],
            "out_tree": tree_to_json(signature.out_tree),
            "outputs": [aval_to_json(a) for a in signature.out_avals_flat]}


def dumps(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False).encode()


# ----------------------------------------------------------------------------- reading

def loads(data: bytes, where: str) -> dict:
    """The manifest's JSON after the format and version checks (ArtifactFormatError,
    ArtifactVersionError naming `where`)."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactFormatError(f"{where}: {MANIFEST} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactFormatError(f"{where}: {MANIFEST} does not describe a tessel artifact "
                                  f"(expected format {FORMAT!r})")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ArtifactVersionError(f"{where}: artifact format version {version!r} (written by tessel "
                                   f"{manifest.get('tessel_version', '?')}); this tessel reads "
                                   f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    return manifest


def field(manifest: dict, path: str, kind: type | tuple, where: str):
    """manifest["a"]["b"] for path "a.b", checked to be of `kind`."""
    value: Any = manifest
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ArtifactFormatError(f"{where}: {MANIFEST} has no field {path!r}")
        value = value[part]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ArtifactFormatError(f"{where}: {MANIFEST} field {path!r} must be "
                                  f"{getattr(kind, '__name__', kind)}, found {type(value).__name__}")
    return value


def tree_from_json(data, where: str, depth: int = 0) -> pytree.TreeDef:
    if depth > 100 or not isinstance(data, dict) or data.get("kind") not in _TREE_KINDS:
        raise ArtifactFormatError(f"{where}: malformed pytree structure in {MANIFEST}: {str(data):.80}")
    children = data.get("children", [])
    keys = data.get("keys", [])
    if not isinstance(children, list) or not isinstance(keys, list) \
            or (data["kind"] == "dict" and len(keys) != len(children)) \
            or any(not isinstance(k, _KEY_TYPES) for k in keys):
        raise ArtifactFormatError(f"{where}: malformed pytree node in {MANIFEST}: {str(data):.80}")
    return pytree.TreeDef(data["kind"], tuple(tree_from_json(c, where, depth + 1) for c in children),
                          tuple(keys) if data["kind"] == "dict" else ())


def aval_from_json(data, where: str) -> Shape:
    if not isinstance(data, dict) or data.get("dtype") not in dtypes.BY_NAME:
        raise ArtifactFormatError(f"{where}: unknown dtype in {MANIFEST}: {str(data):.80}")
    shape = data.get("shape")
    if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
        raise ArtifactFormatError(f"{where}: malformed shape in {MANIFEST}: {shape!r:.80}")
    return Shape(dtypes.BY_NAME[data["dtype"]], tuple(shape))


def signature_from_json(manifest: dict, where: str) -> Signature:
    inputs = field(manifest, "signature.inputs", list, where)
    outputs = field(manifest, "signature.outputs", list, where)
    in_tree = tree_from_json(field(manifest, "signature.in_tree", dict, where), where)
    out_tree = tree_from_json(field(manifest, "signature.out_tree", dict, where), where)
    if in_tree.num_leaves != len(inputs) or out_tree.num_leaves != len(outputs):
        raise ArtifactFormatError(f"{where}: the signature's trees and leaf lists disagree in {MANIFEST}")
    specs = []
    for k, item in enumerate(inputs):
        path = item.get("path") if isinstance(item, dict) else None
        if not isinstance(path, str):
            raise ArtifactFormatError(f"{where}: input {k} has no path in {MANIFEST}")
        specs.append(ArgSpec(path, aval_from_json(item, where), weak=bool(item.get("weak", False))))
    return Signature(in_tree, tuple(specs), out_tree, tuple(aval_from_json(o, where) for o in outputs))

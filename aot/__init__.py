"""Ahead-of-time artifacts (ARCHITECTURE.md §8): compiled programs that outlive the process.

    tessel.aot.save(compiled, "predict.tsl")               # from jit(f).lower(...).compile()
    tessel.aot.export(f, ShapeDtype((8, 784), "float32"), path="predict.tsl",
                      target="aarch64-unknown-linux-gnu")   # or cpu="x86-64-v3"
    predict = tessel.aot.load("predict.tsl")               # no frontend, no compiler passes
    predict(x)
    tessel.aot.export(f, ShapeDtype((8, 784), "float32"), path="predict-sys.tsl",
                      backend="systolic", config=["rows=32", "cols=32"])  # a simulated machine
    tessel.aot.load("predict-sys.tsl").report()              # its cycles (timing model)

| module | holds |
| --- | --- |
| `manifest.py` | the manifest's fields, pytrees and avals as JSON |
| `archive.py` | the zip: safe reading (names, size caps, hashes), atomic writing |
| `cabi.py` | the C interface: wrapper functions in IR, the header, linking a shared library |
| `writer.py` | `save` / `export`: code generation for the artifact's target, the members |
| `loader.py` | `load`: validation, then the object linked in by LLVM, the callable |
| `systolic.py` | systolic artifacts: members, checks, the callable on the functional simulator |
| `errors.py` | the ArtifactError tree |
| `elf.py` | the ELF header's machine field |

docs/aot.md walks through the whole flow, from Python and from C.
"""
from __future__ import annotations

from .errors import (ArtifactBackendError, ArtifactConfigError, ArtifactError, ArtifactFormatError,
                     ArtifactIntegrityError, ArtifactLimitError, ArtifactProgramError, ArtifactTargetError,
                     ArtifactVersionError)
from .loader import Artifact, load
from .systolic import SystolicArtifact


def save(compiled, path, **target):
    """Write a compiled program as a .tsl artifact (see writer.save)."""
    if not hasattr(compiled, "executable"):
        raise TypeError(f"tessel.aot.save takes a compiled program (tessel.jit(f).lower(...)"
                        f".compile()), given {type(compiled).__name__}")
    from .writer import save as _save
    return _save(compiled, path, **target)


def export(f, *shape_dtypes, path, **options):
    """Trace, optimize and write `f` as a .tsl artifact (see writer.export)."""
    from .writer import export as _export
    return _export(f, *shape_dtypes, path=path, **options)


__all__ = ["Artifact", "ArtifactBackendError", "ArtifactConfigError", "ArtifactError", "ArtifactFormatError",
           "ArtifactIntegrityError", "ArtifactLimitError", "ArtifactProgramError", "ArtifactTargetError",
           "ArtifactVersionError", "SystolicArtifact", "export", "load", "save"]

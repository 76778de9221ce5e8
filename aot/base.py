"""What every loaded artifact shares, whatever runs it: the manifest, the signature,
calls by pytree (inputs checked as for every Executable), members by role."""
from __future__ import annotations

from ..runtime import pytree
from ..runtime.executable import Signature, validate_arguments


class LoadedArtifact:
    """Call it like the exported function (static arguments are baked in, so pass only
    the dynamic ones). Subclasses run `call_flat` on the checked flat arrays."""

    def __init__(self, path: str, manifest: dict, signature: Signature, contents: dict):
        self.path, self.manifest, self.signature = path, manifest, signature
        self.name = manifest.get("name", "artifact")
        self.backend = manifest["backend"]
        self._contents = contents

    in_avals = property(lambda self: self.signature.in_avals)
    out_avals = property(lambda self: self.signature.out_avals)

    def __call__(self, *args, **kwargs):
        leaves, treedef = pytree.flatten(tuple(args) + (kwargs,))
        arrays = validate_arguments(self.signature, self.name, leaves, treedef)
        return pytree.unflatten(self.signature.out_tree, self.call_flat(arrays))

    def call_flat(self, arrays):
        raise NotImplementedError

    def member(self, role: str) -> bytes | None:
        """The bytes of a file by role (the manifest's `files`: object, header, program, hlo ...)."""
        name = self.manifest["files"].get(role)
        return self._contents.get(name) if name else None

    def as_text(self) -> str:
        """The optimized HLO the artifact's program was compiled from."""
        return (self.member("hlo") or b"").decode()

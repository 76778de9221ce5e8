"""Pytrees: nested tuples, lists, dicts and None, flattened to leaves and back.

A `TreeDef` records the structure (node types, dict keys, None positions) so results
can be rebuilt and signatures compared. Dicts are flattened in sorted key order, as
JAX does, so two dicts with the same keys have the same structure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TreeDef:
    kind: str                 # "leaf", "none", "tuple", "list", "dict"
    children: tuple = ()
    keys: tuple = ()          # dict keys, sorted

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __str__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = [str(c) for c in self.children]
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.keys, inner)) + "}"
        if self.kind == "list":
            return "[" + ", ".join(inner) + "]"
        return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"


LEAF = TreeDef("leaf")


def _sorted_keys(d: dict) -> list:
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=repr)


def flatten(tree: Any) -> tuple[list, TreeDef]:
    leaves: list = []
    try:
        return leaves, _flatten_into(tree, leaves)
    except RecursionError:
        raise TypeError("a pytree (nested tuples, lists, dicts) nested deeper than Python's "
                        "recursion limit, or containing itself, cannot be flattened; given a "
                        f"{type(tree).__name__}") from None


def _flatten_into(tree, leaves) -> TreeDef:
    if tree is None:
        return TreeDef("none")
    if isinstance(tree, tuple) and not hasattr(tree, "_fields"):
        return TreeDef("tuple", tuple(_flatten_into(x, leaves) for x in tree))
    if isinstance(tree, list):
        return TreeDef("list", tuple(_flatten_into(x, leaves) for x in tree))
    if isinstance(tree, dict):
        keys = _sorted_keys(tree)
        return TreeDef("dict", tuple(_flatten_into(tree[k], leaves) for k in keys), tuple(keys))
    leaves.append(tree)
    return LEAF


def unflatten(treedef: TreeDef, leaves) -> Any:
    it = iter(leaves)
    out = _build(treedef, it)
    if next(it, _END) is not _END:
        raise ValueError(f"too many leaves for tree structure {treedef}")
    return out


_END = object()


def _build(treedef: TreeDef, it):
    if treedef.kind == "leaf":
        leaf = next(it, _END)
        if leaf is _END:
            raise ValueError("too few leaves for the tree structure")
        return leaf
    if treedef.kind == "none":
        return None
    children = [_build(c, it) for c in treedef.children]
    if treedef.kind == "tuple":
        return tuple(children)
    if treedef.kind == "list":
        return children
    return dict(zip(treedef.keys, children))


def leaf_paths(treedef: TreeDef, prefix: str = "") -> list[str]:
    """A readable path for every leaf, e.g. "params['w1']" or "args[1][0]"."""
    if treedef.kind == "leaf":
        return [prefix]
    if treedef.kind == "none":
        return []
    if treedef.kind == "dict":
        return [p for k, c in zip(treedef.keys, treedef.children) for p in leaf_paths(c, f"{prefix}[{k!r}]")]
    return [p for i, c in enumerate(treedef.children) for p in leaf_paths(c, f"{prefix}[{i}]")]


def tree_map(fn, tree, *rest):
    leaves, treedef = flatten(tree)
    others = [flatten(r)[0] for r in rest]
    return unflatten(treedef, [fn(x, *ys) for x, *ys in zip(leaves, *others)])


def structure_diff(expected: TreeDef, given: TreeDef, path: str = "") -> list[str]:
    """Human-readable differences between two tree structures."""
    if expected == given:
        return []
    if expected.kind != given.kind:
        return [f"{path or 'value'}: expected {_kind_name(expected)}, given {_kind_name(given)}"]
    if expected.kind == "dict" and expected.keys != given.keys:
        missing = [k for k in expected.keys if k not in given.keys]
        extra = [k for k in given.keys if k not in expected.keys]
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            parts.append(f"unexpected keys {extra}")
        return [f"{path or 'value'}: dict {'; '.join(parts)}"]
    if len(expected.children) != len(given.children):
        return [f"{path or 'value'}: expected {expected.kind} of length {len(expected.children)}, "
                f"given length {len(given.children)}"]
    names = [f"[{k!r}]" for k in expected.keys] if expected.kind == "dict" else \
        [f"[{i}]" for i in range(len(expected.children))]
    diffs = []
    for name, e, g in zip(names, expected.children, given.children):
        diffs.extend(structure_diff(e, g, path + name))
    return diffs


def _kind_name(t: TreeDef) -> str:
    return {"leaf": "an array", "none": "None"}.get(t.kind, f"a {t.kind}")

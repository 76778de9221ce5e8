"""`tessel.jit` and its staged API: jit(f).lower(*args) -> Lowered -> .compile() -> Compiled.

Calling a jitted function traces it once per abstract signature (pytree structure,
shapes, dtypes, static argument values, backend), compiles the module and caches the
result; later calls with the same signature run the cached executable. The cache is
safe to use from several threads: each signature is traced and compiled exactly once.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..compiler import dtypes, graph, verifier
from ..compiler.ir import Module, Shape
from ..runtime import backends, compile_log, pytree
from ..runtime.executable import ArgSpec, Executable, Signature, as_argument_array
from . import core


# ----------------------------------------------------------------------------- abstract arguments

class ShapeDtype:
    """An abstract argument for `lower`: a shape and a dtype, no data."""

    def __init__(self, shape, dtype):
        self.shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        if any(d < 0 for d in self.shape):
            raise ValueError(f"ShapeDtype dims must be >= 0, given {self.shape}")
        self.dtype = dtypes.from_any(dtype)
        try:
            Shape(self.dtype, self.shape)
        except ValueError as e:
            raise ValueError(f"ShapeDtype: {e}") from None

    def __repr__(self) -> str:
        return f"ShapeDtype({self.shape}, {self.dtype.name})"

    def __eq__(self, other):
        return isinstance(other, ShapeDtype) and (self.shape, self.dtype) == (other.shape, other.dtype)

    def __hash__(self):
        return hash((self.shape, self.dtype))


def leaf_aval(leaf, path: str) -> Shape:
    """The abstract value of one argument leaf (array, scalar or ShapeDtype)."""
    if isinstance(leaf, ShapeDtype):
        return Shape(leaf.dtype, leaf.shape)
    if isinstance(leaf, core.Tracer):
        return leaf.aval
    array = as_argument_array(leaf, path)
    try:
        return Shape(dtypes.from_numpy(array.dtype), array.shape)
    except TypeError as e:
        raise TypeError(f"argument {path}: {e}") from None


# ----------------------------------------------------------------------------- binding arguments

@dataclass(frozen=True)
class Binding:
    """A call's arguments split into static values and a pytree of dynamic leaves."""
    statics: tuple                 # ((position or name, value), ...) - hashable
    dynamic: tuple                 # (positional dynamic args..., {dynamic kwargs})
    dynamic_names: tuple           # a display name per dynamic positional arg


class ArgumentBinder:
    """Splits args/kwargs of calls to `fun` by static_argnums / static_argnames."""

    def __init__(self, fun: Callable, static_argnums, static_argnames):
        self.fun = fun
        self.static_argnums = _as_tuple(static_argnums)
        self.static_argnames = _as_tuple(static_argnames)
        try:
            params = list(inspect.signature(fun).parameters.values())
        except (TypeError, ValueError):
            params = []
        self.positional_names = [p.name for p in params
                                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        # A static name given positionally is static by position too, and vice versa.
        self.static_positions = {self._index(n) for n in self.static_argnums}
        self.static_positions |= {self.positional_names.index(n) for n in self.static_argnames
                                  if n in self.positional_names}
        self.static_names = set(self.static_argnames) | {
            self.positional_names[i] for i in self.static_positions if i < len(self.positional_names)}

    def _index(self, n: int) -> int:
        if n < 0:
            if not self.positional_names:
                raise ValueError("negative static_argnums need a function with a signature")
            n += len(self.positional_names)
        return n

    def bind(self, args: tuple, kwargs: dict) -> Binding:
        statics, dyn_args, names = [], [], []
        for i, a in enumerate(args):
            if i in self.static_positions:
                statics.append((i, _hashable_static(a, self._name(i))))
            else:
                dyn_args.append(a)
                names.append(self._name(i))
        dyn_kwargs = {}
        for k, v in kwargs.items():
            if k in self.static_names:
                statics.append((k, _hashable_static(v, k)))
            else:
                dyn_kwargs[k] = v
        return Binding(tuple(statics), tuple(dyn_args) + (dyn_kwargs,), tuple(names))

    def _name(self, i: int) -> str:
        return self.positional_names[i] if i < len(self.positional_names) else f"args[{i}]"

    def rebuild(self, binding: Binding, dyn_values: tuple) -> tuple[tuple, dict]:
        """Arguments for the Python function: statics back in place, dynamics replaced."""
        *dyn_args, dyn_kwargs = dyn_values
        positional = dict((k, v) for k, v in binding.statics if isinstance(k, int))
        n = len(dyn_args) + len(positional)
        it = iter(dyn_args)
        args = tuple(positional[i] if i in positional else next(it) for i in range(n))
        kwargs = dict(dyn_kwargs)
        kwargs.update((k, v) for k, v in binding.statics if isinstance(k, str))
        return args, kwargs


def _as_tuple(x) -> tuple:
    if x is None:
        return ()
    if isinstance(x, (int, str)):
        return (x,)
    return tuple(x)


def _hashable_static(value, name: str):
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"static argument {name} must be hashable (it is part of the compile "
                        f"cache key), given {type(value).__name__}; pass a tuple instead of a "
                        f"list, or make it a dynamic argument") from None
    return value


def leaf_paths(binding: Binding, treedef: pytree.TreeDef) -> list[str]:
    """A readable name per dynamic leaf: x, params['w1'], kwargs['y'] ..."""
    *arg_defs, kw_def = treedef.children
    paths = []
    for name, sub in zip(binding.dynamic_names, arg_defs):
        paths.extend(pytree.leaf_paths(sub, name))
    for key, sub in zip(kw_def.keys, kw_def.children):
        paths.extend(pytree.leaf_paths(sub, key))
    return paths


def _param_name(path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", path).strip("_")
    if not name or not (name[0].isalpha() or name[0] == "_"):
        name = "arg_" + name
    return name


# ----------------------------------------------------------------------------- tracing

def trace_to_module(fun: Callable, binder: ArgumentBinder, binding: Binding,
                    treedef: pytree.TreeDef, specs: Sequence[ArgSpec]):
    """Trace `fun` with a parameter per dynamic leaf; return (module, out_tree, out_avals)."""
    module = Module(_param_name(getattr(fun, "__name__", "main")) or "main")
    with core.TraceContext(module, "main") as ctx:
        params = [ctx.parameter(spec.aval, _param_name(spec.path), weak=spec.weak) for spec in specs]
        args, kwargs = binder.rebuild(binding, pytree.unflatten(treedef, params))
        out = fun(*args, **kwargs)
        out_leaves, out_tree = pytree.flatten(out)
        outs = [_output_leaf(leaf, i) for i, leaf in enumerate(out_leaves)]
        ctx.builder.build(ctx.emit("tuple", outs).instr, entry=True)
    ctx.finished = True
    verifier.verify(module)
    return module, out_tree, [t.aval for t in outs]


def _output_leaf(leaf, index: int) -> core.Tracer:
    if isinstance(leaf, (core.Tracer, np.ndarray, np.generic, bool, int, float)):
        return core.lift(leaf)
    raise TypeError(f"output {index} of the traced function is a {type(leaf).__name__}; "
                    f"outputs must be arrays, numbers, or tuples/lists/dicts/None of them")


class Lowered:
    """A traced program: the HLO as traced, ready to compile."""

    def __init__(self, module: Module, backend: str, binder: ArgumentBinder, binding: Binding,
                 signature: Signature, name: str, placement: str | None = None):
        self.module = module
        self.backend = backend
        self.placement = placement
        self._binder, self._binding = binder, binding
        self.signature = signature
        self.name = name

    in_avals = property(lambda self: self.signature.in_avals)
    out_avals = property(lambda self: self.signature.out_avals)

    def as_text(self) -> str:
        return str(self.module)

    def as_dot(self) -> str:
        return graph.to_dot(self.module)

    def cost_analysis(self):
        """Flops, transcendentals and bytes of the program as traced (before optimization)."""
        from ..compiler.cost import cost_analysis
        return cost_analysis(self.module)

    def compile(self) -> "Compiled":
        """Optimize a copy of the traced module for the backend and build its executable
        (a placed program when ops are placed on more than one device: docs/placement.md)."""
        from ..compiler import pipeline
        backend = self.backend
        if self.placement is not None or _has_scopes(self.module):
            placed, place_report = pipeline.place(self.module, self.placement, self.backend)
            devices = _devices(placed)
            if len(devices) > 1:
                from ..runtime.placed import PlacedExecutable
                exe = PlacedExecutable(placed, backend, self.signature, name=self.name)
                return Compiled(exe, self._binder, self._binding, place_report)
            backend = devices.pop() if devices else backend
        module = self.module if self.placement is None and not _has_scopes(self.module) \
            else without_devices(self.module)       # one device: a plain program
        optimized, report = pipeline.optimize(module, backend)
        exe = Executable(optimized, backend, self.signature, name=self.name)
        return Compiled(exe, self._binder, self._binding, report)


def _has_scopes(module: Module) -> bool:
    from ..compiler import ops
    return any(ops.DEVICE_ATTR in i.attrs for comp in module.computations for i in comp.instructions)


def without_devices(module: Module) -> Module:
    from ..compiler.passes.placement import without_devices
    return without_devices(module)


def _devices(module: Module) -> set[str]:
    from ..compiler import ops
    return {i.attrs[ops.DEVICE_ATTR] for i in module.entry.instructions
            if ops.DEVICE_ATTR in i.attrs and i.opcode not in ("send", "recv")}


class Compiled:
    """A compiled program; call it like the original function (same static values)."""

    def __init__(self, executable: Executable, binder: ArgumentBinder, binding: Binding,
                 pass_report=None):
        self.executable = executable
        self._binder, self._binding = binder, binding
        self.pass_report = pass_report       # per-pass timings and changes of the optimizer

    backend = property(lambda self: self.executable.backend)
    statics = property(lambda self: dict(self._binding.statics))   # baked into the program
    in_avals = property(lambda self: self.executable.in_avals)
    out_avals = property(lambda self: self.executable.out_avals)
    module = property(lambda self: self.executable.module)

    def as_text(self) -> str:
        return self.executable.as_text()

    def as_dot(self) -> str:
        return graph.to_dot(self.executable.module)

    def cost_analysis(self):
        return self.executable.cost_analysis()

    def memory_analysis(self):
        return self.executable.memory_analysis()

    def systolic_report(self):
        """Cycles, MXU utilization, busy units and bytes moved (backend="systolic"); for a
        program placed on several devices, the systolic parts' cycles and the transfers
        (runtime/placed.py PlacedReport, docs/placement.md)."""
        return self.executable.systolic_report()

    def program_text(self) -> str:
        """The instruction stream as assembly (backend="systolic")."""
        return self.executable.program_text()

    def __call__(self, *args, **kwargs):
        binding = self._binder.bind(args, kwargs)
        if binding.statics != self._binding.statics:
            raise TypeError(f"{self.executable.name}: static arguments {dict(binding.statics)} differ "
                            f"from the ones this program was compiled for {dict(self._binding.statics)}")
        return self.executable.call_leaves(*pytree.flatten(binding.dynamic))


# ----------------------------------------------------------------------------- jit

class Jitted:
    """The object `tessel.jit` returns: call it, or stage it with `lower`."""

    def __init__(self, fun: Callable, backend: str | None, static_argnums, static_argnames,
                 placement: str | None = None):
        if not callable(fun):
            raise TypeError(f"jit expects a function, given {type(fun).__name__}")
        self.fun = fun
        self.backend = backends.check_name(backend or backends.DEFAULT_BACKEND)
        self.placement = _check_placement(placement)
        self.binder = ArgumentBinder(fun, static_argnums, static_argnames)
        self._cache: dict[Any, Compiled] = {}
        # Positional plain ndarrays only: (dtype, shape) per argument -> a call that runs
        # the compiled program directly (see `_fast_call`); filled from `_cache`.
        self._fast: dict[tuple, Callable] = {}
        self._fast_ok = not self.binder.static_positions and not self.binder.static_names
        # What the backend's programs depend on besides the traced module (the systolic
        # machine config): read at each call, part of both cache keys (runtime/backends.py).
        # Placement may put parts on the systolic machine whatever the backend.
        self._context = backends.CONTEXT.get(self.backend) or \
            (backends.CONTEXT["systolic"] if self.placement else None)
        self._in_flight: dict[Any, threading.Event] = {}
        self._lock = threading.Lock()
        self.trace_count = 0
        functools.update_wrapper(self, fun)

    # -- staged API
    def lower(self, *args, **kwargs) -> Lowered:
        binding = self.binder.bind(args, kwargs)
        leaves, treedef = pytree.flatten(binding.dynamic)
        return self._lower(binding, leaves, treedef)

    def _lower(self, binding, leaves, treedef) -> Lowered:
        paths = leaf_paths(binding, treedef)
        specs = [ArgSpec(p, leaf_aval(leaf, p), weak=core.is_weak_scalar(leaf))
                 for p, leaf in zip(paths, leaves)]
        module, out_tree, out_avals = trace_to_module(self.fun, self.binder, binding, treedef, specs)
        with self._lock:
            self.trace_count += 1
        signature = Signature(treedef, tuple(specs), out_tree, tuple(out_avals))
        return Lowered(module, self.backend, self.binder, binding, signature,
                       getattr(self.fun, "__name__", "function"), self.placement)

    # -- calling
    def __call__(self, *args, **kwargs):
        context = self._context() if self._context is not None else None
        if self._fast_ok and not kwargs:
            fast = self._fast.get(_fast_key(args, context))
            if fast is not None and core.current_context() is None:
                return fast(args)
        if core.current_context() is not None:
            return self.fun(*args, **kwargs)     # inside another trace: inline
        binding = self.binder.bind(args, kwargs)
        leaves, treedef = pytree.flatten(binding.dynamic)
        paths = None
        avals = []
        for i, leaf in enumerate(leaves):
            try:
                avals.append(_fast_aval(leaf))
            except TypeError:
                paths = paths or leaf_paths(binding, treedef)
                avals.append(leaf_aval(leaf, paths[i]))
        key = (treedef, tuple(avals), binding.statics, context)
        compiled = self._get_or_compile(key, binding, leaves, treedef)
        if self._fast_ok and not kwargs:
            context = self._context() if self._context is not None else None   # (it may be new)
            self._remember_fast(args, context, compiled.executable)
        return compiled.executable.call_leaves(leaves, treedef)

    def _remember_fast(self, args: tuple, context, executable: Executable) -> None:
        """Index `executable` by the arrays' (dtype, shape) when every argument is a plain
        ndarray that validation would pass through unchanged (the exact storage dtype,
        no bf16 rounding, no weak type): such calls skip binding, flattening and the
        signature walk. The backend still checks every array before native code runs."""
        key = _fast_key(args, context)
        specs = executable.signature.in_specs
        if key is None or key in self._fast or len(specs) != len(args):
            return
        if all(spec.aval.dtype is not dtypes.bf16 and not spec.weak and spec.aval.dims == a.shape
               and spec.aval.dtype.storage == a.dtype for spec, a in zip(specs, args)):
            self._fast[key] = executable.fast_call

    def _get_or_compile(self, key, binding, leaves, treedef) -> Compiled:
        while True:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
                event = self._in_flight.get(key)
                if event is None:
                    event = self._in_flight[key] = threading.Event()
                    owner = True
                else:
                    owner = False
            if not owner:
                event.wait()
                continue          # the owner finished (or failed): look again
            try:
                compiled = self._trace_and_compile(key, binding, leaves, treedef)
                with self._lock:
                    self._cache[self._keyed_by_context(key, compiled)] = compiled
                return compiled
            finally:
                with self._lock:
                    del self._in_flight[key]
                event.set()

    def _keyed_by_context(self, key, compiled: Compiled):
        """`key`, or -- the first time a program of this jit turns out to run parts on the
        systolic machine (tessel.device scopes) -- `key` with the machine config, from
        then on part of every key of this jit (the entries before it are dropped).
        Called with the lock held."""
        exe = compiled.executable
        if self._context is not None or (exe.backend != "systolic" and "systolic" not in getattr(exe, "devices", ())):
            return key
        self._context = backends.CONTEXT["systolic"]
        self._cache.clear()
        self._fast.clear()
        return key[:3] + (self._context(),)

    def _trace_and_compile(self, key, binding, leaves, treedef) -> Compiled:
        if not compile_log.enabled():
            return self._lower(binding, leaves, treedef).compile()
        with self._lock:
            previous = list(self._cache)
        reason = miss_reason(key, previous, leaf_paths(binding, treedef))
        start = time.perf_counter()
        lowered = self._lower(binding, leaves, treedef)
        traced = time.perf_counter()
        compiled = lowered.compile()
        compile_log.log(f"{lowered.name}: traced in {1e3 * (traced - start):.1f} ms, compiled in "
                        f"{1e3 * (time.perf_counter() - traced):.1f} ms (in-memory cache miss: {reason})")
        return compiled

    def cache_size(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._fast.clear()

    def __repr__(self) -> str:
        placement = f" placement={self.placement}" if self.placement else ""
        return f"<tessel.jit {getattr(self.fun, '__qualname__', self.fun)} backend={self.backend}{placement}>"


def miss_reason(key, previous: list, paths: list[str]) -> str:
    """Why `key` (treedef, leaf avals, statics) missed the in-memory cache: what changed
    since the most recent signature compiled."""
    if not previous:
        return "first call"
    last_tree, last_avals, last_statics, last_context = previous[-1]
    tree, avals, statics, context = key
    if tree != last_tree:
        return "argument structure changed: " + "; ".join(pytree.structure_diff(last_tree, tree, "args"))
    changes = [f"argument {path}: {_aval_text(old)} -> {_aval_text(new)}"
               for path, old, new in zip(paths, last_avals, avals) if old != new]
    old_statics, new_statics = dict(last_statics), dict(statics)
    changes += [f"static argument {name}: {old_statics.get(name)!r} -> {new_statics.get(name)!r}"
                for name in sorted(set(old_statics) | set(new_statics), key=str)
                if old_statics.get(name) != new_statics.get(name)]
    if context != last_context:
        changes.append(_context_change(last_context, context))
    return "; ".join(changes) or "a signature not seen before"


def _context_change(old, new) -> str:
    """'backend configuration: rows 128 -> 32' for two configs (dataclasses), else both."""
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        fields = [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]
        return "backend configuration: " + ", ".join(
            f"{name} {getattr(old, name)!r} -> {getattr(new, name)!r}" for name in fields)
    return f"backend configuration: {old!r} -> {new!r}"


def _aval_text(aval) -> str:
    if isinstance(aval, tuple) and len(aval) == 2 and isinstance(aval[0], str):
        kind, shape = aval
        if kind in ("bool", "int", "float"):
            return f"Python {kind}"
        return f"{dtypes.from_numpy(np.dtype(kind)).name}{list(shape)}"
    return str(aval)


def _fast_key(args: tuple, context) -> tuple | None:
    """The fast path's key: the arrays' (dtype, shape), with the backend context if any."""
    key = _array_key(args)
    return key if context is None or key is None else (context, key)


def _array_key(args: tuple) -> tuple | None:
    """(dtype, shape) of each argument if all are exactly np.ndarray, else None."""
    key = []
    for a in args:
        if type(a) is not np.ndarray:
            return None
        key.append(a.dtype)
        key.append(a.shape)
    return tuple(key)


def _fast_aval(leaf):
    """Cache-key abstract value of a leaf; TypeError for anything unusual."""
    if isinstance(leaf, np.ndarray):
        return (leaf.dtype.str, leaf.shape)
    if isinstance(leaf, (bool, int, float)):
        return (type(leaf).__name__, ())
    if isinstance(leaf, np.generic):
        return (leaf.dtype.str, ())
    raise TypeError


PLACEMENTS = (None, "soft", "auto")


def _check_placement(placement):
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be None (everything on the backend, tessel.device scopes "
                         f"apart), 'soft' or 'auto'; given {placement!r} (docs/placement.md)")
    return placement


def jit(fun: Callable | None = None, *, backend: str | None = None, static_argnums=(),
        static_argnames=(), placement: str | None = None):
    """Trace, optimize and compile `fun` on first call per signature; run from a cache after.

    Usable as `@jit`, `@jit(backend="interpreter")` or `jit(f, static_argnums=(1,))`.
    `placement` spreads the program over devices (docs/placement.md): None (the default:
    everything on `backend` except ops in `tessel.device` scopes), "soft" (what `backend`
    cannot run goes to the CPU) or "auto" (a cost model chooses per op).
    """
    if fun is None:
        return lambda f: Jitted(f, backend, static_argnums, static_argnames, placement)
    return Jitted(fun, backend, static_argnums, static_argnames, placement)


__all__ = ["Compiled", "Jitted", "Lowered", "ShapeDtype", "jit"]

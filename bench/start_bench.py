"""Time to first result of the GPT-2 block (bench size) in fresh processes:

    cold     import tessel, trace, optimize, compile, run: an empty compile cache
    warm     the same with a warm persistent compile cache (TESSEL_CACHE_DIR): trace
             and optimize, then the cached object instead of codegen + LLVM
    aot      import tessel.aot, load the artifact exported beforehand, run

`--backend systolic` times the same for the simulated systolic machine: the disk cache
then holds the compiled program (codegen skipped), the artifact the program, its config
and host image (loaded without the compiler, run on the functional simulator).

Each sample is one new Python process, timed from before its first tessel import to
the first result (the interpreter's own start-up is left out: it is the same for
every row). Medians of --repeat samples; the machine is shared, so compare rows of
one run. Usage (repository root):

    python bench/start_bench.py [--repeat 5] [--quick] [--backend cpu|systolic]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import functools, json, os, sys, time
import numpy as np
root, mode = sys.argv[1], sys.argv[2]
n = int(open(os.path.join(root, "n_leaves")).read())
leaves = [np.load(os.path.join(root, f"in{k}.npy"), allow_pickle=False) for k in range(n)]
spec = json.loads(open(os.path.join(root, "spec.json")).read())
start = time.perf_counter()
if mode == "aot":
    import tessel.aot
    from tessel.runtime import pytree
    block = pytree.unflatten(pytree.flatten(spec["block_skeleton"])[1], leaves[1:])
    out = tessel.aot.load(os.path.join(root, "block.tsl"))(leaves[0], block)
else:
    sys.path.insert(0, sys.argv[3])
    import tessel
    from tessel.runtime import pytree
    from bench import workloads
    block = pytree.unflatten(pytree.flatten(spec["block_skeleton"])[1], leaves[1:])
    out = tessel.jit(functools.partial(workloads.block_xp, np, n_heads=spec["heads"]),
                     backend=spec["backend"])(leaves[0], block)
elapsed = time.perf_counter() - start
np.save(os.path.join(root, f"out.{mode}.npy"), np.asarray(out))
print(json.dumps({"mode": mode, "seconds": elapsed}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the small GPT block (a smoke run)")
    parser.add_argument("--backend", choices=("cpu", "systolic"), default="cpu")
    args = parser.parse_args(argv)
    import tessel
    from bench import workloads
    sizes = workloads.GPT["quick" if args.quick else "size"]
    x, block = workloads.block_inputs(np.random.default_rng(0), **sizes)
    root = tempfile.mkdtemp(prefix="tessel-start-")
    fn = tessel.jit(lambda x, block: workloads.block_xp(np, x, block, sizes["heads"]), backend=args.backend)
    os.environ["TESSEL_CACHE_DIR"] = "off"          # the export compiles afresh
    t = time.perf_counter()
    tessel.aot.export(fn, x, block, path=os.path.join(root, "block.tsl"), backend=args.backend)
    print(f"{args.backend} export (trace + optimize + code generation + artifact): {time.perf_counter() - t:.2f} s")
    artifact = tessel.aot.load(os.path.join(root, "block.tsl"))
    leaves, _ = tessel.runtime.pytree.flatten((x, block, {}))
    for k, leaf in enumerate(leaves):
        np.save(os.path.join(root, f"in{k}.npy"), leaf)
    skeleton = tessel.runtime.pytree.unflatten(tessel.runtime.pytree.flatten(block)[1],
                                               [0] * len(tessel.runtime.pytree.flatten(block)[0]))
    Path(root, "n_leaves").write_text(str(len(leaves)))
    spec = {"heads": sizes["heads"], "block_skeleton": skeleton, "backend": args.backend}
    Path(root, "spec.json").write_text(json.dumps(spec))
    del artifact
    warm_cache = os.path.join(root, "warm-cache")
    if _child(root, "warm", warm_cache) is None:          # fills the cache (not timed)
        return 1
    samples = {"cold": [], "warm": [], "aot": []}
    for k in range(args.repeat):
        for mode in samples:
            cache = os.path.join(root, f"cold-cache-{k}") if mode == "cold" else warm_cache
            seconds = _child(root, mode, cache)
            if seconds is None:
                return 1
            samples[mode].append(seconds)
    outputs = [np.load(os.path.join(root, f"out.{mode}.npy")) for mode in samples]
    same = all(np.array_equal(outputs[0], o) for o in outputs[1:])
    print(f"GPT-2 block {sizes} on {args.backend}, time to first result in a new process, "
          f"median of {args.repeat}:")
    labels = {"cold": "JIT, empty compile cache", "warm": "JIT, warm disk cache", "aot": "AOT artifact (load + run)"}
    for mode, label in labels.items():
        print(f"  {label:<28} {statistics.median(samples[mode]):8.3f} s   samples "
              + " ".join(f"{s:.2f}" for s in samples[mode]))
    aot = statistics.median(samples["aot"])
    print(f"  cold / aot {statistics.median(samples['cold']) / aot:.1f}x, warm / aot "
          f"{statistics.median(samples['warm']) / aot:.1f}x; outputs identical: {same}; "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


def _child(root: str, mode: str, cache: str) -> float | None:
    env = {**os.environ, "TESSEL_CACHE_DIR": cache}
    run = subprocess.run([sys.executable, "-c", CHILD, root, mode, str(REPO)], capture_output=True,
                         text=True, cwd=root, env=env)
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])["seconds"]


if __name__ == "__main__":
    raise SystemExit(main())

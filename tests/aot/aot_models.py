"""Models and a C driver shared by the AOT tests.

Each model is (function, example arguments, static_argnums); `c_driver` writes a C
program that reads every argument from argK.bin, runs an artifact through its header's
NAME_run and writes resultK.bin, so tests compare C's numbers with Python's.
"""
from __future__ import annotations

import os
import subprocess
import zipfile

import numpy as np

import numpy_models as nm
import tessel
import tessel.numpy as tnp
from tessel import lax


def mlp(params, x):
    h = tnp.maximum(x @ params["w1"] + params["b1"], 0)
    return tessel.nn.softmax(h @ params["w2"] + params["b2"])


def mlp_case(rng):
    params = {"w1": rng.standard_normal((48, 64)).astype(np.float32) * 0.2, "b1": rng.standard_normal(64).astype(np.float32),
              "w2": rng.standard_normal((64, 10)).astype(np.float32) * 0.2, "b2": np.zeros(10, np.float32)}
    return mlp, (params, rng.standard_normal((16, 48)).astype(np.float32)), ()


def cnn(params, images):
    """conv 3x3 -> relu -> 2x2 max pool -> conv 3x3 -> relu -> mean over space -> dense."""
    h = lax.conv_general_dilated(images, params["k1"], (1, 1), "SAME") + params["c1"][None, :, None, None]
    h = lax.reduce_window(tnp.maximum(h, 0), -np.inf, "max", (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = lax.conv_general_dilated(h, params["k2"], (1, 1), "VALID") + params["c2"][None, :, None, None]
    features = tnp.maximum(h, 0).mean(axis=(2, 3))
    return {"logits": features @ params["w"], "features": features}


def cnn_case(rng):
    params = {"k1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
              "c1": rng.standard_normal(8).astype(np.float32) * 0.1,
              "k2": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2,
              "c2": rng.standard_normal(16).astype(np.float32) * 0.1,
              "w": rng.standard_normal((16, 5)).astype(np.float32)}
    return cnn, (params, rng.standard_normal((2, 3, 12, 12)).astype(np.float32)), ()


def gpt_case(rng):
    block = nm.gpt2_params(rng, width=32, layers=1, dtype=np.float32)["blocks"][0]
    x = rng.standard_normal((16, 32)).astype(np.float32)
    return nm.transformer_block, (x, block, 4), (2,)


CASES = {"mlp": mlp_case, "cnn": cnn_case, "gpt": gpt_case}


def export_case(name: str, path: str, rng=None, **target):
    """Export the model `name` to `path`; returns (artifact path, dynamic args, JIT outputs)."""
    fn, args, static = CASES[name](rng or np.random.default_rng(0))
    jitted = tessel.jit(fn, static_argnums=static)
    compiled = jitted.lower(*args).compile()
    dynamic = tuple(a for k, a in enumerate(args) if k not in static)
    expected = compiled(*args)
    tessel.aot.save(compiled, path, **target)
    return path, dynamic, expected


# ----------------------------------------------------------------------------- C

C_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "PREFIX.h"

static void *read_file(const char *name, size_t bytes) {
    void *data = malloc(bytes ? bytes : 1);
    FILE *f = fopen(name, "rb");
    if (!f || fread(data, 1, bytes, f) != bytes) { fprintf(stderr, "cannot read %s\n", name); exit(2); }
    fclose(f);
    return data;
}

int main(void) {
    const void *args[PREFIX_UPPER_NUM_ARGS + 1];
    void *results[PREFIX_UPPER_NUM_RESULTS + 1];
    char name[64];
    if (tessel_pool_init(0) < 1) return 3;
    for (int i = 0; i < PREFIX_UPPER_NUM_ARGS; i++) {
        snprintf(name, sizeof name, "arg%d.bin", i);
        args[i] = read_file(name, PREFIX_arg_bytes[i]);
    }
    for (int j = 0; j < PREFIX_UPPER_NUM_RESULTS; j++) results[j] = malloc(PREFIX_result_bytes[j] + 1);
    int status = PREFIX_run(args, results);
    if (status != 0) { fprintf(stderr, "run failed: %d\n", status); return 4; }
    for (int j = 0; j < PREFIX_UPPER_NUM_RESULTS; j++) {
        snprintf(name, sizeof name, "result%d.bin", j);
        FILE *f = fopen(name, "wb");
        fwrite(results[j], 1, PREFIX_result_bytes[j], f);
        fclose(f);
    }
    printf("ok scratch=%zu threads=%d\n", PREFIX_scratch_size(), tessel_pool_size());
    return 0;
}
"""


def run_in_c(artifact_path: str, flat_args, workdir: str) -> list[bytes]:
    """Unpack the artifact's object, runtime and header, compile the C driver against
    them with cc, run it on `flat_args`; returns the raw bytes of every result."""
    with zipfile.ZipFile(artifact_path) as z:
        import json
        manifest = json.loads(z.read("manifest.json"))
        files = manifest["files"]
        for role in ("object", "runtime_object", "header"):
            with open(os.path.join(workdir, os.path.basename(files[role])), "wb") as f:
                f.write(z.read(files[role]))
    prefix = manifest["symbol_prefix"]
    source = C_DRIVER.replace("PREFIX_UPPER", prefix.upper()).replace("PREFIX", prefix)
    with open(os.path.join(workdir, "main.c"), "w") as f:
        f.write(source)
    for k, a in enumerate(flat_args):
        np.ascontiguousarray(a).tofile(os.path.join(workdir, f"arg{k}.bin"))
    objects = [os.path.basename(files["object"]), os.path.basename(files["runtime_object"])]
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-O1", "-o", "main", "main.c", *objects,
                    "-lpthread", "-lm"], cwd=workdir, check=True, capture_output=True, text=True)
    out = subprocess.run(["./main"], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok"), out.stdout
    return [open(os.path.join(workdir, f"result{k}.bin"), "rb").read()
            for k in range(len(manifest["signature"]["outputs"]))]

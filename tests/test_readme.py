"""The README's code: its first commands are the quick start (install + sample, install
the test extras + tests), every ```python block runs as written (each on its own, in one
fresh interpreter, in a scratch directory), and every docs/ page it links exists."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

# Runs each block in a namespace of its own, so a block cannot lean on an earlier one.
RUNNER = r"""
import json, sys, traceback
for number, code in enumerate(json.loads(sys.stdin.read())):
    try:
        exec(compile(code, f"README python block {number}", "exec"), {"__name__": "__main__"})
    except BaseException:
        traceback.print_exc()
        print(f"README python block {number} failed:\n{code}", file=sys.stderr)
        sys.exit(1)
    print(f"== block {number} ok", flush=True)
"""


def blocks(language):
    return [code for lang, code in BLOCK.findall(README) if lang == language]


def test_the_first_commands_are_the_quick_start():
    language, first = BLOCK.findall(README)[0]
    assert language == "sh"
    assert first.splitlines()[:2] == ["pip install -e . && python samples/quickstart.py",
                                      "pip install -e '.[test]' && python -m pytest"]


def test_every_python_block_runs(tmp_path):
    code = blocks("python")
    assert len(code) >= 6, "the tour, training, systolic, placement, distributed and AOT examples"
    env = {**os.environ, "TESSEL_CACHE_DIR": "off"}
    result = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(code), text=True,
                            capture_output=True, timeout=600, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("== block") == len(code)
    out = result.stdout
    assert "loss after 100 steps" in out and "[0. 6. 0.]" in out     # training, prod's gradient
    assert "MATMUL" in out and "MXU:" in out                         # the systolic report
    assert 'send(dot_general), channel_id=1, device="systolic", peer="cpu"' in out   # placement's cut
    assert "transfers: 2, 12,288 bytes" in out and "\n12288\n" in out      # and its report
    assert (tmp_path / "predict.tsl").exists()                       # the AOT artifact


def test_linked_docs_exist():
    links = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", README))
    assert {"docs/autodiff.md", "docs/systolic-backend.md", "docs/placement.md", "docs/distributed.md",
            "docs/aot.md"} <= links
    missing = [link for link in links if not os.path.exists(os.path.join(ROOT, link))]
    assert not missing, missing

"""tessel.distributed across two real processes: `mpiexec -n 2` (the mpich wheel of the
`distributed` extra, which `test` includes) run as a subprocess with a timeout."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
WORKER = HERE / "mpi_worker.py"
SAMPLE = ROOT / "samples" / "train_data_parallel.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"

try:
    import mpi4py  # noqa: F401
    HAVE_MPI = MPIEXEC.exists()
except ImportError:
    HAVE_MPI = False

needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason=f"no mpi4py or no {MPIEXEC}: "
                               "pip install -e '.[distributed]' (the test extra includes it)")


def launch(args, ranks=2, timeout=120):
    """(returncode, stdout, stderr, seconds) of `mpiexec -n ranks python args...`."""
    env = dict(os.environ, TESSEL_NUM_THREADS="1")   # two ranks on two cores
    command = [str(MPIEXEC), "-n", str(ranks), sys.executable, *map(str, args)] if ranks else \
        [sys.executable, *map(str, args)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - start


@needs_mpi
def test_every_collective_matches_numpy_on_two_ranks():
    code, out, err, _ = launch([WORKER, "collectives"])
    assert code == 0, err
    assert "collectives ok on rank 0 of 2" in out and "collectives ok on rank 1 of 2" in out


@needs_mpi
def test_two_ranks_of_batch_b_train_like_one_rank_of_batch_2b(tmp_path):
    steps = ["--steps", "10", "--epochs", "1", "--no-eval"]
    code, out, err, _ = launch([SAMPLE, *steps, "--batch-size", "16", "--save", tmp_path / "two.npz"])
    assert code == 0, err
    assert "2 rank(s), 10 steps, parameters identical on every rank" in out
    code, out, err, _ = launch([SAMPLE, *steps, "--batch-size", "32", "--save", tmp_path / "one.npz"], ranks=0)
    assert code == 0, err
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert sorted(two.files) == sorted(one.files)
    for name in one.files:    # the same sums, reassociated: float32 rounding apart
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)


@needs_mpi
def test_a_rank_that_raises_ends_the_job_with_its_error():
    code, out, err, seconds = launch([WORKER, "fail"], timeout=90)
    assert code != 0
    assert seconds < 60
    assert "rank 1 of 2 failed" in err and "rank 1 breaks down at step 3" in err


@needs_mpi
def test_mismatched_shapes_are_reported_not_reduced():
    code, out, err, seconds = launch([WORKER, "mismatch"], timeout=90)
    assert code != 0
    assert "CollectiveMismatch" in err
    assert "rank 0: all_reduce float32[2, 3] ('sum',); rank 1: all_reduce float32[2, 4] ('sum',)" in err

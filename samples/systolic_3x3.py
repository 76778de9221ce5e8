"""The classic systolic-array example, cycle by cycle: y = W x on a 3 x 3 array, batch 3.

    python samples/systolic_3x3.py

The matrix unit is weight stationary: W's entries sit in the PEs, the three input
vectors x0, x1, x2 enter from the left one skewed diagonal at a time, partial sums flow
down, and each y element leaves the bottom of its column. This replays it on tessel's
processing-element simulator (runtime/systolic/pe_array.py), printing at every cycle
what each PE holds: its weight, the input passing through it and the partial sum it
produces, plus the wavefront of busy PEs and the results leaving the array.

The array computes rows of Y = X @ T for a tile T of K = 3 rows and N = 3 columns; with
the batch as the rows of X (X = [x0; x1; x2]) and T = W^T, row t of Y is (W x_t)^T:
PE(r, c) holds W[c, r] and output column c accumulates y[c] = sum_r W[c, r] x[r].
"""
import numpy as np

from tessel.runtime.systolic.mxu_timing import cold_matmul_cycles
from tessel.runtime.systolic.pe_array import NO_OP, PeArray, PeMatmul

W = np.array([[1, 2, 3],
              [4, 5, 6],
              [7, 8, 9]], np.float32)
X = np.array([[1, 0, 2],      # x0
              [3, 1, 0],      # x1
              [0, 2, 1]], np.float32)   # x2: the batch, one input vector per row
N = 3
CELL = 16


def _num(v) -> str:
    return f"{v:g}"


def _cell(text: str) -> str:
    return text.ljust(CELL)


def show_cycle(state) -> None:
    """Print one cycle of the array (an observer for PeArray.run)."""
    notes = []
    if state.shift_started is not None:
        notes.append("weight tile starts shifting into the shadow registers")
    if state.started is not None:
        notes.append("MATMUL starts: x0 enters row 0")
    print(f"cycle {state.cycle}" + (f"  ({'; '.join(notes)})" if notes else ""))
    print("            " + "".join(_cell(f"PE(r,{c})") for c in range(N)))
    for r in range(N):
        weights, inputs, sums = [], [], []
        for c in range(N):
            # Active weight once swapped in (W is all non-zero), else what the shadow
            # register holds while the tile shifts down (tile row 2 enters first).
            if state.active[r, c]:
                weight = f"W{c}{r}={_num(state.active[r, c])}"
            elif state.shadow[r, c]:
                weight = f"shadow={_num(state.shadow[r, c])}"
            else:
                weight = "-"
            weights.append(_cell(weight))
            if state.x_op[r, c] == NO_OP:
                inputs.append(_cell("."))
                sums.append(_cell("."))
            else:
                t = state.x_t[r, c]
                inputs.append(_cell(f"x{t}[{r}]={_num(state.x[r, c])}"))
                sums.append(_cell(f"{_num(state.psum[r, c])}"))
        print(f"  row {r} w   " + "".join(weights))
        print("        in  " + "".join(inputs))
        print("        sum " + "".join(sums))
    busy = [(r, c, int(state.x_t[r, c])) for r in range(N) for c in range(N)
            if state.x_op[r, c] != NO_OP]
    if busy:
        print("  wavefront: " + ", ".join(f"PE({r},{c})<-x{t}" for r, c, t in busy))
    for _, t, c, value in state.leaving:
        print(f"  leaves column {c}: y{t}[{c}] = {_num(value)}")
    print()


def main() -> None:
    print(__doc__.split("\n\n")[0].strip("\n"))
    print(f"W =\n{W}\nbatch (rows x0, x1, x2) =\n{X}\n")
    result = PeArray(N, N).run([PeMatmul(inputs=X, weights=W.T)], observer=show_cycle)
    y = result.outputs[0]                       # row t = (W x_t)^T
    expected = (W @ X.T).T
    print(f"total cycles: {result.total_cycles} "
          f"(2R + C + T - 2 = {cold_matmul_cycles(N, N, X.shape[0])}: R to shift the weights "
          f"in, then T + R + C - 2 to stream, skew and drain)")
    print(f"y (columns are y0, y1, y2 = W x0, W x1, W x2) =\n{y.T}")
    print(f"matches NumPy W @ x: {bool(np.array_equal(y, expected))}")


if __name__ == "__main__":
    main()

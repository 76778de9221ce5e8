"""Benchmarks of tessel against NumPy and jax.jit: `python -m bench` (see bench/README.md).

Not part of the test run and not shipped in the wheel.
"""

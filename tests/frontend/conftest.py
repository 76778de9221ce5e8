import os
import sys

# Shared test helpers (autodiff_checks.py, tracing.py) are imported by name from this folder.
sys.path.insert(0, os.path.dirname(__file__))

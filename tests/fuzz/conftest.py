import os
import sys

# The fuzz helpers (hlo_programs.py, checks.py) are imported by name from this folder.
sys.path.insert(0, os.path.dirname(__file__))

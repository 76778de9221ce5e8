import os
import sys

# The plain-NumPy reference models are imported by name from this folder.
sys.path.insert(0, os.path.dirname(__file__))

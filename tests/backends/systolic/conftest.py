import os
import sys

# The acceptance models (systolic_models.py) are imported by name from this folder.
sys.path.insert(0, os.path.dirname(__file__))

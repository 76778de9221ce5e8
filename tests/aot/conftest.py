import os
import sys

# helpers of these tests (aot_models.py) and the plain NumPy models of tests/models
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "models"))
# the systolic backend's acceptance models (systolic_models.py), for systolic artifacts
sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "backends", "systolic"))

"""`python -m bench` from the repository root: see bench/run.py."""
from .run import main

raise SystemExit(main())

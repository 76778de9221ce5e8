"""`python -m tessel ...` runs the `tessel` command line."""

import sys

from tessel.cli import main

if __name__ == "__main__":
    sys.exit(main())

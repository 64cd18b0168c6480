"""``python -m pipeline.verify STORE``: check a published precomputed store (see :mod:`pipeline.precompute.verify`)."""

import sys

from pipeline.precompute.verify import main

if __name__ == "__main__":
    sys.exit(main())

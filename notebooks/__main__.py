"""``python -m notebooks``: execute every notebook on the default build and regenerate ``notebooks/figures``."""

import sys

from notebooks._execute import main

sys.exit(main())

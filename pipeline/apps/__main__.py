"""``python -m pipeline.apps COMMAND``: the ``rillet`` command without the console script."""

import sys

from pipeline.apps.cli import main

sys.exit(main())

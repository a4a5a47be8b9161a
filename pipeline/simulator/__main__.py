"""``python -m pipeline.simulator``: the standalone server without the ``rillet`` console script."""

from .cli import main

raise SystemExit(main())

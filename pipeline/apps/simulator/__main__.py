"""``python -m pipeline.apps.simulator``: the standalone server without the ``rillet`` console script."""

from .cli import main

raise SystemExit(main())

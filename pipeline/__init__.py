"""rillet: an asyncio stream-processing pipeline for Claude's streaming Messages API.

The public front: everything a program needs to build a pipeline in code. Implementation lives in
the modules; applications (``rillet run``, ``serve``, ``bench``, ...) are built on these names.

The names are listed once, in ``__init__.pyi``, and each is imported on first use: ``import
pipeline.apps.cli`` (every ``rillet`` command) must not pay for the SDK and pydantic models it may never
use.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)

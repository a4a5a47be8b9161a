"""Scale-out on Redis Streams: durable report jobs, fenced takeover, shared per-job event logs.

The names other applications use (``rillet serve``'s replicas read the job logs) are listed once, in
``__init__.pyi``, and each is imported on first use: ``rillet jobs`` must not load the SDK.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)

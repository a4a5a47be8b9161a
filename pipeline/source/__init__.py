"""The source and its internals: HTTP attempts, retries, resumes and the stitching of continuations.

:mod:`~pipeline.source.stream` is the source itself; ``resume`` and ``backoff`` are the policies a
user can set; the ``_private`` modules are the source's alone.
"""

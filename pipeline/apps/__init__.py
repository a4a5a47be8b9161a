"""rillet's applications, one folder each, built on the library below (:mod:`pipeline`, :mod:`sinks`).

``cli`` is the ``rillet`` command that dispatches to them; ``shared`` and ``embedded_server`` hold
what two applications share. The layers and the import rules are in ``docs/architecture.md``.
"""

"""``rillet serve``: streams re-emitted to browsers over SSE, and a page to watch a report being written.

See ``docs/browser.md`` for the event names, the API and the security model.
"""

from pipeline.apps.serve._app import create_app
from pipeline.apps.serve._errors import Busy
from pipeline.apps.serve._registry import RegistryStatistics, StreamEntry, StreamRegistry
from pipeline.apps.serve._render import render_markdown
from pipeline.apps.serve._replica import Replica, open_replica
from pipeline.apps.serve._server import Server, open_server
from pipeline.apps.serve._settings import ServeSettings

__all__ = [
    "Busy",
    "RegistryStatistics",
    "Replica",
    "ServeSettings",
    "Server",
    "StreamEntry",
    "StreamRegistry",
    "create_app",
    "open_replica",
    "open_server",
    "render_markdown",
]

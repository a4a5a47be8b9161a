"""A local stand-in for Claude's Messages API, byte-exact on the wire, deterministic in content.

The real ``anthropic`` SDK talks to it over loopback HTTP::

    async with open_simulator(SimulatorSettings(scenario="report")) as sim:
        client = AsyncAnthropic(base_url=sim.base_url, api_key="sim")

See ``_app`` for the per-request ``x-rillet-*`` headers, ``_text`` for what a token is, ``_plan``
for prefill and continue resumes, ``SimulatorSettings`` for timing, and ``PRESETS`` for the
embedded simulator's ``claude`` (realistic pace, the default of ``rillet run``) and ``fast`` settings.
"""

from ._app import create_app
from ._models import supports_prefill
from ._plan import reference_plan, reference_text
from ._scenarios import SCENARIO_NAMES
from ._server import Simulator, open_simulator
from ._settings import PRESETS, SimulatorSettings
from ._text import count_tokens
from ._validation import PREFILL_UNSUPPORTED, TRAILING_WHITESPACE, ApiError

__all__ = [
    "PREFILL_UNSUPPORTED",
    "PRESETS",
    "SCENARIO_NAMES",
    "TRAILING_WHITESPACE",
    "ApiError",
    "Simulator",
    "SimulatorSettings",
    "count_tokens",
    "create_app",
    "open_simulator",
    "reference_plan",
    "reference_text",
    "supports_prefill",
]

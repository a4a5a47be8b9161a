"""``rillet run`` on the SDK's own transport: over TLS with a CA the environment names, and through
an HTTP proxy, as a user behind a corporate gateway would run it.

The API here is the simulator behind a TLS terminator with a certificate from a throwaway CA
(trustme); the client trusts that CA only through ``SSL_CERT_FILE``, the SDK's own way.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import trustme

from pipeline.apps.simulator import open_simulator, reference_text
from tests.conftest import clean_environment
from tests.relays import connect_proxy, tls_front

pytestmark = pytest.mark.anyio

RILLET = str(Path(sys.executable).with_name("rillet"))
MAX_TOKENS = 60
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@asynccontextmanager
async def _https_api(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """The simulator over https; yields its URL and the PEM file of the CA that signed it."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    async with open_simulator() as sim, tls_front(sim.base_url, context) as url:
        yield url, ca_file


async def _run(tmp_path: Path, **env: str) -> tuple[int, str, str]:
    """``rillet run`` with a short report; its status, stderr, and the report file."""
    await anyio.Path(tmp_path).mkdir(exist_ok=True)
    out = tmp_path / "report.md"
    environment = {
        name: value for name, value in clean_environment().items() if name.lower() not in PROXY_VARIABLES
    }
    done = await anyio.run_process(
        [RILLET, "run", "--prompt", "Say something.", "--max-tokens", str(MAX_TOKENS), "--out", str(out)],
        env=environment | {"ANTHROPIC_API_KEY": "any"} | env,
        cwd=tmp_path,
        check=False,
    )
    return done.returncode, done.stderr.decode(), out.read_text(encoding="utf-8") if out.exists() else ""


def _expected() -> str:
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "Say something."}],
    }
    return reference_text(request)


async def test_run_over_tls_trusts_the_ca_that_ssl_cert_file_names(tmp_path: Path) -> None:
    async with _https_api(tmp_path) as (url, ca_file):
        status, stderr, report = await _run(tmp_path, ANTHROPIC_BASE_URL=url, SSL_CERT_FILE=str(ca_file))
        untrusted, untrusted_err, _ = await _run(tmp_path / "untrusted", ANTHROPIC_BASE_URL=url)
    assert (status, stderr.count("\n")) == (0, 1), stderr
    assert report.startswith(_expected())
    assert (untrusted, "APIConnectionError" in untrusted_err) == (1, True)  # the CA is trusted nowhere else


async def test_run_goes_through_the_https_proxy_the_environment_names(tmp_path: Path) -> None:
    tunnels: list[str] = []
    async with _https_api(tmp_path) as (url, ca_file), connect_proxy(tunnels) as proxy:
        status, stderr, report = await _run(
            tmp_path, ANTHROPIC_BASE_URL=url, SSL_CERT_FILE=str(ca_file), HTTPS_PROXY=proxy
        )
    assert status == 0, stderr
    assert report.startswith(_expected())
    assert tunnels == [url.removeprefix("https://")]

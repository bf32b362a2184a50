"""`leadflow web` as an admin starts it: a real server on loopback, and clear refusals when misconfigured."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from leadflow.cli.workspace_setup import init_workspace
from leadflow.leads.config.workspace import load_config
from leadflow.nurture.links import LinkSigner
from leadflow.web.app import WebConfigError, create_app
from tests.peers import free_port
from tests.web.conftest import EXAMPLE, web_settings

LEADFLOW = str(Path(sys.executable).with_name("leadflow"))


def _env() -> dict[str, str]:
    """The caller's environment without leadflow settings, so the workspace's .env decides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}


def test_leadflow_web_serves_the_workspace(tmp_path: Path) -> None:
    init_workspace(tmp_path)
    secret = next(
        line.split("=", 1)[1] for line in (tmp_path / ".env").read_text().splitlines() if line.startswith("LEADFLOW_")
    )
    port = free_port()
    server = subprocess.Popen(
        [LEADFLOW, "web", "--host", "127.0.0.1", "--port", str(port), "--workspace", str(tmp_path)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "leadflow web did not start within 30 s"
                time.sleep(0.1)
        assert health.status_code == 200 and health.text == "ok"
        # The database was created on start: a link for a lead that does not exist is a clear 404 page.
        link = LinkSigner(secret_key=secret, public_base_url=base).unsubscribe_url(1, "warm-up")
        page = httpx.get(link, timeout=5)
        assert page.status_code == 404 and "We could not find your subscription" in page.text
        assert (tmp_path / "leadflow.db").exists()
    finally:
        server.terminate()
        server.wait(10)


def test_leadflow_web_without_a_secret_key_says_what_to_do(tmp_path: Path) -> None:
    init_workspace(tmp_path)
    (tmp_path / ".env").write_text("")
    result = subprocess.run(
        [LEADFLOW, "web", "--port", str(free_port()), "--workspace", str(tmp_path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "LEADFLOW_SECRET_KEY is not set" in result.stdout


def test_an_unusable_inbound_secret_is_refused_at_start(tmp_path: Path, sqlite_url: str) -> None:
    with pytest.raises(WebConfigError, match="LEADFLOW_INBOUND_SECRET"):
        create_app(web_settings(tmp_path, sqlite_url, inbound_secret="whsec_%%%"), config=load_config(EXAMPLE))

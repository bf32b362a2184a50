"""A recipient unsubscribes in a real browser (Debian's Chromium, headless) and the next nurture run honours it.

The app is served by uvicorn on loopback; the workspace and its first pipeline run are set up as in
tests/flows/test_pipeline.py, so the link followed is the List-Unsubscribe URL of an email really sent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import sync_playwright
from sqlalchemy import select
from sqlmodel import Session
from starlette.applications import Starlette

from leadflow.flows.nurture import nurture_flow
from leadflow.flows.params import NurtureParams
from leadflow.leads.config.settings import load_settings
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import Lead, Suppression
from leadflow.web.app import create_app
from tests.flows.test_pipeline import END, emails_in, make_workspace, run
from tests.peers import free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it
pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    # A skip only where no browser is installed; CI installs it and forbids skips.
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextmanager
def serving(app: Starlette, port: int) -> Iterator[None]:
    """uvicorn in a thread on 127.0.0.1:port until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def _recipients(folder: Path) -> Counter[str]:
    return Counter(str(message["To"]) for message in emails_in(folder))


def test_unsubscribe_in_chromium_then_the_next_nurture_run_sends_that_lead_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=150, extra_env=f"LEADFLOW_PUBLIC_BASE_URL={base}\n")
    first = run(folder)
    assert first.nurture.sent >= 2
    message = emails_in(folder)[0]
    address = str(message["To"])
    link = str(message["List-Unsubscribe"]).strip("<>")
    assert link.startswith(f"{base}/u/")

    with serving(create_app(load_settings(folder)), port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            response = page.goto(link)
            assert response is not None and response.status == 200
            assert page.get_by_role("heading", name="Unsubscribe").is_visible()
            everything = page.get_by_role("radio", name="All marketing email from Acme Growth Team")
            assert everything.is_checked()
            assert page.get_by_role("radio", name="Only this series of emails").is_visible()
            button = page.get_by_role("button", name="Unsubscribe")
            box = button.bounding_box()
            assert box is not None and box["height"] >= 44  # a comfortable tap target
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling

            button.click()
            page.get_by_role("heading", name="You are unsubscribed").wait_for(timeout=10_000)
            assert "will get no more marketing email from Acme Growth Team" in page.content()
        finally:
            browser.close()

    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        lead = session.scalars(select(Lead).where(Lead.email == address)).one()
        assert lead.unsubscribed_at is not None
        log = session.execute(select(Suppression.scope, Suppression.source).where(Suppression.email == address)).all()
        assert [tuple(row) for row in log] == [("all", "web")]
    engine.dispose()

    before = _recipients(folder)
    later = nurture_flow(NurtureParams(workspace=str(folder), as_of=END + timedelta(days=5)))
    after = _recipients(folder)
    assert later.sent > 0
    assert after[address] == before[address] == 1  # the first email only
    assert sum((after - before).values()) == later.sent  # the others got their next step

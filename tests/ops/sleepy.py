"""A flow that runs until it is killed: the process a crash-detection test kills with SIGKILL."""

from __future__ import annotations

import time

from prefect import flow


@flow(name="sleepy")
def sleepy_flow(seconds: float = 900) -> None:
    time.sleep(seconds)  # the behaviour under test: a run that is still going when it is killed

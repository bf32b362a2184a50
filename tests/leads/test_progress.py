"""Progress counting: throttled for whoever shows it, exact at the end, safe from several threads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from leadflow.leads.work.progress import Progress


def test_many_small_advances_reach_the_listener_a_few_times_a_second_and_the_end_exactly() -> None:
    told: list[tuple[int, int | None, bool]] = []
    progress = Progress(lambda *update: told.append(update), interval=0.05)
    progress.expect(400_000)
    started = time.monotonic()

    def send(rows: int) -> None:
        for _ in range(rows):
            progress.advance()

    with ThreadPoolExecutor(4) as pool:  # parallel senders advance the same progress
        list(pool.map(send, [100_000] * 4))
    elapsed = time.monotonic() - started
    progress.finish()

    assert told[0] == (0, 400_000, False)  # the total, at once
    assert told[-1] == (400_000, 400_000, True)
    assert len(told) <= elapsed / 0.05 + 3  # not once per row
    assert [done for done, _, _ in told] == sorted(done for done, _, _ in told)


def test_an_estimate_that_was_off_still_ends_at_what_was_done() -> None:
    told: list[tuple[int, int | None, bool]] = []
    progress = Progress(lambda *update: told.append(update))
    progress.expect(1_000)
    progress.advance(990)
    progress.finish()
    assert told[-1] == (990, 990, True)

"""Parsing processes for big activity files: forked, fed line-aligned ranges, answering with chunks.

They are forked, so they inherit the parser's settings and the open file. leadflow runs them
itself rather than through `multiprocessing.Pool`: a Pool stops its workers with SIGTERM and then waits
for each without a bound, and a forked worker inherits the parent's signal handlers. Under a Prefect
flow run that handler is Prefect's (it raises `TerminationSignal`), so SIGTERM no longer ended a worker:
it ran Python's exit path instead (a traceback to stderr, stream flushes), and a lock another thread of
the parent held at fork time (a stream's, a logger's) could block that path for good, with the
parent waiting in the Pool's teardown. Here a worker restores the default handlers, ends with
`os._exit` (no exit path at all), and the parent waits for it a bounded time, then kills it.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from typing import Any

from leadflow.connectors.file_chunks import Chunk, parse_chunk
from leadflow.leads.ingest.parser import ActivityParser
from leadflow.leads.ingest.records import PlusAddressing
from leadflow.leads.work.gc_pause import cycle_collector_paused

__all__ = ["ParsingStopped", "parsed_in_workers"]

WORKER_NICENESS = 5
_worker: dict[str, Any] = {}  # a worker's parser and CSV header, set once when it starts
WORKER_SILENCE_SECONDS = 300.0  # a chunk takes well under a second; no word for this long is a stuck worker
WORKER_EXIT_SECONDS = 10.0


class ParsingStopped(RuntimeError):
    """A parsing process died or went silent: the run stops here and the next one resumes at the cursor."""


def _init_worker(now: datetime, plus_addressing: PlusAddressing, header: list[str] | None) -> None:
    gc.disable()  # a worker's objects live one chunk; see leads.gc_pause
    # The storing process is the pipeline's bottleneck: on a busy machine it gets the CPU first, the
    # workers (a few chunks ahead) what is left.
    os.nice(WORKER_NICENESS)
    _worker.update(parse=ActivityParser(now=now, plus_addressing=plus_addressing), header=header)


def _parse_in_worker(fd: int, start: int, end: int) -> bytes:
    return marshal.dumps(parse_chunk(_pread(fd, start, end), start, _worker["header"], _worker["parse"]))


def _pread(fd: int, start: int, end: int) -> bytes:
    """Bytes [start, end) of an open file, without moving its (shared) offset."""
    parts = []
    while start < end:
        part = os.pread(fd, end - start, start)
        if not part:
            raise EOFError(f"the file ended at byte {start}, before {end}")
        parts.append(part)
        start += len(part)
    return b"".join(parts)


# Signals held back while a worker starts: the child resets their handlers and then lets them in.
_STARTING = {signal.SIGTERM, signal.SIGINT}


def _worker_main(tasks: Any, results: Connection, others: list[Connection], fd: int, settings: tuple[Any, ...]) -> None:
    """A parsing process: takes (number, start, end) ranges off the shared queue, answers each with
    (number, ok) and one `marshal` blob (the chunk, or the pickled error); None or the parent gone (EOF)
    ends it."""
    code = 1
    try:
        # Inherited handlers are the parent's (Prefect's SIGTERM bridge, say): a SIGTERM ends a worker at
        # once, and Ctrl-C in a terminal is the parent's to handle (it then stops the workers).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Blocked by the parent across the fork (see _STARTING): one sent before the lines above is
        # delivered now, under them, instead of being swallowed by an inherited handler.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STARTING)
        tasks._writer.close()  # with the parent's ends closed here, EOF says the parent is gone (as in Pool)
        for connection in others:
            connection.close()
        _init_worker(*settings)
        while (task := tasks.get()) is not None:
            number, start, end = task
            try:
                blob, ok = _parse_in_worker(fd, start, end), True
            except Exception as exc:
                blob, ok = pickle.dumps(exc), False
            results.send((number, ok))
            results.send_bytes(blob)
        code = 0
    except EOFError:
        code = 0
    finally:
        os._exit(code)  # nothing of the parent's exit path runs here: no flush, no atexit, no lock


class _Workers:
    """A few forked parsing processes sharing one queue of ranges (the first free takes the next, as in a
    Pool), each answering through its own pipe; a thread per worker takes the answers off as they come,
    so a worker parses its next range while this process stores instead of waiting to hand over."""

    def __init__(self, fd: int, settings: tuple[Any, ...], count: int, *, name: str) -> None:
        self.name = name  # the file's, for errors
        context = multiprocessing.get_context("fork")
        self.tasks = context.SimpleQueue()
        pipes = [context.Pipe(duplex=False) for _ in range(count)]  # (this process's reader, the worker's sender)
        self.results = [reader for reader, _ in pipes]
        self.processes: list[Any] = []
        self.answers: dict[int, tuple[bool, bytes]] = {}
        self.ended: list[Any] = []  # workers gone (died, or stopped)
        self.changed = threading.Condition()
        try:
            for n, (_, sender) in enumerate(pipes):
                others = [c for m, pipe in enumerate(pipes) for c in pipe if m != n or c is pipe[0]]
                process = context.Process(
                    target=_worker_main,
                    args=(self.tasks, sender, others, fd, settings),
                    name=f"leadflow-parse-{n}",
                    daemon=True,
                )
                held = signal.pthread_sigmask(signal.SIG_BLOCK, _STARTING)
                try:
                    process.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                self.processes.append(process)
        except BaseException:
            self.stop(finished=False)
            raise
        finally:
            for _, sender in pipes:
                sender.close()
            self.tasks._reader.close()  # type: ignore[attr-defined]  # (Pool closes it the same way)
        self.readers = [threading.Thread(target=self._read, args=(n,), daemon=True) for n in range(count)]
        for reader in self.readers:
            reader.start()

    def _read(self, n: int) -> None:
        results, process = self.results[n], self.processes[n]
        try:
            while results in mp_connection.wait([results, process.sentinel]):
                number, ok = results.recv()
                blob = results.recv_bytes()
                with self.changed:
                    self.answers[number] = (ok, blob)
                    self.changed.notify_all()
        except (EOFError, OSError):
            pass
        with self.changed:
            self.ended.append(process)
            self.changed.notify_all()

    def send(self, number: int, start: int, end: int) -> None:
        self.tasks.put((number, start, end))

    def receive(self, number: int, start: int, end: int) -> Chunk:
        """The chunk parsed from [start, end) (range `number`); a worker that died or went silent is an error."""
        with self.changed:
            self.changed.wait_for(lambda: number in self.answers or self.ended, timeout=WORKER_SILENCE_SECONDS)
            answer = self.answers.pop(number, None)
            ended = list(self.ended)
        if answer is None:
            for process in ended:
                process.join(1)
            why = (
                f"(pid {ended[0].pid}) ended (exit code {ended[0].exitcode})"
                if ended
                else f"gave no result in {WORKER_SILENCE_SECONDS:.0f} s"
            )
            raise ParsingStopped(f"a parsing process {why} on bytes {start}-{end} of {self.name}")
        ok, blob = answer
        if not ok:
            raise pickle.loads(blob)
        with cycle_collector_paused():
            chunk: Chunk = marshal.loads(blob)
        return chunk

    def stop(self, *, finished: bool) -> None:
        """Finished: ask each worker to end and wait a bounded time; else (or still running then) kill."""
        if finished:
            for _ in self.processes:
                with contextlib.suppress(OSError):
                    self.tasks.put(None)
            deadline = time.monotonic() + WORKER_EXIT_SECONDS
            for process in self.processes:
                process.join(max(deadline - time.monotonic(), 0))
        for process in self.processes:
            if process.exitcode is None:
                process.kill()  # SIGKILL: cannot be caught, so this join ends
                process.join()
        for reader in getattr(self, "readers", ()):
            reader.join(WORKER_EXIT_SECONDS)  # its worker has ended: it stops at once
        self.tasks.close()
        for results in self.results:
            results.close()


def parsed_in_workers(
    fd: int,
    ranges: Iterator[tuple[int, int]],
    header: list[str] | None,
    now: datetime,
    plus_addressing: PlusAddressing,
    workers: int,
    *,
    name: str,
) -> Iterator[tuple[int, Chunk]]:
    """`_parse_chunk` of each range in forked processes, results in file order, a few ahead."""
    pool = _Workers(fd, (now, plus_addressing, header), workers, name=name)
    finished = False
    try:
        ahead: deque[tuple[int, int, int]] = deque()
        for n, (start, end) in enumerate(ranges):
            pool.send(n, start, end)
            ahead.append((n, start, end))
            if len(ahead) > 2 * workers + 1:
                number, first, last = ahead.popleft()
                yield last, pool.receive(number, first, last)
        while ahead:
            number, first, last = ahead.popleft()
            yield last, pool.receive(number, first, last)
        finished = True
    finally:
        pool.stop(finished=finished)

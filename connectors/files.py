"""JSONL and CSV activity files, read incrementally, parsed in worker processes when big.

The cursor per file is the byte offset after the last complete line that was committed, plus a
fingerprint of the file's first line: appending to a file picks up only the new lines, and a
file replaced by another starts over (re-reading is harmless, source ids make it a no-op).
A last line without its newline may still be being written, so it waits for the next run.

The file is cut into line-aligned byte ranges ("chunks"); each chunk is decoded and validated
into plain tuples (`ActivityRow`s and rejected lines with their line numbers) by
`_parse_chunk`, either in this process or, for a big remainder, in forked worker processes
that hand the tuples back as one `marshal` blob per chunk. Pages are then cut from the chunks'
items in file order, so pages, cursors and quarantine rows are the same whichever way a chunk
was parsed, and the caller (`sync_source`) stores each page with its cursor as before.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import json
import marshal
import multiprocessing
import os
import pickle
import signal
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from leadflow.connectors.pages import Page
from leadflow.leads.db.models import PROFILE_FIELDS
from leadflow.leads.ingest.parser import ActivityParser
from leadflow.leads.ingest.records import PlusAddressing, RecordError, Rejected
from leadflow.leads.ingest.rows import ActivityColumns
from leadflow.leads.work.gc_pause import cycle_collector_paused

__all__ = ["FileActivitySource", "Page"]

SUFFIXES = (".jsonl", ".csv")
CORE_COLUMNS = ("id", "email", "type", "at", "target")
LEAD_COLUMNS = tuple(PROFILE_FIELDS)
CHUNK_BYTES = 2 << 20  # about 14,000 typical lines; 2 MB reached the first page sooner than 4 MB, same throughput
PARALLEL_MIN_BYTES = 32 << 20  # below this a pool of processes costs more than it saves
MAX_WORKERS = 3
WORKER_NICENESS = 5

# A chunk: (the seven columns of its valid records (see `ActivityRow`), its rejected lines as (item
# number, line in chunk, reason, detail, raw text), the end offset and the line in chunk of each item
# (the bytes of an `array("q")` each: a million Python ints cost the storing process more to receive),
# the number of lines read). Items are the non-blank lines: records and rejected lines, in file order.
Rejection = tuple[int, int, str, str, str]
Item = tuple[Any, ...]  # an `ActivityRow`, or (None, line in chunk, reason, detail, raw text) for a rejected line
Chunk = tuple[list[tuple[Any, ...]], list[Rejection], bytes, bytes, int]


class FileActivitySource:
    """Reads `path` (a file, or a folder of .jsonl/.csv files) from the saved cursors on."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        batch_size: int = 5000,
        plus_addressing: PlusAddressing = "keep",
        workers: int | None = None,
        parallel_min_bytes: int | None = None,
    ) -> None:
        """`workers`: parsing processes for a remainder of at least `parallel_min_bytes` (defaults:
        `default_workers()`, `PARALLEL_MIN_BYTES`; 0 workers parses in this process)."""
        self.name = name
        self.path = path
        self.batch_size = batch_size
        self.plus_addressing = plus_addressing
        self.workers = default_workers() if workers is None else workers
        self.parallel_min_bytes = PARALLEL_MIN_BYTES if parallel_min_bytes is None else parallel_min_bytes

    def files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not self.path.exists():
            raise FileNotFoundError(f"source {self.name!r}: {self.path} does not exist")
        return [self.path]

    def streams(self) -> list[Path]:
        """A stream per file; its cursor is saved under the file's name."""
        return self.files()

    def remaining_bytes(self, file: Path, cursor: dict[str, Any] | None) -> int:
        """About how much of `file` is still to read from `cursor` (the whole file if it was replaced)."""
        size = file.stat().st_size
        if cursor and cursor.get("fingerprint") == self._fingerprint(file) and cursor.get("offset", 0) <= size:
            return size - int(cursor["offset"])
        return size

    def estimated_rows(self, file: Path, cursor: dict[str, Any] | None) -> int:
        """About how many lines remain after `cursor`, from the length of the first lines among them."""
        remaining = self.remaining_bytes(file, cursor)
        if remaining <= 0:
            return 0
        with file.open("rb") as handle:
            handle.seek(file.stat().st_size - remaining)
            sample = handle.read(1 << 20)
        return remaining * max(sample.count(b"\n"), 1) // max(len(sample), 1)

    def _fingerprint(self, file: Path) -> str:
        with file.open("rb") as handle:
            return self._identity(file, handle)[1]

    @staticmethod
    def _identity(file: Path, handle: Any) -> tuple[list[str] | None, str]:
        first = handle.readline()
        header = _csv_header(first) if file.suffix.lower() == ".csv" else None
        # A CSV export replaced by the next one keeps its header: the first row tells them apart.
        identity = first + handle.readline() if header is not None else first
        return header, hashlib.sha256(identity).hexdigest()[:16]

    def pages(self, file: Path, cursor: dict[str, Any] | None, *, now: datetime) -> Iterator[Page]:
        """Pages of `file` after `cursor`; each page's cursor covers exactly the lines in it."""
        with file.open("rb") as handle:
            header, fingerprint = self._identity(file, handle)
            size = file.stat().st_size
            offset, line_no = 0, 0
            if cursor and cursor.get("fingerprint") == fingerprint and cursor.get("offset", 0) <= size:
                offset, line_no = int(cursor["offset"]), int(cursor["line"])
            ranges = _line_ranges(handle, offset)
            if self.workers > 0 and size - offset >= self.parallel_min_bytes:
                # The workers read the open file (inherited across fork), not its path: a file replaced
                # meanwhile cannot mix into this read.
                chunks = _parsed_in_workers(
                    handle.fileno(), ranges, header, now, self.plus_addressing, self.workers, name=file.name
                )
            else:
                parse = ActivityParser(now=now, plus_addressing=self.plus_addressing)
                chunks = (_parse_range(handle, start, end, header, parse) for start, end in ranges)
            yield from self._cut_pages(file, fingerprint, chunks, offset, line_no, first_read=cursor is None)

    def _cut_pages(
        self,
        file: Path,
        fingerprint: str,
        chunks: Iterator[tuple[int, Chunk]],
        offset: int,
        line_no: int,
        *,
        first_read: bool,
    ) -> Iterator[Page]:
        """Pages of `batch_size` items (records and rejected lines) from the chunks, in file order.

        A full page's cursor is the offset and line after its last item; the last page's is the end of
        the last complete line. An empty last page is only yielded on a file's very first read, so
        its cursor (and fingerprint) is saved. The records' columns are joined and cut as whole lists,
        never row by row.
        """
        batch = self.batch_size
        columns: list[list[Any]] = [[] for _ in range(7)]
        rejected: list[Rejection] = []  # item number in the buffer, line in the file, reason, detail, raw
        ends = array("q")  # the end offset of each item in the buffer
        lines = array("q")  # the line of each item within its chunk
        bases: list[tuple[int, int]] = []  # (the buffer's item number where a chunk starts, lines before it)
        yielded = False
        for end, (chunk_columns, chunk_rejected, chunk_ends, chunk_lines, count) in chunks:
            held = len(ends)
            if chunk_rejected:
                rejected += [(held + n, line_no + line, *rest) for n, line, *rest in chunk_rejected]
            for column, part in zip(columns, chunk_columns, strict=False):
                column += part
            ends.frombytes(chunk_ends)
            lines.frombytes(chunk_lines)
            bases.append((held, line_no))
            line_no += count
            offset = end
            while len(ends) >= batch:
                refused = bisect_left(rejected, (batch,))
                kept = batch - refused
                page_columns = [column[:kept] for column in columns]
                last_line = bases[bisect_right(bases, (batch - 1, line_no)) - 1][1] + lines[batch - 1]
                yield self._page(file, fingerprint, page_columns, rejected[:refused], ends[batch - 1], last_line)
                yielded = True
                for column in columns:
                    del column[:kept]
                rejected = [(n - batch, *rest) for n, *rest in rejected[refused:]]
                del ends[:batch], lines[:batch]
                first = bisect_right(bases, (batch, line_no)) - 1  # the chunk the next item belongs to
                bases = [(max(start - batch, 0), before) for start, before in bases[first:]]
        if ends or (first_read and not yielded):
            yield self._page(file, fingerprint, columns, rejected, offset, line_no)

    @staticmethod
    def _page(
        file: Path, fingerprint: str, columns: list[list[Any]], rejected: list[Rejection], offset: int, line_no: int
    ) -> Page:
        return Page(
            file.name,
            ActivityColumns(columns),
            [Rejected(f"{file.name}:{line}", reason, detail, raw) for _, line, reason, detail, raw in rejected],
            {"offset": offset, "line": line_no, "fingerprint": fingerprint},
        )


def default_workers() -> int:
    """Parsing processes: one per CPU, at most `MAX_WORKERS`, none on a single CPU or without fork.

    One per CPU rather than one per CPU but one: the storing process waits on SQLite now and then, and
    on 2 CPUs two workers kept it fed better than one (8.7 s against 10.3 s for the benchmark's file).
    """
    cpus = os.cpu_count() or 1
    return min(MAX_WORKERS, cpus) if cpus > 1 and hasattr(os, "fork") else 0


def _line_ranges(handle: Any, offset: int) -> Iterator[tuple[int, int]]:
    """Line-aligned (start, end) byte ranges of about `CHUNK_BYTES` from `offset` to the last newline."""
    start = offset
    while True:
        handle.seek(start + CHUNK_BYTES)
        rest = handle.readline()
        if rest.endswith(b"\n"):
            end = start + CHUNK_BYTES + len(rest)
        else:  # the end of the file: up to its last complete line
            handle.seek(start)
            end = start + handle.read().rfind(b"\n") + 1
            if end > start:
                yield start, end
            return
        yield start, end
        start = end


def _parse_range(
    handle: Any, start: int, end: int, header: list[str] | None, parse: ActivityParser
) -> tuple[int, Chunk]:
    handle.seek(start)
    with cycle_collector_paused():
        return end, _parse_chunk(handle.read(end - start), start, header, parse)


def _parse_chunk(data: bytes, start: int, header: list[str] | None, parse: ActivityParser) -> Chunk:
    """Decode and validate complete lines; every non-blank line gives one item (a record or a rejection),
    in order. The records come back as seven columns (`zip` builds them in C)."""
    rows: list[Item] = []
    rejected: list[Rejection] = []
    ends = array("q")
    lines = array("q")
    read_csv = partial(_csv_record, header=header) if header is not None else None
    json_row, add_row, add_end, add_line = parse.json_row, rows.append, ends.append, lines.append
    offset, n = start, 0
    parts = data.split(b"\n")
    parts.pop()  # what follows the last newline: nothing, ranges end at one
    for line in parts:
        n += 1
        offset += len(line) + 1
        item = json_row(line) if read_csv is None else None
        if item is None:  # CSV, or a JSON line out of the common shape: the general way, which names any fault
            if read_csv is not None:
                if start == 0 and n == 1:
                    continue  # the header
                item = _text_item(line, n, read_csv, parse)
            else:
                item = _json_item(line, n, parse)
            if item is None:  # a blank line
                continue
        if item[0] is None:
            rejected.append((len(ends), *item[1:]))
        else:
            add_row(item)
        add_end(offset)
        add_line(n)
    return list(zip(*rows, strict=True)), rejected, ends.tobytes(), lines.tobytes(), n


def _json_item(line: bytes, n: int, parse: ActivityParser) -> Item | None:
    """A JSON line the fast decoder refused: through orjson and `ActivityParser.row`, or the text parser."""
    try:
        raw = orjson.loads(line)
        if type(raw) is not dict:
            raise TypeError
        return parse.row(raw, raw_size=len(line) + 1)
    except RecordError as exc:
        return (None, n, exc.reason, exc.detail, _line_text(line))
    except (orjson.JSONDecodeError, TypeError):
        return _text_item(line, n, _json_record, parse)


def _text_item(line: bytes, n: int, read: Callable[[str], dict[str, Any]], parse: ActivityParser) -> Item | None:
    """A CSV row, or a JSON line the fast parser refused: blank (None), read by `read` and parsed, or rejected."""
    text = _line_text(line)
    if not text.strip():
        return None
    try:
        return parse.row(read(text))
    except RecordError as exc:
        return (None, n, exc.reason, exc.detail, text)


# Worker processes: forked, so they inherit the parser's settings and the open file. leadflow runs them
# itself rather than through `multiprocessing.Pool`: a Pool stops its workers with SIGTERM and then waits
# for each without a bound, and a forked worker inherits the parent's signal handlers. Under a Prefect
# flow run that handler is Prefect's (it raises `TerminationSignal`), so SIGTERM no longer ended a worker:
# it ran Python's exit path instead (a traceback to stderr, stream flushes), and a lock another thread of
# the parent held at fork time (a stream's, a logger's) could block that path for good, with the
# parent waiting in the Pool's teardown. Here a worker restores the default handlers, ends with
# `os._exit` (no exit path at all), and the parent waits for it a bounded time, then kills it.
_worker: dict[str, Any] = {}
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
    return marshal.dumps(_parse_chunk(_pread(fd, start, end), start, _worker["header"], _worker["parse"]))


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
                process.start()
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


def _parsed_in_workers(
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


def _line_text(raw_line: bytes) -> str:
    return raw_line.decode("utf-8", errors="replace").rstrip("\r\n")


def _json_record(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError("bad_json", f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise RecordError("bad_json", "nested too deeply") from None
    if not isinstance(value, dict):
        raise RecordError("bad_json", "each line must be a JSON object")
    return value


def _csv_header(first: bytes) -> list[str]:
    return [h.strip().lower() for h in next(csv.reader([first.decode("utf-8-sig").rstrip("\r\n")]))]


def _csv_record(text: str, header: list[str]) -> dict[str, Any]:
    """A CSV row: core columns, lead profile columns, and every other column as a property."""
    values = next(csv.reader([text]))
    if len(values) != len(header):
        raise RecordError("bad_csv", f"expected {len(header)} columns, found {len(values)}")
    row = dict(zip(header, values, strict=True))
    record: dict[str, Any] = {k: row.get(k) for k in CORE_COLUMNS}
    record["lead"] = {k: row[k] for k in LEAD_COLUMNS if row.get(k)}
    record["properties"] = {k: v for k, v in row.items() if k not in CORE_COLUMNS and k not in LEAD_COLUMNS and v}
    return record

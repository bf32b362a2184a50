"""JSONL and CSV activity files, read incrementally, parsed in worker processes when big.

The cursor per file is the byte offset after the last complete line that was committed, plus a
fingerprint of the file's first line: appending to a file picks up only the new lines, and a
file replaced by another starts over (re-reading is harmless, source ids make it a no-op).
A last line without its newline may still be being written, so it waits for the next run.

The file is cut into line-aligned byte ranges ("chunks"); each chunk is decoded and validated
into plain tuples (`ActivityRow`s and rejected lines with their line numbers) by `parse_chunk`
(connectors/file_chunks.py), either in this process or, for a big remainder, in forked worker
processes (connectors/parse_workers.py) that hand the tuples back as one `marshal` blob per
chunk. Pages are then cut from the chunks' items in file order, so pages, cursors and quarantine
rows are the same whichever way a chunk was parsed, and the caller (`sync_source`) stores each
page with its cursor as before.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from leadflow.connectors.file_chunks import Chunk, Rejection, csv_header, parse_chunk
from leadflow.connectors.pages import Page
from leadflow.connectors.parse_workers import parsed_in_workers
from leadflow.leads.ingest.parser import ActivityParser
from leadflow.leads.ingest.records import PlusAddressing, Rejected
from leadflow.leads.ingest.rows import ActivityColumns
from leadflow.leads.work.gc_pause import cycle_collector_paused

__all__ = ["FileActivitySource", "Page"]

SUFFIXES = (".jsonl", ".csv")
CHUNK_BYTES = 2 << 20  # about 14,000 typical lines; 2 MB reached the first page sooner than 4 MB, same throughput
PARALLEL_MIN_BYTES = 32 << 20  # below this a pool of processes costs more than it saves
MAX_WORKERS = 3


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
        header = csv_header(first) if file.suffix.lower() == ".csv" else None
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
                chunks = parsed_in_workers(
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
                rejected += [(held + n, line_no + line, why, info, raw) for n, line, why, info, raw in chunk_rejected]
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
                rejected = [(n - batch, line, why, detail, raw) for n, line, why, detail, raw in rejected[refused:]]
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
        return end, parse_chunk(handle.read(end - start), start, header, parse)

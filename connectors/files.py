"""JSONL and CSV activity files, read incrementally.

The cursor per file is the byte offset after the last complete line that was committed, plus a
fingerprint of the file's first line: appending to a file picks up only the new lines, and a
file replaced by another starts over (re-reading is harmless, source ids make it a no-op).
A last line without its newline may still be being written, so it waits for the next run.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from connectors.pages import Page
from leads.records import PROFILE_FIELDS, ActivityParser, ActivityRecord, PlusAddressing, RecordError, Rejected

__all__ = ["FileActivitySource", "Page"]

SUFFIXES = (".jsonl", ".csv")
CORE_COLUMNS = ("id", "email", "type", "at", "target")
LEAD_COLUMNS = tuple(PROFILE_FIELDS)


class FileActivitySource:
    """Reads `path` (a file, or a folder of .jsonl/.csv files) from the saved cursors on."""

    def __init__(
        self, name: str, path: Path, *, batch_size: int = 5000, plus_addressing: PlusAddressing = "keep"
    ) -> None:
        self.name = name
        self.path = path
        self.batch_size = batch_size
        self.plus_addressing = plus_addressing

    def files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not self.path.exists():
            raise FileNotFoundError(f"source {self.name!r}: {self.path} does not exist")
        return [self.path]

    def streams(self) -> list[Path]:
        """A stream per file; its cursor is saved under the file's name."""
        return self.files()

    def pages(self, file: Path, cursor: dict[str, Any] | None, *, now: datetime) -> Iterator[Page]:
        """Pages of `file` after `cursor`; each page's cursor covers exactly the lines in it."""
        with file.open("rb") as handle:
            first = handle.readline()
            header = _csv_header(first) if file.suffix.lower() == ".csv" else None
            # A CSV export replaced by the next one keeps its header: the first row tells them apart.
            identity = first + handle.readline() if header is not None else first
            fingerprint = hashlib.sha256(identity).hexdigest()[:16]
            offset, line_no = 0, 0
            if cursor and cursor.get("fingerprint") == fingerprint and cursor.get("offset", 0) <= file.stat().st_size:
                offset, line_no = int(cursor["offset"]), int(cursor["line"])
            handle.seek(offset)
            parse = ActivityParser(now=now, plus_addressing=self.plus_addressing)
            lines = iter(handle)
            first_page = True
            while True:
                with _cycle_collector_paused():
                    records, rejected, offset, line_no, more = self._read_page(
                        lines, file, header, parse, offset, line_no
                    )
                if records or rejected or (first_page and cursor is None):
                    yield Page(
                        file.name, records, rejected, {"offset": offset, "line": line_no, "fingerprint": fingerprint}
                    )
                first_page = False
                if not more:
                    return

    def _read_page(
        self,
        lines: Iterator[bytes],
        file: Path,
        header: list[str] | None,
        parse: ActivityParser,
        offset: int,
        line_no: int,
    ) -> tuple[list[ActivityRecord], list[Rejected], int, int, bool]:
        """Up to `batch_size` records from `lines`; the offset and line after them, and whether lines remain."""
        records: list[ActivityRecord] = []
        rejected: list[Rejected] = []
        batch_size = self.batch_size
        read_csv = partial(_csv_record, header=header) if header is not None else None
        for raw_line in lines:
            if not raw_line.endswith(b"\n"):
                return records, rejected, offset, line_no, False  # still being written
            line_no += 1
            offset += len(raw_line)
            if read_csv is not None:
                if line_no > 1:
                    _parse_text_line(raw_line, file, line_no, read_csv, parse, records, rejected)
            else:
                try:  # the fast path: bytes straight to a dict, errors and odd lines go the long way below
                    raw = orjson.loads(raw_line)
                    if type(raw) is not dict:
                        raise TypeError
                    records.append(parse(raw, raw_size=len(raw_line)))
                except RecordError as exc:
                    rejected.append(_rejected(raw_line, file, line_no, exc))
                except (orjson.JSONDecodeError, TypeError):
                    _parse_text_line(raw_line, file, line_no, _json_record, parse, records, rejected)
            if len(records) + len(rejected) >= batch_size:
                return records, rejected, offset, line_no, True
        return records, rejected, offset, line_no, False


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Parsing a page makes tens of thousands of small objects and no reference cycles: Python's cycle
    collector, triggered by the allocations alone, would only slow it down (by about a third)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _line_text(raw_line: bytes) -> str:
    return raw_line.decode("utf-8", errors="replace").rstrip("\r\n")


def _rejected(raw_line: bytes, file: Path, line_no: int, exc: RecordError) -> Rejected:
    return Rejected(location=f"{file.name}:{line_no}", reason=exc.reason, detail=exc.detail, raw=_line_text(raw_line))


def _parse_text_line(
    raw_line: bytes,
    file: Path,
    line_no: int,
    read: Callable[[str], dict[str, Any]],
    parse: ActivityParser,
    records: list[ActivityRecord],
    rejected: list[Rejected],
) -> None:
    """A CSV row, or a JSON line the fast parser refused: blank (skipped), read by `read` and parsed, or rejected."""
    text = _line_text(raw_line)
    if not text.strip():
        return
    try:
        records.append(parse(read(text)))
    except RecordError as exc:
        rejected.append(_rejected(raw_line, file, line_no, exc))


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

"""JSONL and CSV activity files, read incrementally.

The cursor per file is the byte offset after the last complete line that was committed, plus a
fingerprint of the file's first line: appending to a file picks up only the new lines, and a
file replaced by another starts over (re-reading is harmless, source ids make it a no-op).
A last line without its newline may still be being written, so it waits for the next run.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from leads.records import ActivityRecord, RecordError, Rejected, parse_activity

SUFFIXES = (".jsonl", ".csv")
CORE_COLUMNS = ("id", "email", "type", "at", "target")
LEAD_COLUMNS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "industry",
    "company_size",
    "country",
    "timezone",
    "budget",
    "authority",
    "need",
    "timing",
)


@dataclass(frozen=True)
class Page:
    """A batch of one file: valid records, rejected ones, and the cursor to save with them."""

    stream: str
    records: list[ActivityRecord]
    rejected: list[Rejected]
    cursor: dict[str, Any]


class FileActivitySource:
    """Reads `path` (a file, or a folder of .jsonl/.csv files) from the saved cursors on."""

    def __init__(self, name: str, path: Path, *, batch_size: int = 5000) -> None:
        self.name = name
        self.path = path
        self.batch_size = batch_size

    def files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not self.path.exists():
            raise FileNotFoundError(f"source {self.name!r}: {self.path} does not exist")
        return [self.path]

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
            records: list[ActivityRecord] = []
            rejected: list[Rejected] = []
            for raw_line in handle:
                if not raw_line.endswith(b"\n"):
                    break  # still being written
                line_no += 1
                offset += len(raw_line)
                if line_no == 1 and header is not None:
                    continue
                self._parse_into(raw_line, file, line_no, header, now, records, rejected)
                if len(records) + len(rejected) >= self.batch_size:
                    yield Page(
                        file.name, records, rejected, {"offset": offset, "line": line_no, "fingerprint": fingerprint}
                    )
                    records, rejected = [], []
            if records or rejected or cursor is None:
                yield Page(
                    file.name, records, rejected, {"offset": offset, "line": line_no, "fingerprint": fingerprint}
                )

    def _parse_into(
        self,
        raw_line: bytes,
        file: Path,
        line_no: int,
        header: list[str] | None,
        now: datetime,
        records: list[ActivityRecord],
        rejected: list[Rejected],
    ) -> None:
        text = raw_line.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text.strip():
            return
        location = f"{file.name}:{line_no}"
        try:
            raw = _csv_record(text, header) if header is not None else _json_record(text)
            records.append(parse_activity(raw, now=now))
        except RecordError as exc:
            rejected.append(Rejected(location=location, reason=exc.reason, detail=exc.detail, raw=text))


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

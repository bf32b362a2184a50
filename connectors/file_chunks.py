"""Decoding and validating a line-aligned byte range of an activity file ("a chunk") into plain tuples.

A chunk is parsed the same way in this process or in a parsing process (connectors/parse_workers.py),
so pages, cursors and quarantine rows do not depend on where it was parsed.
"""

from __future__ import annotations

import csv
import json
from array import array
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from leadflow.leads.db.models import PROFILE_FIELDS
from leadflow.leads.ingest.parser import ActivityParser
from leadflow.leads.ingest.records import RecordError

__all__ = ["Chunk", "Item", "Rejection", "csv_header", "parse_chunk"]

CORE_COLUMNS = ("id", "email", "type", "at", "target")
LEAD_COLUMNS = tuple(PROFILE_FIELDS)

# A chunk: (the seven columns of its valid records (see `ActivityRow`), its rejected lines as (item
# number, line in chunk, reason, detail, raw text), the end offset and the line in chunk of each item
# (the bytes of an `array("q")` each: a million Python ints cost the storing process more to receive),
# the number of lines read). Items are the non-blank lines: records and rejected lines, in file order.
Rejection = tuple[int, int, str, str, str]
Item = tuple[Any, ...]  # an `ActivityRow`, or (None, line in chunk, reason, detail, raw text) for a rejected line
Chunk = tuple[list[tuple[Any, ...]], list[Rejection], bytes, bytes, int]


def parse_chunk(data: bytes, start: int, header: list[str] | None, parse: ActivityParser) -> Chunk:
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


def csv_header(first: bytes) -> list[str]:
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

"""Reading request bodies within a size limit, and the two form encodings RFC 8058 allows."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import HTTP
from urllib.parse import parse_qsl

from starlette.requests import Request


class TooLarge(ValueError):
    """The body is larger than the endpoint accepts."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or TooLarge as soon as the declared or received size passes `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """Fields of an application/x-www-form-urlencoded or multipart/form-data body (first value wins)."""
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        return _multipart(body, content_type)
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(name, value)
    return fields


def _multipart(body: bytes, content_type: str) -> dict[str, str]:
    """Small text fields only (these forms have one or two); file parts are ignored."""
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    parsed = message_from_bytes(head + body, EmailMessage, policy=HTTP)
    fields: dict[str, str] = {}
    if not parsed.is_multipart():
        return fields
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            payload = part.get_payload(decode=True)  # bytes, or None for a nested multipart
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            fields.setdefault(name, text.strip())
    return fields

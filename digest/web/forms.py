"""Reading a POSTed form safely: its size capped, multipart or urlencoded, one library file at most.

Pure request plumbing; whether a form may be trusted (origin, CSRF token) is decided in
digest.web.site, which uses these.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartParser
from starlette.requests import ClientDisconnect, Request

from digest.text import one_line

MAX_FORM_BYTES = 64 * 1024  # a form's text: its urlencoded body, or the text fields of a multipart one
MAX_FORM_FIELDS = 60
# A library file sent with the subscribe or manage form (`digest profile import` takes up to 20 MB).
LIBRARY_UPLOAD_MAX_BYTES = 2 * 1024 * 1024
LIBRARY_FIELD = "library"
# A refused upload's rest is still read (and dropped) up to this, so the browser gets the page
# rather than a reset connection; a body longer than this has the connection closed on it.
DRAIN_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent with a form: its base name (cleaned, for messages and the format) and bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Submitted:
    """A checked form: its text fields, and the library file when one was chosen."""

    fields: dict[str, str]
    upload: Upload | None = None


class TooLarge(Exception):
    """The body passed its size cap."""


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def read_urlencoded(request: Request, limit: int) -> dict[str, str]:
    body = bytearray()
    async with aclosing(_body_chunks(request, limit)) as chunks:
        async for chunk in chunks:
            body += chunk
    return dict(parse_qsl(bytes(body).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS))


async def read_multipart(
    request: Request, limit: int, max_files: int
) -> tuple[dict[str, str], Upload | None]:
    """A multipart/form-data body: its text fields, and its file "library" when one was chosen.

    Starlette's parser (python-multipart) keeps a file part in a spooled temporary file; the
    whole body is capped at `limit`, and a form with more than `max_files` file parts is refused
    (MultiPartException), as is one with more than MAX_FORM_FIELDS text fields.
    """
    async with aclosing(_body_chunks(request, limit)) as chunks:
        parser = MultiPartParser(request.headers, chunks, max_files=max_files,
                                 max_fields=MAX_FORM_FIELDS, max_part_size=limit)
        form: FormData = await parser.parse()
    fields: dict[str, str] = {}
    upload = None
    try:
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            elif name == LIBRARY_FIELD:
                data = await value.read()
                filename = upload_name(value.filename or "")
                if data or filename:  # an empty file input sends a part with no name and no bytes
                    upload = Upload(filename or "your file", data)
    finally:
        await form.close()
    return fields, upload


async def drain(request: Request) -> None:
    """Read the rest of a refused body (up to DRAIN_MAX_BYTES), so the browser sees our answer:
    one that is still sending when the server answers and closes often shows a reset instead."""
    drained, more = 0, True
    while more and drained <= DRAIN_MAX_BYTES:
        message = await request.receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        more = bool(message.get("more_body", False))


async def _body_chunks(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The request's body, chunk by chunk; TooLarge once it passes `limit` bytes (its rest is
    read and dropped first, up to DRAIN_MAX_BYTES)."""
    size, more = 0, True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        size += len(chunk)
        if size > limit:
            if more:
                await drain(request)
            raise TooLarge()
        if chunk:
            yield chunk


def upload_name(raw: str) -> str:
    """An uploaded file's name as one short line: no folders, control or direction characters.
    Its extension is kept: it tells read_library the format."""
    name = one_line(re.split(r"[\\/]", raw)[-1])
    if name.strip(".") == "":
        return ""
    if len(name) > 120:
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem[:100]}….{suffix[:12]}" if dot and len(suffix) <= 12 else name[:120]
    return name

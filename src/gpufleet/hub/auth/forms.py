"""HTML form bodies (application/x-www-form-urlencoded), read with a size cap.

Starlette's request.form() needs python-multipart; the hub's forms are a few short fields, so
the standard library's parser is enough and a multipart body is simply not a form here.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import HTTPException, Request

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024


def is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM_TYPE


async def read_form(request: Request) -> dict[str, str]:
    """First value of each field; {} when the body is not a urlencoded form."""
    if not is_form(request):
        return {}
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise HTTPException(413, f"form body over {MAX_FORM_BYTES} bytes")
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise HTTPException(413, f"form body over {MAX_FORM_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # later readers (the route) see the same bytes  # noqa: SLF001
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "form body is not valid UTF-8 urlencoded data") from None
    return {k: v[0] for k, v in fields.items()}

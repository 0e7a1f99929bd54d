"""Reading a provider's server-sent events straight from the response body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2


async def data_lines(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The `data:` payloads of a server-sent event body, as bytes (orjson reads bytes).

    Split by hand from the body's byte chunks: the text and line decoders of the HTTP client
    cost more per token than everything else the relay does with it.
    """
    rest = b""
    async for data in response.aiter_bytes():
        lines = (rest + data).split(b"\n") if rest else data.split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()

"""Shared by the adapters on the SDKs' aiohttp transport: reading server-sent events straight
from the response body, and telling a real timeout from a connection error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
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


def timed_out(exc: BaseException) -> bool:
    """Whether a timeout error was one. The SDK's aiohttp transport reports every aiohttp
    connection error as a ConnectTimeout, a server hanging up before it answers included."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return isinstance(root, TimeoutError) or not isinstance(root, aiohttp.ClientError)

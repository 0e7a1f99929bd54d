"""Bounded send buffers per connection, so that a client that stops reading stops its stream.

A streamed response writes a frame, then waits until the connection takes it; while it waits
it pulls nothing more from the provider. How much a stalled client can pile up on the server
is therefore what the connection buffers: the asyncio transport's buffer (64 KiB by default
before it pauses the writer) and the kernel's send buffer, which Linux grows by itself to
megabytes on a fast link. Both are bounded here, to tens of KiB per connection: a thousand
stalled streams hold tens of MiB, not gigabytes, and a stalled stream is charged what reached
its connection, not the whole answer (the charge policy's `client_disconnect` rule).
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

SEND_BUFFER_BYTES = 16 * 1024  # SO_SNDBUF asked for (Linux doubles it for its own bookkeeping)
WRITE_BUFFER_BYTES = 16 * 1024  # the transport pauses the writer above this


def bound_send_buffers(transport: asyncio.BaseTransport) -> None:
    """Caps what one connection may buffer towards its client (both layers)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    if isinstance(transport, asyncio.WriteTransport):
        transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)


class BoundedHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """Uvicorn's HTTP protocol with bounded send buffers (pass as `uvicorn.run(http=...)`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        bound_send_buffers(transport)
        super().connection_made(transport)

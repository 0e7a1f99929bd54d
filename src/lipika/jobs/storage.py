"""Where job outputs live: an object store through obstore (a local directory in the embedded
default; S3, GCS or Azure by URL), read back streamed with the caller's auth.

obstore (the Rust `object_store` crate behind a Python API) is async, streams both ways and
speaks every store the deployment may choose, so one code path serves all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import obstore
from obstore.store import LocalStore, from_url

CHUNK = 256 * 1024
# Options of the HTTP client rather than of the store (obstore takes them apart).
CLIENT_OPTIONS = frozenset(
    {"allow_http", "allow_invalid_certificates", "timeout", "connect_timeout", "proxy_url"}
)


class OutputStore:
    def __init__(self, store: Any) -> None:
        self.store = store

    @classmethod
    def open(cls, url: str | None, local_dir: Path, options: Mapping[str, str]) -> OutputStore:
        """`url` (s3://bucket/prefix, gs://..., file:///...) or the local directory."""
        if url:
            config = {k: v for k, v in options.items() if k not in CLIENT_OPTIONS}
            client = {k: _value(v) for k, v in options.items() if k in CLIENT_OPTIONS}
            return cls(from_url(url, config=config or None, client_options=client or None))
        local_dir.mkdir(parents=True, exist_ok=True)
        return cls(LocalStore(local_dir.resolve(), mkdir=True))

    async def put(self, key: str, data: bytes) -> None:
        await obstore.put_async(self.store, key, data)

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        result = await obstore.get_async(self.store, key)
        async for chunk in result.stream(min_chunk_size=CHUNK):
            yield bytes(chunk)

    async def read(self, key: str) -> bytes:
        result = await obstore.get_async(self.store, key)
        return bytes(await result.bytes_async())


def _value(text: str) -> str | bool:
    return {"true": True, "false": False}.get(text.lower(), text)

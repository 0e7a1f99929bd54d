"""A client that stops reading a stream, lets the socket buffers fill, then hangs up, over a
real socket: the relay stops pulling from the provider once its bounded buffer is full, the
hold settles `client_disconnect` at once (charged what was sent to the client, never the whole
answer), the provider sees its connection closed, and the ledger balances."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from lipika.billing.pricebook import PriceBook
from lipika.chat.stream import ChunkFrames
from lipika.kit.backpressure import SEND_BUFFER_BYTES, WRITE_BUFFER_BYTES

MODEL = "gpt-5-mini"
ANSWER_TOKENS = 100_000  # more than every buffer between the provider and the client holds
# What the server side can hold for a stalled client: the kernel's send buffer (Linux doubles
# what is asked for), the transport's buffer, and the client's own receive buffer below.
CLIENT_RECEIVE_BUFFER = 4096
SERVER_SIDE_BYTES = 2 * SEND_BUFFER_BYTES + WRITE_BUFFER_BYTES + 2 * CLIENT_RECEIVE_BUFFER


async def open_stalling_stream(url: str, headers: dict[str, str], body: dict) -> socket.socket:
    """Sends the request on a socket with a small receive buffer and reads only the response's
    head and first bytes; then the caller stops reading."""
    loop = asyncio.get_running_loop()
    address = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)
    sock.setblocking(False)
    await loop.sock_connect(sock, (address.hostname, address.port))
    payload = json.dumps(body).encode()
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: {address.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    await loop.sock_sendall(sock, ("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    received = b""
    while b"\r\n\r\n" not in received or len(received) < 512:
        chunk = await loop.sock_recv(sock, 512)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received
    return sock


async def until_stalled(read_count, *, quiet: float = 0.5, limit: float = 20.0) -> int:
    """Waits until `read_count()` stops growing for `quiet` seconds; returns its value."""
    async with asyncio.timeout(limit):
        last = -1
        while (now := read_count()) != last:
            last = now
            await asyncio.sleep(quiet)
    return last


@pytest.mark.parametrize("provider", ["openai"])
async def test_a_stalled_reader_that_hangs_up_is_settled_at_once_for_what_it_was_sent(
    provider: str, provider_live_url: str, client, signup, fake_providers, books
) -> None:
    account = await signup()
    fake = fake_providers[provider]
    fake.reset()
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Go on [[tokens={ANSWER_TOKENS}]]"}],
        "max_tokens": ANSWER_TOKENS,
        "stream": True,
    }
    sock = await open_stalling_stream(provider_live_url, account.headers, body)
    try:
        while not fake.calls:
            await asyncio.sleep(0.01)
        call = fake.calls[-1]
        sent_by_provider = await until_stalled(lambda: call.tokens_sent)
        # Back-pressure: the stalled client stopped the pull from the provider long before the
        # end of the answer.
        assert 0 < sent_by_provider < ANSWER_TOKENS
        workspace = uuid.UUID(account.personal_workspace_id)
        [hold] = await books.holds(workspace)
        assert hold.status.value == "open"
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()

    async with asyncio.timeout(5):
        while (hold := (await books.holds(workspace))[0]).status.value == "open":
            await asyncio.sleep(0.02)
    await fake.wait_for_call_status("disconnected", timeout=5)
    assert (hold.status.value, hold.outcome) == ("captured", "client_disconnect")
    # Charged what was sent to the client: no more than the provider produced, and no more
    # than the server side could have held beyond what the client read.
    # The fake's words (" w12345") are at most two tokens by the delivered-text estimate.
    output = hold.usage["output_tokens"]
    frames_that_fit = (SERVER_SIDE_BYTES + 512) // len(ChunkFrames(MODEL).content(" w1")) + 1
    assert 0 < output <= min(sent_by_provider, 2 * frames_that_fit)
    price = PriceBook.load().get(MODEL)
    assert hold.captured == price.cost(
        {"input_tokens": hold.usage["input_tokens"], "output_tokens": output}
    )
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert (balance["balance"], balance["held"]) == (100_000_000 - hold.captured, 0)
    await books.assert_balanced()


@pytest.fixture
async def short_budget_live_url(settings, fake_providers):
    """An app with every provider pointed at the fakes and a 2 s stream budget, on a socket."""
    from asgi_lifespan import LifespanManager

    from lipika.app import create_app
    from lipika.config import Settings
    from tests.fixtures.live import serve

    configured = Settings(
        **{
            **settings.model_dump(),
            **fake_providers.settings_kwargs(),
            "stream_budget_seconds": 2,
            "db_pool_size": 4,
            "checkpoint_pool_size": 2,
        },
        _env_file=None,
    )
    async with LifespanManager(create_app(configured)) as manager, serve(manager.app) as url:
        yield url


async def test_a_reader_too_slow_for_the_budget_is_charged_what_it_was_sent(
    short_budget_live_url: str, client, signup, fake_providers, books
) -> None:
    """The budget runs out while the relay is blocked on a client that stopped reading: that is
    the client's doing, charged like a hang-up (what was sent), not a free provider timeout."""
    account = await signup()
    fake = fake_providers["openai"]
    fake.reset()
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Go on [[tokens={ANSWER_TOKENS}]]"}],
        "max_tokens": ANSWER_TOKENS,
        "stream": True,
    }
    sock = await open_stalling_stream(short_budget_live_url, account.headers, body)
    workspace = uuid.UUID(account.personal_workspace_id)
    try:
        async with asyncio.timeout(15):
            while not (holds := await books.holds(workspace)) or holds[0].status.value == "open":
                await asyncio.sleep(0.05)
        [hold] = holds
        assert (hold.status.value, hold.outcome) == ("captured", "client_disconnect")
        assert 0 < hold.usage["output_tokens"] < ANSWER_TOKENS
        assert hold.captured > 0
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    await books.assert_balanced()

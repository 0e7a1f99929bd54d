"""Real-time sessions on the demo provider over a real WebSocket, with real speech audio
(espeak-ng), metered slice by slice; the ledger audit balances after each."""

from __future__ import annotations

import orjson

from tests.speech.audio import RATE, frames, speech_pcm
from tests.speech.conftest import RATE_MICRO, live, workspace

FRAME = RATE * 2 // 50  # 20 ms of PCM16


async def test_a_session_transcribes_and_charges_the_audio_streamed(
    speech_url, signup, books
) -> None:
    account = await signup()
    ws_id = workspace(account)
    before = await books.state(ws_id)
    audio = speech_pcm()
    async with live(speech_url, headers=account.headers) as (ws, got, reader):
        for frame in frames(audio, FRAME):
            await ws.send(frame)
        await ws.send(orjson.dumps({"type": "close"}).decode())
        await reader
    assert got.events[0]["type"] == "ready"
    assert got.of("final"), got.events
    assert got.of("interim")
    assert got.last == {"type": "done", "reason": "closed"}
    assert got.close_code == 1000
    usage = got.of("usage")[0]
    seconds = len(audio) / (2 * RATE)
    assert usage["audio_seconds"] == round(seconds, 3)
    assert usage["charged_seconds"] == -(-len(audio) // (2 * RATE))  # whole seconds, rounded up
    assert usage["credits_charged"] == usage["charged_seconds"] * RATE_MICRO
    after = await books.state(ws_id)
    assert before.balance - after.balance == usage["credits_charged"]
    assert usage["balance_after"] == after.balance
    assert after.held == 0
    finals = got.of("final")
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(finals, finals[1:], strict=False))
    await books.assert_balanced()

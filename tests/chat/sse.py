"""Reading the platform's server-sent events the way a client does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Stream:
    """A finished stream's `data:` payloads, split by kind."""

    events: list = field(default_factory=list)
    comments: int = 0

    @property
    def chunks(self) -> list[dict]:
        return [e for e in self.events if isinstance(e, dict) and "choices" in e]

    @property
    def deltas(self) -> list[str]:
        return [
            c["choices"][0]["delta"]["content"]
            for c in self.chunks
            if c["choices"] and c["choices"][0]["delta"].get("content")
        ]

    @property
    def usage(self) -> dict | None:
        usages = [c["usage"] for c in self.chunks if not c["choices"] and c.get("usage")]
        assert len(usages) <= 1, usages
        return usages[0] if usages else None

    @property
    def finish_reason(self) -> str | None:
        reasons = [c["choices"][0]["finish_reason"] for c in self.chunks if c["choices"]]
        return next((r for r in reasons if r), None)

    @property
    def error(self) -> dict | None:
        errors = [e["error"] for e in self.events if isinstance(e, dict) and "error" in e]
        return errors[-1] if errors else None

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"


def parse(body: str) -> Stream:
    stream = Stream()
    for block in body.split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            stream.comments += 1
            continue
        assert block.startswith("data: "), block
        data = block.removeprefix("data: ")
        stream.events.append(data if data == "[DONE]" else json.loads(data))
    return stream

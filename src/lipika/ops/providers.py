"""Provider calls, observed: time to first token, errors by kind, and one trace span per call.

Every adapter is wrapped once when the registry is built, so the chat paths and the agent
are observed alike and none of them (nor the adapters) knows about metrics or tracing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer

from lipika.kit import access
from lipika.ops.metrics import Metrics
from lipika.providers.base import (
    ChatProvider,
    ChatRequest,
    ChatResult,
    ProviderError,
    StreamEvent,
    TextWithLogprobs,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from lipika.providers.registry import ProviderRegistry

# Output other than plain text: the first of it is the first token too.
_OUTPUT = (TextWithLogprobs, ToolCallDelta)


class ObservedProvider(ChatProvider):
    """Delegates to the adapter; reports what each call did."""

    def __init__(self, inner: ChatProvider, metrics: Metrics, tracer: Tracer) -> None:
        self.inner = inner
        self.name = inner.name
        self.features = inner.features
        self.metrics = metrics
        self.tracer = tracer

    @property
    def available(self) -> bool:
        return self.inner.available

    def estimate_input_tokens(self, request: ChatRequest) -> int:
        return self.inner.estimate_input_tokens(request)

    def tool_call(self, call_id: str, name: str, arguments: str) -> ToolCall:
        return self.inner.tool_call(call_id, name, arguments)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def complete(self, request: ChatRequest) -> ChatResult:
        span = self._span("complete", request)
        try:
            result = await self.inner.complete(request)
        except BaseException as exc:
            self._failed(span, exc)
            raise
        _record_usage(span, result.usage)
        span.end()
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        span = self._span("stream", request)
        started = time.perf_counter()
        first = True
        try:
            async with contextlib.aclosing(self.inner.stream(request)) as events:
                async for event in events:
                    if first and (type(event) is str and event or type(event) in _OUTPUT):
                        first = False
                        seconds = time.perf_counter() - started
                        self.metrics.first_token(self.name, request.model, seconds)
                        access.first_token(seconds * 1000)
                        span.add_event("first_token")
                    elif isinstance(event, Usage):
                        _record_usage(span, event)
                    yield event
        except BaseException as exc:
            self._failed(span, exc)
            raise
        span.end()

    def _span(self, call: str, request: ChatRequest) -> Span:
        """Started, not made current: an async generator cannot hold the context across its
        yields, so the span is a child of the caller's current span and ends by hand."""
        return self.tracer.start_span(
            f"provider.{call}",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.system": self.name, "gen_ai.request.model": request.model},
        )

    def _failed(self, span: Span, exc: BaseException) -> None:
        if isinstance(exc, ProviderError):
            self.metrics.provider_failed(self.name, exc.code)
            span.set_status(StatusCode.ERROR, exc.code)
        elif isinstance(exc, GeneratorExit):
            span.set_attribute("lipika.closed_early", True)
        else:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
        span.end()


def _record_usage(span: Span, usage: Usage) -> None:
    span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)


def observe_providers(
    registry: ProviderRegistry, metrics: Metrics, tracer: Tracer | None = None
) -> ProviderRegistry:
    """The same registry with every adapter observed."""
    tracer = tracer or trace.NoOpTracer()
    return ProviderRegistry(
        {name: ObservedProvider(p, metrics, tracer) for name, p in registry.providers.items()}
    )

"""Valyu DeepResearch: create a task, follow it, cancel it, and read its signed callbacks.

A small async client on aiohttp rather than the official `valyu` package: in valyu 2.13.1 only
the synchronous client has `.deepresearch` (on `requests`), so following a thousand tasks would
take a thread each, and its `wait()` blocks for the whole task. The wire shapes here are the
SDK's (`valyu/deepresearch_client.py`, `types/deepresearch.py`); the callback signature is
checked by the SDK's own `verify_contents_webhook`.

What Valyu does not document (the DeepResearch callback's signed string is only known for the
Contents API) fails safe: a callback whose signature does not check out is never trusted, and
the caller re-reads the task's status from the API instead (`CallbackUnverified`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson
from valyu.webhooks import verify_contents_webhook

from lipika.providers.errors import (
    STATUS_ERRORS,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
)
from lipika.providers.research import (
    MAX_QUERY_CHARS,
    MODES,
    CreatedTask,
    ResearchState,
    ResearchStatus,
    ResearchTask,
    Source,
)

DEFAULT_BASE_URL = "https://api.valyu.ai/v1"
CALLBACK_TOLERANCE_SECONDS = 300  # a callback signed longer ago than this is stale

_STATES: dict[str, ResearchState] = {
    "queued": "queued",
    "running": "running",
    "awaiting_input": "running",  # human-in-the-loop checkpoints: never asked for, but tolerated
    "paused": "running",
    "completed": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


class CallbackUnverified(ProviderRejected):
    """A callback whose signature, timestamp or task does not check out: its body says nothing;
    re-read the task's status from the API before acting."""

    code = "webhook_unverified"


class ValyuResearch:
    name = "valyu"

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        timeout_seconds: float = 30.0,
        connector_limit: int = 100,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = {"x-api-key": api_key, "content-type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._connector_limit = connector_limit
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connector_limit),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def create(self, task: ResearchTask) -> CreatedTask:
        if task.mode not in MODES:
            raise ProviderRejected(f"unknown research mode {task.mode!r}")
        if not task.query.strip() or len(task.query) > MAX_QUERY_CHARS:
            raise ProviderRejected(f"the query must be 1 to {MAX_QUERY_CHARS} characters")
        body: dict[str, Any] = {
            "query": task.query,
            "mode": task.mode,
            "output_formats": list(task.output_formats),
        }
        if task.urls:
            body["urls"] = list(task.urls)
        if task.webhook_url:
            body["webhook_url"] = task.webhook_url
        data, _ = await self._call("POST", "/deepresearch/tasks", body)
        task_id = data.get("deepresearch_id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderError("Valyu answered a create without a task id")
        secret = data.get("webhook_secret")
        return CreatedTask(task_id, secret if isinstance(secret, str) and secret else None)

    async def status(self, task_id: str, etag: str | None = None) -> ResearchStatus | None:
        """The task's status; None when `etag` still matches (304: nothing changed)."""
        headers = {"If-None-Match": etag} if etag else None
        data, response_etag = await self._call(
            "GET", f"/deepresearch/tasks/{task_id}/status", headers=headers
        )
        if data is None:
            return None
        status = parse_status(data)
        if status.id != task_id:
            raise ProviderError("Valyu answered the status of another task")
        return _with_etag(status, response_etag)

    async def cancel(self, task_id: str) -> None:
        """Asks Valyu to stop the task (best effort: one that already ended stays ended)."""
        try:
            await self._call("POST", f"/deepresearch/tasks/{task_id}/cancel", {})
        except ProviderRejected:
            pass  # already ended, or unknown: nothing left to stop

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, str | None]:
        try:
            async with self._http().request(
                method, self.base_url + path, json=body, headers=headers
            ) as response:
                raw = await response.read()
                if response.status == 304:
                    return None, response.headers.get("ETag")
                if response.status >= 400:
                    raise _error(response.status, raw, response.headers.get("Retry-After"))
                try:
                    return orjson.loads(raw), response.headers.get("ETag")
                except orjson.JSONDecodeError as exc:
                    raise ProviderError("Valyu answered something that is not JSON") from exc
        except TimeoutError as exc:
            raise ProviderTimeout("Valyu did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise ProviderError(f"could not reach Valyu: {exc.__class__.__name__}") from exc


def verify_callback(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | None,
    task_id: str,
    now: float | None = None,
) -> ResearchStatus:
    """The status a task's callback reports, if it is signed with the task's secret, fresh,
    and about that task; else `CallbackUnverified` (the caller then asks the API)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get("x-webhook-signature", "")
    timestamp = lowered.get("x-webhook-timestamp", "")
    if not secret or not signature or not timestamp.isdigit():
        raise CallbackUnverified("the callback is not signed")
    if abs((now if now is not None else time.time()) - int(timestamp)) > CALLBACK_TOLERANCE_SECONDS:
        raise CallbackUnverified("the callback's timestamp is stale")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise CallbackUnverified("the callback's body is not UTF-8") from exc
    if not verify_contents_webhook(text, signature, timestamp, secret):
        raise CallbackUnverified("the callback's signature does not match")
    try:
        status = parse_status(orjson.loads(body))
    except (orjson.JSONDecodeError, ProviderError) as exc:
        raise CallbackUnverified("the callback's body is not a task status") from exc
    if status.id != task_id:
        raise CallbackUnverified("the callback is about another task")
    return status


def parse_status(data: Any) -> ResearchStatus:
    """A status answer (or a callback's body, the same shape) as facts; unknown states are
    still running (Valyu may add some), so nothing is settled on a guess."""
    if not isinstance(data, dict) or not isinstance(data.get("deepresearch_id"), str):
        raise ProviderError("a Valyu task status without a task id")
    progress = data.get("progress") if isinstance(data.get("progress"), dict) else {}
    sources = tuple(
        Source(str(s.get("title") or ""), str(s.get("url") or ""))
        for s in data.get("sources") or ()
        if isinstance(s, dict)
    )
    return ResearchStatus(
        id=data["deepresearch_id"],
        state=_STATES.get(str(data.get("status")), "running"),
        step=_count(progress.get("current_step")),
        total_steps=_count(progress.get("total_steps")),
        sources=sources,
        title=data.get("title") if isinstance(data.get("title"), str) else None,
        output=data.get("output"),
        cost_usd=_usd(data.get("cost")),
        error=_text(data.get("error")),
    )


def _error(status: int, raw: bytes, retry_after: str | None) -> ProviderError:
    try:
        detail = orjson.loads(raw)
        message = detail.get("error") or detail.get("message") if isinstance(detail, dict) else None
    except orjson.JSONDecodeError:
        message = None
    text = f"Valyu answered {status}" + (f": {_text(message)}" if message else "")
    error = STATUS_ERRORS.get(status, ProviderError)(text)
    if retry_after and retry_after.isdigit():
        error.retry_after = int(retry_after)  # type: ignore[attr-defined]
    return error


def _with_etag(status: ResearchStatus, etag: str | None) -> ResearchStatus:
    return status if etag is None else replace(status, etag=etag)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _usd(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("message") or orjson.dumps(value).decode()
    return str(value)[:500]

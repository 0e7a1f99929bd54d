"""Rate limits by plan: requests and model tokens per minute, per workspace and per API key
(the plan catalogue's `rate_limits`), on the shared atomic counters of `kit/ratelimit.py`
(Redis when configured, so every replica counts in the same windows; process memory in the
embedded default).

A metered request is counted before its hold: one request, and the most tokens it may use
(the hold's input estimate and output allowance). When it ends, the tokens it did not use are
given back (within the same window), so the tokens counted are what was used. A refusal is 429
`rate_limit_exceeded` with `Retry-After`; every counted request answers OpenAI's
`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers for its tightest window.

Unlike the abuse limits, these fail open: with Redis down a request is not counted (and sends
no `x-ratelimit-*` headers) rather than refused, so paid chat goes on; its money is guarded by
the ledger, which needs no Redis.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

import structlog
from limits import RateLimitItemPerMinute

from lipika.auth.dependencies import Principal
from lipika.billing.meter import Meter
from lipika.billing.plans import DEFAULT_PLAN, Plan
from lipika.billing.repository import LedgerRepository
from lipika.config import Settings
from lipika.errors import is_outage
from lipika.kit.ratelimit import Limiter, Quota, QuotaExceeded, QuotaState
from lipika.ratelimits.errors import RateLimited

log = structlog.get_logger()

REQUESTS = "rpm"
TOKENS = "tpm"
_WHAT = {REQUESTS: "requests", TOKENS: "tokens"}


@dataclass
class Counted:
    """A request counted in its plan's windows: its headers, and the tokens to correct."""

    limiter: PlanRateLimits
    states: list[QuotaState]
    tokens: int
    _settled: bool = field(default=False, repr=False)

    def headers(self) -> dict[str, str]:
        return limit_headers(self.states)

    async def settle(self, used_tokens: int) -> None:
        """Gives back the tokens counted but not used (once)."""
        if self._settled:
            return
        self._settled = True
        unused = self.tokens - max(0, used_tokens)
        for state in self.states:
            if state.quota.name == TOKENS:
                try:
                    await self.limiter.counters.give_back_cost(
                        state.quota, unused, if_before=state.reset_at
                    )
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    log.warning("rate_limits_unavailable", error=repr(exc))


@dataclass
class PlanRateLimits:
    counters: Limiter
    meter: Meter  # its engine, and its plan catalogue as it is now

    @classmethod
    def open(cls, settings: Settings, meter: Meter) -> PlanRateLimits:
        counters = Limiter.open(settings.redis_url, settings.redis_key_prefix, namespace="rate")
        return cls(counters, meter)

    async def plan_of(self, workspace_id: uuid.UUID) -> Plan:
        """The workspace's plan, read on a short connection of its own (the request's session
        is not held open while the model answers)."""
        async with self.meter.engine.connect() as conn:
            facts = await LedgerRepository(conn).admission_facts(workspace_id, None)
        plans = self.meter.plans
        plan = plans.get(facts.plan) if facts else None
        return plan or plans.plans[DEFAULT_PLAN]

    async def count(self, member: Principal, tokens: int) -> Counted:
        """Counts one request of up to `tokens` tokens, or refuses it (429)."""
        quotas = quotas_for((await self.plan_of(member.workspace_id)), member, tokens)
        try:
            states = await self.counters.take(quotas)
        except QuotaExceeded as exc:
            raise _refusal(exc.state) from None
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("rate_limits_unavailable", error=repr(exc))
            return Counted(self, [], 0)  # fail open (see the module)
        return Counted(self, states, tokens)

    async def aclose(self) -> None:
        await self.counters.aclose()


def quotas_for(plan: Plan, member: Principal, tokens: int) -> list[Quota]:
    """The windows a request counts in: the API key's (if it came with one), then the
    workspace's; requests before tokens."""
    limits = plan.rate_limits
    subjects = []
    if member.api_key_id is not None:
        subjects.append(
            (
                f"key:{member.api_key_id}",
                limits.key_requests_per_minute,
                limits.key_tokens_per_minute,
            )
        )
    subjects.append(
        (
            f"ws:{member.workspace_id}",
            limits.workspace_requests_per_minute,
            limits.workspace_tokens_per_minute,
        )
    )
    quotas = []
    for subject, requests, _ in subjects:
        if requests is not None:
            quotas.append(Quota(REQUESTS, RateLimitItemPerMinute(requests), subject))
    for subject, _, token_limit in subjects:
        if token_limit is not None and tokens > 0:
            quotas.append(Quota(TOKENS, RateLimitItemPerMinute(token_limit), subject, tokens))
    return quotas


def limit_headers(states: list[QuotaState]) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers: for requests and for tokens, the window with the
    least left."""
    headers: dict[str, str] = {}
    now = time.time()
    for name, what in _WHAT.items():
        own = [s for s in states if s.quota.name == name]
        if not own:
            continue
        tightest = min(own, key=lambda s: (s.remaining, -s.reset_at))
        headers[f"x-ratelimit-limit-{what}"] = str(tightest.quota.window.amount)
        headers[f"x-ratelimit-remaining-{what}"] = str(tightest.remaining)
        headers[f"x-ratelimit-reset-{what}"] = duration(tightest.reset_at - now)
    return headers


def duration(seconds: float) -> str:
    """OpenAI's reset format: `12s`, `1m5s`."""
    whole = max(1, math.ceil(seconds))
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _refusal(state: QuotaState) -> RateLimited:
    quota = state.quota
    what = _WHAT[quota.name]
    whose = "this API key's" if quota.subject.startswith("key:") else "the workspace's"
    retry_after = max(1.0, state.reset_at - time.time())
    needed = f" ({quota.cost} asked for)" if quota.name == TOKENS else ""
    refusal = RateLimited(
        f"{whose} limit of {quota.window.amount} {what} per minute is reached{needed}; "
        f"retry in {math.ceil(retry_after)}s",
        retry_after=retry_after,
        limit_headers=limit_headers([state]),
        limit=quota.window.amount,
        per="minute",
        counts=what,
        scope="api_key" if quota.subject.startswith("key:") else "workspace",
    )
    if quota.cost > quota.window.amount:  # more than a whole window: never admitted
        refusal.should_retry = False
        refusal.retry_after = None
    return refusal

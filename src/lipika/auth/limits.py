"""Abuse limits of the account routes: failed logins per account and per client address,
sign-ups per address, password resets and verification e-mails per address and per e-mail.

A route applies one in a line, with the request's `AbuseLimitsDep`:

    await limits.password_reset(body.email)

The client address is `request.client.host`: behind an ingress it is the real client only when
the server trusts the ingress's `X-Forwarded-For` (`lipika serve --forwarded-allow-ips`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from lipika.config import Settings
from lipika.kit.ratelimit import Limit, Limiter, TooManyAttempts, subject_key


@dataclass(frozen=True, slots=True)
class AbuseRules:
    """The limits, parsed once from the settings."""

    login_failures_per_account: Limit
    login_failures_per_address: Limit
    signups_per_address: Limit
    password_resets_per_address: Limit
    password_resets_per_email: Limit
    verification_emails_per_address: Limit
    verification_emails_per_email: Limit

    @classmethod
    def from_settings(cls, settings: Settings) -> AbuseRules:
        return cls(
            Limit.parse("login-account", settings.login_failure_limits_per_account),
            Limit.parse("login-address", settings.login_failure_limits_per_address),
            Limit.parse("signup-address", settings.signup_limits_per_address),
            Limit.parse("reset-address", settings.password_reset_limits_per_address),
            Limit.parse("reset-email", settings.password_reset_limits_per_email),
            Limit.parse("verify-address", settings.verification_email_limits_per_address),
            Limit.parse("verify-email", settings.verification_email_limits_per_email),
        )


@dataclass(frozen=True, slots=True)
class AbuseLimiter:
    """The shared counters and the rules: built in the lifespan (state `limiter`)."""

    counters: Limiter
    rules: AbuseRules

    @classmethod
    def open(cls, settings: Settings) -> AbuseLimiter:
        return cls(
            Limiter.open(settings.redis_url, settings.redis_key_prefix),
            AbuseRules.from_settings(settings),
        )

    async def aclose(self) -> None:
        await self.counters.aclose()


@dataclass(frozen=True, slots=True)
class AbuseLimits:
    """The limits as they apply to one request's client. Every method raises 429
    `too_many_attempts` with `Retry-After` when a window is full; a counter store that is down
    raises its connection error, answered 503 (fail closed: an outage must not lift the limits)."""

    limiter: AbuseLimiter
    address: str

    @property
    def _rules(self) -> AbuseRules:
        return self.limiter.rules

    @property
    def _counters(self) -> Limiter:
        return self.limiter.counters

    async def login_attempt(self, email: str) -> None:
        """Counts a login before its password is hashed: a refused attempt costs no hashing,
        a locked account refuses even the right password until its window starts again, and
        concurrent guesses never get past a full window together. The address is counted
        first, so a spray from a locked address does not count against the accounts it
        names."""
        await self._counters.consume(self._rules.login_failures_per_address, self.address)
        await self._counters.consume(self._rules.login_failures_per_account, subject_key(email))

    async def login_succeeded(self, email: str) -> None:
        """Gives the attempt back: only failures count."""
        await self._counters.give_back(self._rules.login_failures_per_address, self.address)
        await self._counters.give_back(
            self._rules.login_failures_per_account, subject_key(email)
        )

    async def signup(self) -> None:
        await self._counters.consume(self._rules.signups_per_address, self.address)

    async def password_reset(self, email: str) -> None:
        await self._counters.consume(self._rules.password_resets_per_address, self.address)
        await self._counters.consume(self._rules.password_resets_per_email, subject_key(email))

    async def verification_email(self, email: str) -> None:
        await self._counters.consume(self._rules.verification_emails_per_address, self.address)
        await self._counters.consume(
            self._rules.verification_emails_per_email, subject_key(email)
        )

    async def may_send_reset(self, email: str) -> bool:
        """`password_reset` for the reset link a sign-up with a registered address mails: past
        the limit the mail is skipped, the answer unchanged (so sign-ups cannot flood an inbox)."""
        return await _within(self.password_reset(email))

    async def may_send_verification(self, email: str) -> bool:
        """`verification_email` for mail a request sends on the side (a login of an unverified
        address): past the limit the mail is skipped, the answer unchanged."""
        return await _within(self.verification_email(email))


async def _within(counted: Awaitable[None]) -> bool:
    """Whether a limit had room for what `counted` counts (it is counted if so)."""
    try:
        await counted
    except TooManyAttempts:
        return False
    return True


async def abuse_limits(request: Request) -> AbuseLimits:
    address = request.client.host if request.client else "unknown"
    return AbuseLimits(request.state.limiter, address)


AbuseLimitsDep = Annotated[AbuseLimits, Depends(abuse_limits)]

"""What reconciliation does with an expired hold: it asks the resolver registered for the
hold's owner kind.

A hold outlives its expiry when the process that owned it died, or when its owner is still
at work (a 30-minute research job, a speech session). The owner's domain knows which: a job
whose provider finished while its pod was dead must be captured with the usage it recorded; a
job still running under a live lease must be left for a later pass; anything else is released
by the charge policy. Each domain registers its resolver at start-up, so billing never imports
the domains above it; a hold whose kind has no resolver is released as abandoned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from lipika.billing.models import Hold
from lipika.billing.policy import Outcome


@dataclass(frozen=True, slots=True)
class Capture:
    """The provider did the work: charge the usage the owner recorded (never above the hold)."""

    usage: Mapping[str, int]
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class Release:
    """Give the hold back, under this outcome of the charge policy."""

    outcome: Outcome = Outcome.ABANDONED


@dataclass(frozen=True, slots=True)
class Later:
    """Still running (its lease is held): ask again on a later pass."""


Resolution = Capture | Release | Later
HoldResolver = Callable[[Hold], Awaitable[Resolution]]


@dataclass
class HoldResolvers:
    """Resolvers by owner kind (one per kind).

    A kind registered `leased` has owners that hold a lease (an agent run on its thread): its
    resolver knows at once when the owner is gone, so its open holds are asked on every pass,
    not only past their expiry, and a dead pod's holds come back within a lease or so.
    """

    by_kind: dict[str, HoldResolver] = field(default_factory=dict)
    leased: set[str] = field(default_factory=set)

    def register(self, kind: str, resolver: HoldResolver, *, leased: bool = False) -> None:
        if kind in self.by_kind:
            raise ValueError(f"a resolver for {kind!r} holds is already registered")
        self.by_kind[kind] = resolver
        if leased:
            self.leased.add(kind)

    def unregister(self, kind: str) -> None:
        self.by_kind.pop(kind, None)
        self.leased.discard(kind)

    def get(self, kind: str | None) -> HoldResolver | None:
        return None if kind is None else self.by_kind.get(kind)

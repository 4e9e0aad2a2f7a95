"""Shared fakes for escalation tests: a recording channel and a config builder."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from appservices.channels.base import DeliveryResult, PageMessage, Recipient


class RecordingChannel:
    """A channel that delivers instantly and remembers (recipient, message, clock time)."""

    def __init__(self, name: str, clock: Any) -> None:
        self.name = name
        self.clock = clock
        self.sent: list[tuple[Recipient, PageMessage, float]] = []

    def send(self, recipient: Recipient, message: PageMessage) -> "defer.Deferred[DeliveryResult]":
        self.sent.append((recipient, message, self.clock.seconds()))
        return defer.succeed(DeliveryResult(ok=True, provider_id=f"${self.name}-{len(self.sent)}"))

    def to(self, user: str) -> list[PageMessage]:
        return [m for r, m, _ in self.sent if r.user_id == user]


def now(d: "defer.Deferred[Any]") -> Any:
    """The result of a Deferred that has already fired (an unstarted store runs transactions inline).

    Raises AssertionError if it has not fired yet; re-raises its failure.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    from twisted.python.failure import Failure

    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]

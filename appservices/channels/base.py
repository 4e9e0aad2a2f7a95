"""The channel interface: ``Channel.send(recipient, message) -> Deferred[DeliveryResult]``.

Concrete channels implement one delivery attempt (:meth:`BaseChannel.attempt`); :class:`BaseChannel` adds retries
with exponential backoff on the injected clock and records every attempt (when, to whom, provider id, result) in
the escalation store's ``delivery_attempts`` table.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from appservices.escalation import metrics


@dataclass(frozen=True)
class Recipient:
    """Who a page goes to. ``user_id`` is a Matrix user ID (or a room ID / URL for room and webhook pages)."""

    user_id: str
    display_name: str | None = None
    email: str | None = None
    phone: str | None = None
    room_id: str | None = None
    url: str | None = None


# Bidi classes that can change the display order around a string: right-to-left letters, explicit embeddings,
# overrides and isolates (and their terminators).
_BIDI_CLASSES = frozenset({"R", "AL", "RLE", "RLO", "LRE", "LRO", "RLI", "LRI", "FSI", "PDF", "PDI"})


def _has_bidi(text: str) -> bool:
    return any(unicodedata.bidirectional(ch) in _BIDI_CLASSES for ch in text if not ch.isascii())


@dataclass(frozen=True)
class PageMessage:
    """What a page says. ``purpose`` is ``page``, ``reminder`` or ``last_tier``; ``tier`` is 0-based."""

    incident_id: str
    summary: str
    priority: str
    room_id: str | None = None
    event_id: str | None = None
    tier: int = 0
    purpose: str = "page"
    page_id: str | None = None

    @property
    def link(self) -> str | None:
        """matrix.to permalink to the alert event (or room); spec "Appendices: matrix.to navigation"."""
        if not self.room_id:
            return None
        if self.event_id:
            return f"https://matrix.to/#/{self.room_id}/{self.event_id}"
        return f"https://matrix.to/#/{self.room_id}"

    def headline(self) -> str:
        """One line: ``[PRIORITY] summary``, prefixed with ``Reminder: `` for reminder pages. The summary comes
        from the alert source: when it holds right-to-left text or direction controls it is wrapped in Unicode
        bidi isolates (U+2068 ... U+2069), so it cannot reorder what follows (the incident ID, the link);
        left-to-right text is left as it is (an SMS of GSM characters stays one)."""
        prefix = "Reminder: " if self.purpose == "reminder" else ""
        summary = f"\u2068{self.summary}\u2069" if _has_bidi(self.summary) else self.summary
        return f"{prefix}[{self.priority.upper()}] {summary}"

    def text(self) -> str:
        """Plain-text body used by SMS, voice and email."""
        parts = [self.headline(), f"Incident {self.incident_id}"]
        if self.link:
            parts.append(self.link)
        return "\n".join(parts)


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of :meth:`Channel.send`: ``ok`` with the provider's message ID, or the last ``error``."""

    ok: bool
    provider_id: str | None = None
    error: str | None = None
    attempts: int = 1
    #: The last failure cannot be fixed by trying again later (bad number, a 4xx from the provider).
    permanent: bool = False


class DeliveryError(Exception):
    """One attempt failed. ``permanent`` errors (bad number, 4xx) are not retried."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    """Anything that can deliver a page. ``name`` is the channel name used in policies (``sms``...)."""

    name: str

    def send(self, recipient: Recipient, message: PageMessage) -> "defer.Deferred[DeliveryResult]":
        """Deliver ``message``; never errbacks: failures come back as ``DeliveryResult(ok=False)``."""
        ...


class AttemptRecorder(Protocol):
    """Where :class:`BaseChannel` records each delivery attempt (the escalation store's ``delivery_attempts``)."""

    def record_attempt(self, attempt_id: str, page_id: str | None, channel: str, recipient: str, attempt: int,
                       ts_ms: int, provider_id: str | None, result: str, error: str | None) -> None:
        """Store one attempt: ``attempt`` is 1-based, ``ts_ms`` in milliseconds since the epoch, ``result`` is
        ``delivered`` or ``failed`` (with ``error``), ``recipient`` the channel's address (phone, email...).
        """


class BaseChannel:
    """Retries :meth:`attempt` up to ``max_attempts`` times, waiting ``backoff_s * 2**n`` seconds between tries.

    ``clock`` schedules the waits (tests pass ``twisted.internet.task.Clock``); ``recorder`` (the escalation store)
    gets one row per attempt.
    """

    name = "base"

    def __init__(self, clock: IReactorTime, recorder: AttemptRecorder | None = None, max_attempts: int = 3,
                 backoff_s: float = 2.0) -> None:
        self.clock = clock
        self.recorder = recorder
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s

    def attempt(self, recipient: Recipient, message: PageMessage) -> "defer.Deferred[str | None]":
        """One delivery attempt; fires with the provider's ID or fails with :class:`DeliveryError`."""
        raise NotImplementedError

    def address_of(self, recipient: Recipient) -> str:
        """The address this channel delivers to (phone number, email...), recorded with each attempt."""
        return recipient.user_id

    @defer.inlineCallbacks
    def send(self, recipient: Recipient, message: PageMessage) -> Any:
        """Deliver ``message`` to ``recipient`` with retries; a Deferred of :class:`DeliveryResult`, never an errback.

        Each attempt is recorded and counted in metrics. A permanent :class:`DeliveryError` stops retrying; otherwise
        up to ``max_attempts`` tries, waiting ``backoff_s * 2**(n-1)`` seconds on ``clock`` after attempt ``n``.
        """
        error = "not attempted"
        for n in range(1, self.max_attempts + 1):
            permanent = False
            try:
                provider_id = yield self.attempt(recipient, message)
            except Exception as e:  # every failure is recorded; the loop is bounded by max_attempts
                error = f"{type(e).__name__}: {e}"
                permanent = isinstance(e, DeliveryError) and e.permanent
                self._record(recipient, message, n, None, "failed", error)
            else:
                self._record(recipient, message, n, provider_id, "delivered", None)
                return DeliveryResult(ok=True, provider_id=provider_id, attempts=n)
            if permanent or n == self.max_attempts:
                return DeliveryResult(ok=False, error=error, attempts=n, permanent=permanent)
            yield _sleep(self.clock, self.backoff_s * 2 ** (n - 1))
        return DeliveryResult(ok=False, error=error, attempts=self.max_attempts)

    def _record(self, recipient: Recipient, message: PageMessage, n: int, provider_id: str | None, result: str,
                error: str | None) -> None:
        metrics.DELIVERY_ATTEMPTS.labels(self.name, result).inc()
        if self.recorder is not None:
            self.recorder.record_attempt(uuid.uuid4().hex, message.page_id, self.name, self.address_of(recipient), n,
                                         int(self.clock.seconds() * 1000), provider_id, result, error)


def _sleep(clock: IReactorTime, seconds: float) -> "defer.Deferred[None]":
    d: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d


def failure_text(f: Failure) -> str:
    """``"ExceptionType: message"`` of a Twisted Failure, for logs and delivery-attempt rows."""
    return f"{f.type.__name__ if f.type else 'Error'}: {f.getErrorMessage()}"

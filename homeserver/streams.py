"""Stream positions and sync tokens.

Everything a client can see changes through a stream with a monotonically increasing integer position
(ARCHITECTURE.md). A sync token (``next_batch``, ``since``, ``prev_batch``, ``from``/``to`` of ``/messages``) is the
tuple of every stream's position, written ``s<events>_<receipts>_<account_data>_<to_device>_<device_lists>_
<typing>_<presence>``. A token with fewer parts (an older server's) reads the missing positions as 0; more parts than
this version knows is an error, as are negative or non-numeric parts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

from homeserver.http.errors import InvalidParamError

STREAM_NAMES: tuple[str, ...] = (
    "events", "receipts", "account_data", "to_device", "device_lists", "typing", "presence",
)


MAX_POSITION = 2**53 - 1

# Recently parsed token strings (valid ones only); cleared when full.
_parsed_tokens: dict[str, "StreamToken"] = {}
_PARSED_TOKENS_MAX = 4096


@dataclass(frozen=True, slots=True)
class StreamToken:
    """A position in every stream. Compare components, never whole tokens: streams move independently."""

    events: int = 0
    receipts: int = 0
    account_data: int = 0
    to_device: int = 0
    device_lists: int = 0
    typing: int = 0
    presence: int = 0

    def to_string(self) -> str:
        """The sync token string ``s<events>_<receipts>_..._<presence>`` (``next_batch``/``since``); see :meth:`parse`.
        """
        # Spelled out rather than a loop over STREAM_NAMES: every /sync answer writes several of these.
        return (f"s{self.events}_{self.receipts}_{self.account_data}_{self.to_device}_{self.device_lists}_"
                f"{self.typing}_{self.presence}")

    __str__ = to_string

    @classmethod
    def parse(cls, token: str, param: str = "since") -> "StreamToken":
        """Parse ``s1_2_...``; raises InvalidParamError (400 ``M_INVALID_PARAM``) naming ``param``."""
        cached = _parsed_tokens.get(token) if isinstance(token, str) else None
        if cached is not None:
            return cached
        if not isinstance(token, str) or not token.startswith("s") or len(token) > 200:
            raise InvalidParamError(f"Invalid {param} token")
        parts = token[1:].split("_")
        if len(parts) > len(STREAM_NAMES):
            raise InvalidParamError(f"Invalid {param} token")
        values = []
        for p in parts:
            # ASCII digits only (str.isdigit accepts "²"), and within 2**53: positions are stored as 64-bit
            # integers, so a bigger one is a forged token, not a position.
            if not (p.isascii() and p.isdigit()) or len(p) > 16 or int(p) > MAX_POSITION:
                raise InvalidParamError(f"Invalid {param} token")
            values.append(int(p))
        values += [0] * (len(STREAM_NAMES) - len(values))
        parsed = cls(*values)
        # Every long-poll woken by the same change got the same next_batch: they come back with equal strings.
        if len(_parsed_tokens) >= _PARSED_TOKENS_MAX:
            _parsed_tokens.clear()
        _parsed_tokens[token] = parsed
        return parsed

    def copy_and_replace(self, stream: str, position: int) -> "StreamToken":
        """This token with ``stream`` set to ``position``, even if that moves it back."""
        values = self.as_tuple()
        return StreamToken(*values[:_INDEX[stream]], position, *values[_INDEX[stream] + 1:])

    def as_tuple(self) -> tuple[int, ...]:
        """The positions in :data:`STREAM_NAMES` order."""
        return (self.events, self.receipts, self.account_data, self.to_device, self.device_lists, self.typing,
                self.presence)

    def copy_and_advance(self, stream: str, position: int) -> "StreamToken":
        """This token with ``stream`` moved to ``position`` if that is further along."""
        if getattr(self, stream) >= position:
            return self
        return self.copy_and_replace(stream, position)

    def is_after(self, other: "StreamToken") -> bool:
        """True if any stream of this token is past ``other``'s."""
        return any(a > b for a, b in zip(self.as_tuple(), other.as_tuple()))

    def is_at_or_after(self, other: "StreamToken") -> bool:
        """True if every stream of this token is at or past ``other``'s."""
        return all(a >= b for a, b in zip(self.as_tuple(), other.as_tuple()))

    def min(self, other: "StreamToken") -> "StreamToken":
        """Per stream, the lower position of this token and ``other``."""
        return StreamToken(*(min(getattr(self, n), getattr(other, n)) for n in STREAM_NAMES))

    def max(self, other: "StreamToken") -> "StreamToken":
        """Per stream, the higher position of this token and ``other``."""
        return StreamToken(*(max(getattr(self, n), getattr(other, n)) for n in STREAM_NAMES))


assert tuple(f.name for f in fields(StreamToken)) == STREAM_NAMES
_INDEX = {name: i for i, name in enumerate(STREAM_NAMES)}


class StreamIdGenerator:
    """Allocates positions of one stream and knows how far the stream is *complete*.

    Writers call :meth:`allocate` before writing and :meth:`mark_done` once the row is committed (or the write
    failed). :meth:`current` is the highest position below which every allocated position is done, so a reader
    that reads up to ``current()`` never skips a row that commits later with a lower position.
    Thread-safe; positions start after ``start`` (the largest position already in the database).
    """

    def __init__(self, start: int) -> None:
        self._lock = threading.Lock()
        self._next = start + 1
        self._current = start
        self._in_flight: set[int] = set()

    def allocate(self) -> int:
        """Reserve the next position; the caller must :meth:`mark_done` it after commit or failure."""
        with self._lock:
            position = self._next
            self._next += 1
            self._in_flight.add(position)
            return position

    def allocate_many(self, n: int) -> list[int]:
        """Reserve ``n`` consecutive positions (ascending); each must be :meth:`mark_done`-d."""
        with self._lock:
            positions = list(range(self._next, self._next + n))
            self._next += n
            self._in_flight.update(positions)
            return positions

    def mark_done(self, position: int) -> None:
        """Release ``position`` (committed or failed); ``current()`` advances up to the lowest still in flight."""
        with self._lock:
            self._in_flight.discard(position)
            if self._in_flight:
                self._current = min(self._in_flight) - 1
            else:
                self._current = self._next - 1

    def current(self) -> int:
        """The highest position at and below which every allocated position is done."""
        return self._current


class StreamPositions:
    """The registry of every stream's :class:`StreamIdGenerator`; gives the current sync token.

    Each store registers the generator of the stream it writes (``register("account_data", gen)``) when it is
    built. A stream nobody registered stays at position 0.
    """

    def __init__(self) -> None:
        self._generators: dict[str, StreamIdGenerator] = {}

    def register(self, stream: str, generator: StreamIdGenerator) -> None:
        """Make ``generator`` the source of ``stream``'s position; ValueError for an unknown or twice-registered stream.
        """
        if stream not in STREAM_NAMES:
            raise ValueError(f"unknown stream {stream!r}; add it to STREAM_NAMES")
        if stream in self._generators:
            raise ValueError(f"stream {stream!r} registered twice")
        self._generators[stream] = generator

    def generator(self, stream: str) -> StreamIdGenerator:
        """The generator registered for ``stream``; KeyError if none was."""
        return self._generators[stream]

    def current_token(self) -> StreamToken:
        """Positions up to which every stream is complete (safe to read up to)."""
        gens = self._generators
        return StreamToken(*(gens[name].current() if name in gens else 0 for name in STREAM_NAMES))

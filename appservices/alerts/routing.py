"""Routing: ordered rules of Alertmanager-style label matchers pick a room and an escalation policy."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MATCHER = re.compile(r'^\s*("(?:[^"\\]|\\.)*"|[^=!~\s]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.S)


class RoutingError(ValueError):
    """A matcher or route in the config is malformed; the message names it."""


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return re.sub(r"\\(.)", r"\1", s[1:-1])
    return s


@dataclass(frozen=True)
class Matcher:
    """One label matcher like Alertmanager's: ``name = value``, ``!=``, ``=~ regex``, ``!~ regex``.

    Regexes are anchored (full match), as in Alertmanager. A missing label matches as the empty string.
    """

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> "Matcher":
        """Parse ``'team="storage"'``, ``'severity=~"critical|page"'``, ``'env!=dev'``.

        Raises:
            RoutingError: the text is not a matcher or the regex does not compile.
        """
        m = _MATCHER.match(text)
        if not m:
            raise RoutingError(f"not a label matcher: {text!r}")
        name, op, value = _unquote(m.group(1)), m.group(2), _unquote(m.group(3))
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as e:
                raise RoutingError(f"bad regex in matcher {text!r}: {e}") from e
        return cls(name, op, value)

    def matches(self, labels: dict[str, str]) -> bool:
        """True if ``labels`` (name -> value) satisfies this matcher."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Route:
    """A routing rule.

    Attributes:
        name: route name (used for the room name, metrics and reports).
        room: room alias (``#alerts-storage:example.com``) or room ID the incidents go to.
        matchers: all must match (an empty list matches everything).
        escalation_policy: name handed to the escalation service (``None``: no escalation).
        invite: user IDs invited when the bridge creates the room (the team).
        mentions: user IDs put into ``m.mentions`` of a new incident (the people to page).
        team_power_level: power level the invited team gets in a room the bridge creates.
    """

    name: str
    room: str
    matchers: tuple[Matcher, ...] = ()
    escalation_policy: str | None = None
    invite: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    team_power_level: int = 50
    sources: tuple[str, ...] = field(default_factory=tuple)

    def matches(self, source: str, labels: dict[str, str]) -> bool:
        """True if the source is allowed (``sources`` empty = any) and every matcher matches ``labels``."""
        if self.sources and not any(source == s or source.startswith(s + ":") for s in self.sources):
            return False
        return all(m.matches(labels) for m in self.matchers)


class Router:
    """Ordered routes plus a default; the first matching route wins."""

    def __init__(self, routes: list[Route], default: Route) -> None:
        self.routes = routes
        self.default = default

    def route_for(self, source: str, labels: dict[str, str]) -> Route:
        """The first route whose matchers match ``labels``, else the default route."""
        for r in self.routes:
            if r.matches(source, labels):
                return r
        return self.default

    def by_name(self, name: str) -> Route | None:
        """The route called ``name`` (default included), or ``None``."""
        for r in [*self.routes, self.default]:
            if r.name == name:
                return r
        return None

"""The in-process hook other components (escalation, issue 7) use to follow incidents.

Register an object with :meth:`appservices.alerts.incidents.IncidentManager.add_listener`. Calls happen on
the reactor thread after the change is stored; a method may return a Deferred (it is not awaited by the
bridge; failures are logged and never undo the change). ``actor`` is a Matrix user ID, ``"source"`` (the
alerting system resolved it) or ``"zabbix:<name>"``.
"""

from __future__ import annotations

from typing import Any, Protocol

from .store import Incident


class IncidentListener(Protocol):
    """Receives incident lifecycle events. Every method is optional in spirit: implement all, do nothing if unneeded.

    ``incident`` is the stored :class:`~appservices.alerts.store.Incident` after the change (``route``,
    ``room``, ``escalation_policy``, ``severity``, ``state``, ``created_ts`` ms, ...).
    """

    def on_incident_opened(self, incident: Incident) -> Any:
        """A new incident started firing (first notification, or a re-fire after resolution)."""

    def on_incident_acknowledged(self, incident: Incident, actor: str) -> Any:
        """Someone acknowledged (stop escalating)."""

    def on_incident_unacknowledged(self, incident: Incident, actor: str) -> Any:
        """An acknowledgement was withdrawn (escalate again)."""

    def on_incident_resolved(self, incident: Incident, actor: str) -> Any:
        """The incident is over (by the source or by a person)."""

    def on_alert_posted(self, incident: Incident, room_id: str, event_id: str) -> Any:
        """The incident's alert message was posted to ``room_id`` as ``event_id`` (from the outbox: possibly well
        after the incident opened, when the homeserver was unreachable then)."""

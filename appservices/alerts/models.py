"""Source-independent shapes every ingest parser produces and the rest of the bridge consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FIRING = "firing"
RESOLVED = "resolved"


@dataclass
class Alert:
    """One alert inside a notification.

    Attributes:
        fingerprint: stable identity of the alert inside its group (Alertmanager's ``fingerprint``).
        status: ``"firing"`` or ``"resolved"``.
        labels / annotations: string -> string.
        starts_at / ends_at: RFC 3339 strings as sent (``ends_at`` may be ``None`` or the zero time).
        generator_url: link to the source's view of the alert ("" if none).
        links: extra named links (``silence``, ``dashboard``, ``panel``, ...), http(s) only after rendering.
        values: Grafana's evaluated values (name -> number) or ``{}``.
    """

    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: str | None = None
    ends_at: str | None = None
    generator_url: str = ""
    links: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (stored in the database and returned by the API)."""
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "generator_url": self.generator_url,
            "links": self.links,
            "values": self.values,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Alert":
        """Inverse of :meth:`to_json`."""
        return cls(
            fingerprint=d["fingerprint"],
            status=d["status"],
            labels=dict(d.get("labels") or {}),
            annotations=dict(d.get("annotations") or {}),
            starts_at=d.get("starts_at"),
            ends_at=d.get("ends_at"),
            generator_url=d.get("generator_url") or "",
            links=dict(d.get("links") or {}),
            values=dict(d.get("values") or {}),
        )


@dataclass
class AlertGroup:
    """One notification from a source: the unit the bridge turns into (an update of) one incident.

    Attributes:
        source: ``"alertmanager"``, ``"grafana"``, ``"zabbix"`` or ``"generic:<name>"``.
        dedup_key: identity of the incident at the source (Alertmanager ``groupKey``, Zabbix problem event ID).
        status: ``"firing"`` if any alert fires, else ``"resolved"``.
        alerts: the alerts, each keyed by fingerprint.
        group_labels: labels that define the group (used for routing and silences).
        common_labels / common_annotations: labels/annotations shared by every alert.
        title: one-line headline.
        external_url: link to the source UI ("" if none).
        truncated_alerts: how many alerts the source left out (Alertmanager ``truncatedAlerts``).
        mentions: user IDs the source asks to page (e.g. Zabbix ``alert_sendto``).
        update_note: a source-side update to post in the thread (e.g. a Zabbix acknowledgement), or ``None``.
        source_ack_by: who acknowledged at the source, if the update is an acknowledgement.
    """

    source: str
    dedup_key: str
    status: str
    alerts: list[Alert]
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    title: str = ""
    external_url: str = ""
    truncated_alerts: int = 0
    mentions: list[str] = field(default_factory=list)
    update_note: str | None = None
    source_ack_by: str | None = None

    @property
    def severity(self) -> str:
        """The group's severity label (``common_labels["severity"]``, else the first alert's, else ``"none"``)."""
        if "severity" in self.common_labels:
            return self.common_labels["severity"]
        for a in self.alerts:
            if "severity" in a.labels:
                return a.labels["severity"]
        return "none"

    @property
    def routing_labels(self) -> dict[str, str]:
        """Labels used to pick a route: common labels, completed by the first alert's labels."""
        labels = dict(self.alerts[0].labels) if self.alerts else {}
        labels.update(self.common_labels)
        return labels

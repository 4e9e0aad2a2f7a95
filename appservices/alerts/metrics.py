"""Prometheus metrics of the alert bridge, in their own registry (served at ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AlertMetrics:
    """The bridge's metrics. Times are in seconds, as Prometheus convention wants."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.alerts_received = Counter(
            "tocsin_alerts_received_total", "Alerts received, by source and alert status",
            ["source", "status"], registry=self.registry,
        )
        self.requests_rejected = Counter(
            "tocsin_alert_requests_rejected_total", "Ingest requests refused, by source and reason",
            ["source", "reason"], registry=self.registry,
        )
        self.incidents_open = Gauge(
            "tocsin_incidents_open", "Open incidents, by state", ["state"], registry=self.registry
        )
        self.acknowledgements = Counter(
            "tocsin_incident_acknowledgements_total", "Incidents acknowledged, by how (command, reaction, source)",
            ["via"], registry=self.registry,
        )
        self.time_to_acknowledge = Histogram(
            "tocsin_incident_time_to_acknowledge_seconds", "Seconds from incident opened to first acknowledgement",
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
            registry=self.registry,
        )
        self.messages_sent = Counter(
            "tocsin_alert_messages_sent_total", "Matrix events sent, by kind (root, edit, thread)",
            ["kind"], registry=self.registry,
        )
        self.send_failures = Counter(
            "tocsin_alert_message_send_failures_total", "Failed Matrix sends (retried)", registry=self.registry
        )

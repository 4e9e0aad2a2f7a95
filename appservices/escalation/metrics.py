"""Prometheus metrics of the escalation service, served on ``/metrics`` (prometheus-client text format).

Names follow Prometheus conventions: ``_total`` for counters, base units (seconds) for histograms.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: Pages handed to a channel, by ``channel`` (matrix, email, sms, voice, webhook) and ``result`` (delivered,
#: failed, rate_limited, suppressed_quiet_hours, no_contact, no_channel).
PAGES_SENT = Counter(
    "tocsin_escalation_pages_sent_total", "Pages sent, by channel and result", ["channel", "result"]
)

# Buckets from seconds to an hour: on-call people read within minutes or escalation has already moved on.
_RESPONSE_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)

#: Seconds from a person's first page to their first read receipt on it.
TIME_TO_READ = Histogram(
    "tocsin_escalation_time_to_read_seconds", "Seconds from first page to read receipt", buckets=_RESPONSE_BUCKETS
)

#: Seconds from the incident being opened to its acknowledgement.
TIME_TO_ACKNOWLEDGE = Histogram(
    "tocsin_escalation_time_to_acknowledge_seconds", "Seconds from incident opened to acknowledged",
    buckets=_RESPONSE_BUCKETS,
)

#: Tiers started, by ``tier`` (1-based, as people say "tier 2").
ESCALATIONS = Counter("tocsin_escalation_escalations_total", "Escalation tiers started", ["tier"])

#: Delivery attempts made by channels (including retries), by ``channel`` and ``result``.
DELIVERY_ATTEMPTS = Counter(
    "tocsin_channel_delivery_attempts_total", "Channel delivery attempts, by channel and result", ["channel", "result"]
)
